"""The worker's SQS FIFO queue, as the webhook, the reconciler and the worker's deferrals fill it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lambdas.domain.ports import TransientError
from lambdas.domain.webhook_events import WorkItem

MAX_BATCH = 10  # SendMessageBatch's limit


def message_body(item: WorkItem) -> str:
    """The item as JSON in ASCII only.

    SQS refuses a body with a character outside #x9, #xA, #xD, #x20-#xD7FF, #xE000-#xFFFD and
    #x10000-#x10FFFF (InvalidMessageContents), and JSON leaves U+FFFE, U+FFFF and lone surrogates
    unescaped; a user code from an unsigned webhook may hold any of them. Escaped as \\uXXXX, every
    character survives and the worker reads the same item back.
    """
    return json.dumps(item.model_dump(mode="json"), ensure_ascii=True, separators=(",", ":"))


class SqsWorkQueue:
    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def enqueue(self, items: Sequence[tuple[WorkItem, str]]) -> None:
        for start in range(0, len(items), MAX_BATCH):
            batch = items[start : start + MAX_BATCH]
            response = self._client.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {
                        "Id": str(index),
                        "MessageBody": message_body(item),
                        # The webhook's group: a record's sweeps and webhooks are handled in order.
                        "MessageGroupId": item.message_group_id,
                        "MessageDeduplicationId": dedup_id,
                    }
                    for index, (item, dedup_id) in enumerate(batch)
                ],
            )
            if response.get("Failed"):
                codes = sorted({failure.get("Code", "") for failure in response["Failed"]})
                raise TransientError(f"SQS refused {len(response['Failed'])} messages: {', '.join(codes)}")
