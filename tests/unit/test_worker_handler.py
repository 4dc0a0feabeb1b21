"""The worker handler on a real-shaped FIFO queue (in-process moto): partial failures, backoff between
deliveries, last attempts, records left for later, time left."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.adapters.record_batch import RecordBatch
from lambdas.adapters.wiring import reset_caches, sqs_client
from lambdas.domain.ports import RecordRef
from lambdas.domain.provisioning import Outcome, Result
from lambdas.handlers import worker
from local.aws_resources import VISIBILITY_TIMEOUT_SECONDS
from local.runtime import FakeLambdaContext, sqs_event
from tests.unit.fakes import CrashPoints, FakeRecords
from tests.unit.test_settings import valid_environment


@dataclass
class RecordingProvisioner:
    failing_records: set[str] = field(default_factory=set)
    converged: list[str] = field(default_factory=list)
    gave_up: list[tuple[str, int, str]] = field(default_factory=list)
    # Called while converging, e.g. to let the invocation's time run out.
    during_converge: Any = None

    def converge(self, item) -> Result:
        if self.during_converge is not None:
            self.during_converge()
        if item.record_id in self.failing_records:
            raise RuntimeError(f"LiteLLM answered 503 for {item.record_id}")
        self.converged.append(item.record_id)
        return Result(Outcome.ISSUED, RecordRef(app_id=item.app_id, record_id=item.record_id))

    def report_gave_up(self, item, attempts: int, reason: str) -> None:
        self.gave_up.append((item.record_id, attempts, reason))


class Clock(FakeLambdaContext):
    """A context whose time left the test sets."""

    millis_left = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.millis_left


@dataclass
class Queues:
    url: str
    dead_letter_url: str
    arn: str

    def send(self, *record_ids: str, **item: Any) -> None:
        for record_id in record_ids:
            body = {
                "app_id": "1",
                "record_id": record_id,
                "trigger": "ADD_RECORD",
                "received_at": 0.0,
                **item,
            }
            sqs_client().send_message(
                QueueUrl=self.url,
                MessageBody=json.dumps(body),
                MessageGroupId=f"1:{record_id}",
                MessageDeduplicationId=f"{record_id}-{json.dumps(item, sort_keys=True)}",
            )

    def receive(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        return (
            sqs_client()
            .receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=wait_seconds,
                MessageSystemAttributeNames=["All"],
            )
            .get("Messages", [])
        )

    def deliver(self, context: FakeLambdaContext | None = None) -> tuple[dict, list[dict[str, Any]]]:
        """One delivery, as Lambda's event source mapping makes it: receive, invoke, delete what succeeded."""
        messages = self.receive()
        assert messages, "nothing to deliver"
        response = worker.handler(sqs_event(messages, self.arn), context or FakeLambdaContext("worker"))
        failed = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                sqs_client().delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return response, messages

    def redeliver_now(self, count: int) -> None:
        """Receive and release a message `count` times, as earlier failed deliveries would have."""
        for _ in range(count):
            for message in self.receive():
                sqs_client().change_message_visibility(
                    QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )

    def bodies(self, queue_url: str | None = None) -> list[dict[str, Any]]:
        messages = (
            sqs_client()
            .receive_message(
                QueueUrl=queue_url or self.url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
            )
            .get("Messages", [])
        )
        return [json.loads(message["Body"]) for message in messages]


@pytest.fixture
def queues(monkeypatch: pytest.MonkeyPatch) -> Iterator[Queues]:
    for name, value in valid_environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("REDELIVERY_BASE_SECONDS", "2")
    with mock_aws():
        reset_caches()
        sqs = sqs_client()
        dead_letter_url = sqs.create_queue(QueueName="dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        dead_letter_arn = sqs.get_queue_attributes(QueueUrl=dead_letter_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        url = sqs.create_queue(
            QueueName="work.fifo",
            Attributes={
                "FifoQueue": "true",
                "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": str(worker.MAX_RECEIVE_COUNT)}
                ),
            },
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        monkeypatch.setenv("QUEUE_URL", url)
        monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", dead_letter_url)
        reset_caches()
        try:
            yield Queues(url=url, dead_letter_url=dead_letter_url, arn=arn)
        finally:
            reset_caches()


@pytest.fixture
def provisioner(monkeypatch: pytest.MonkeyPatch) -> RecordingProvisioner:
    recording = RecordingProvisioner()
    monkeypatch.setattr(worker, "provisioner", lambda: recording)
    # The batch's read finds none of these records; the recording provisioner reads none either.
    batch = RecordBatch(FakeRecords(CrashPoints()))
    monkeypatch.setattr(worker, "record_batch", lambda: batch)
    return recording


def test_one_record_failing_does_not_hold_back_the_others(
    queues: Queues, provisioner: RecordingProvisioner
) -> None:
    provisioner.failing_records = {"2"}
    queues.send("1", "2", "3")
    response, messages = queues.deliver()
    assert response == {"batchItemFailures": [{"itemIdentifier": messages[1]["MessageId"]}]}
    assert provisioner.converged == ["1", "3"]
    assert provisioner.gave_up == []


def test_a_failed_record_comes_back_after_a_backoff_not_the_visibility_timeout(
    queues: Queues, provisioner: RecordingProvisioner
) -> None:
    """Every transient fault used to cost the whole visibility timeout (360 s in AWS)."""
    provisioner.failing_records = {"2"}
    delays: list[int] = []
    events = boto3._get_default_session().events
    events.register(
        "provide-client-params.sqs.ChangeMessageVisibility",
        lambda params, **_: delays.append(params["VisibilityTimeout"]),
    )
    try:
        queues.send("2")
        queues.deliver()  # attempt 1: backoff between 1 and 2 s (REDELIVERY_BASE_SECONDS = 2)
        [again] = queues.receive(wait_seconds=10)  # long-polls until it is visible again
        assert json.loads(again["Body"])["record_id"] == "2"
        assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    finally:
        events.unregister("provide-client-params.sqs.ChangeMessageVisibility")
    assert len(delays) == 1 and 1 <= delays[0] <= 2 < VISIBILITY_TIMEOUT_SECONDS


def test_the_backoff_grows_with_each_attempt_up_to_its_cap(
    queues: Queues, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDELIVERY_BASE_SECONDS", "5")
    monkeypatch.setenv("REDELIVERY_MAX_SECONDS", "30")
    reset_caches()
    for attempt, (low, high) in enumerate([(3, 5), (5, 10), (10, 20), (15, 30), (15, 30)], start=1):
        delays = {worker.redelivery_delay(attempt) for _ in range(200)}
        assert low <= min(delays) and max(delays) <= high, (attempt, sorted(delays))
        assert len(delays) > 1  # jittered


def test_the_last_attempt_tells_the_record_why_and_parks_the_request(
    queues: Queues, provisioner: RecordingProvisioner
) -> None:
    provisioner.failing_records = {"2"}
    queues.send("2")
    queues.redeliver_now(worker.MAX_RECEIVE_COUNT - 1)
    response, _ = queues.deliver()
    assert response == {"batchItemFailures": []}  # moved to the dead-letter queue by the worker
    assert provisioner.gave_up == [("2", 5, "LiteLLM answered 503 for 2")]
    [parked] = queues.bodies(queues.dead_letter_url)
    assert (parked["record_id"], parked["attempts"], parked["last_error"]) == (
        "2",
        5,
        "LiteLLM answered 503 for 2",
    )
    assert queues.bodies() == []


def test_a_record_left_for_later_costs_no_attempt_and_is_never_given_up(
    queues: Queues, provisioner: RecordingProvisioner
) -> None:
    """Deferrals used to count: on the last receive, a record never tried was marked Failed."""
    queues.send("1")
    queues.redeliver_now(worker.MAX_RECEIVE_COUNT - 1)  # four earlier attempts failed
    short_on_time = Clock("worker")
    short_on_time.millis_left = worker.TIME_RESERVE_MS - 1

    response, _ = queues.deliver(short_on_time)

    assert response == {"batchItemFailures": []}  # sent on as a new message
    assert (provisioner.converged, provisioner.gave_up) == ([], [])
    [requeued] = queues.bodies()
    assert (requeued["record_id"], requeued["attempts"]) == ("1", worker.MAX_RECEIVE_COUNT - 1)
    assert queues.bodies(queues.dead_letter_url) == []


def test_records_after_a_failure_of_their_record_are_requeued_without_costing_an_attempt(
    queues: Queues, provisioner: RecordingProvisioner
) -> None:
    provisioner.failing_records = {"2"}
    queues.send("2")
    queues.send("2", trigger="UPDATE_RECORD")
    response, messages = queues.deliver()
    assert response == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}
    # FIFO order holds: the failed message first, once its backoff ends, then the one held back, re-sent.
    failed, held_back = queues.receive(wait_seconds=10)
    assert failed["Attributes"]["ApproximateReceiveCount"] == "2"
    assert json.loads(failed["Body"])["trigger"] == "ADD_RECORD"
    held_back = json.loads(held_back["Body"])
    assert (held_back["trigger"], held_back["attempts"]) == ("UPDATE_RECORD", 0)


def test_giving_up_never_runs_inside_the_time_reserve(
    queues: Queues, provisioner: RecordingProvisioner
) -> None:
    """The give-up path used to make its kintone and LiteLLM calls whatever time was left."""
    provisioner.failing_records = {"2"}
    running_out = Clock("worker")

    def spend_the_time() -> None:
        running_out.millis_left = worker.GIVE_UP_RESERVE_MS - 1

    provisioner.during_converge = spend_the_time
    queues.send("2")
    queues.redeliver_now(worker.MAX_RECEIVE_COUNT - 1)

    response, _ = queues.deliver(running_out)  # the last attempt fails with too little time left

    assert response == {"batchItemFailures": []}
    assert provisioner.gave_up == []
    [requeued] = queues.bodies()
    assert (requeued["attempts"], requeued["last_error"]) == (5, "LiteLLM answered 503 for 2")

    provisioner.during_converge = None
    sqs_client().purge_queue(QueueUrl=queues.url)
    queues.send("2", attempts=5, last_error="LiteLLM answered 503 for 2")
    response, _ = queues.deliver()  # the next delivery gives up at once, with the reason, and parks

    assert response == {"batchItemFailures": []}
    assert provisioner.gave_up == [("2", 5, "LiteLLM answered 503 for 2")]
    assert [body["record_id"] for body in queues.bodies(queues.dead_letter_url)] == ["2"]


def test_aws_clients_retry_in_botocores_standard_mode(queues: Queues) -> None:
    assert sqs_client().meta.config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_the_user_a_delete_webhook_names_is_logged_as_unverified(
    queues: Queues, provisioner: RecordingProvisioner
) -> None:
    lines: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = lines.append  # type: ignore[method-assign]
    worker.logger.addHandler(capture)
    try:
        queues.send("7", trigger="DELETE_RECORD", reported_actor="hanako")
        response, _ = queues.deliver()
        assert response == {"batchItemFailures": []}
    finally:
        worker.logger.removeHandler(capture)
    [converged] = [line for line in lines if line.getMessage() == "record converged"]
    assert converged.reported_deleted_by == {
        "user": "hanako",
        "source": "unsigned kintone webhook, not verified",
    }
