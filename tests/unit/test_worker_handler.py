"""The worker handler with real-shaped SQS events: partial failures, last attempts, time left."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pytest

from lambdas.domain.ports import RecordRef
from lambdas.domain.provisioning import Outcome, Result
from lambdas.handlers import worker
from local.runtime import FakeLambdaContext


@dataclass
class RecordingProvisioner:
    failing_records: set[str] = field(default_factory=set)
    converged: list[str] = field(default_factory=list)
    gave_up: list[tuple[str, int, str]] = field(default_factory=list)

    def converge(self, item) -> Result:
        if item.record_id in self.failing_records:
            raise RuntimeError(f"LiteLLM answered 503 for {item.record_id}")
        self.converged.append(item.record_id)
        return Result(Outcome.ISSUED, RecordRef(app_id=item.app_id, record_id=item.record_id))

    def report_gave_up(self, item, attempts: int, reason: str) -> None:
        self.gave_up.append((item.record_id, attempts, reason))


class ShortOnTime(FakeLambdaContext):
    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 2_000


def sqs_event(*record_ids: str, receive_count: int = 1, **item: str) -> dict:
    return {
        "Records": [
            {
                "messageId": f"m-{record_id}",
                "receiptHandle": f"r-{record_id}",
                "body": json.dumps(
                    {
                        "app_id": "1",
                        "record_id": record_id,
                        "trigger": "ADD_RECORD",
                        "received_at": 0.0,
                        **item,
                    }
                ),
                "attributes": {
                    "ApproximateReceiveCount": str(receive_count),
                    "MessageGroupId": f"1:{record_id}",
                    "SentTimestamp": "0",
                    "SenderId": "x",
                    "ApproximateFirstReceiveTimestamp": "0",
                    "SequenceNumber": "1",
                    "MessageDeduplicationId": record_id,
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:ap-northeast-1:000000000000:work.fifo",
                "awsRegion": "ap-northeast-1",
            }
            for record_id in record_ids
        ]
    }


@pytest.fixture
def provisioner(monkeypatch: pytest.MonkeyPatch) -> RecordingProvisioner:
    recording = RecordingProvisioner()
    monkeypatch.setattr(worker, "provisioner", lambda: recording)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    return recording


def test_one_record_failing_does_not_hold_back_the_others(provisioner: RecordingProvisioner) -> None:
    provisioner.failing_records = {"2"}
    response = worker.handler(sqs_event("1", "2", "3"), FakeLambdaContext("worker"))
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert provisioner.converged == ["1", "3"]
    assert provisioner.gave_up == []


def test_the_last_attempt_tells_the_record_why(provisioner: RecordingProvisioner) -> None:
    provisioner.failing_records = {"2"}
    response = worker.handler(
        sqs_event("2", receive_count=worker.MAX_RECEIVE_COUNT), FakeLambdaContext("worker")
    )
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert provisioner.gave_up == [("2", 5, "LiteLLM answered 503 for 2")]


def test_records_are_left_for_later_when_the_invocation_is_nearly_out_of_time(
    provisioner: RecordingProvisioner,
) -> None:
    response = worker.handler(sqs_event("1", "2"), ShortOnTime("worker"))
    assert {failure["itemIdentifier"] for failure in response["batchItemFailures"]} == {"m-1", "m-2"}
    assert provisioner.converged == []


def test_the_user_a_delete_webhook_names_is_logged_as_unverified(provisioner: RecordingProvisioner) -> None:
    lines: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = lines.append  # type: ignore[method-assign]
    worker.logger.addHandler(capture)
    try:
        event = sqs_event("7", trigger="DELETE_RECORD", reported_actor="hanako")
        assert worker.handler(event, FakeLambdaContext("worker")) == {"batchItemFailures": []}
    finally:
        worker.logger.removeHandler(capture)
    [converged] = [line for line in lines if line.getMessage() == "record converged"]
    assert converged.reported_deleted_by == {
        "user": "hanako",
        "source": "unsigned kintone webhook, not verified",
    }
