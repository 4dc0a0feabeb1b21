"""The worker's SQS FIFO queue, as the reconciler fills it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lambdas.domain.ports import TransientError
from lambdas.domain.webhook_events import WorkItem

MAX_BATCH = 10  # SendMessageBatch's limit


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
                        "MessageBody": item.model_dump_json(),
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
