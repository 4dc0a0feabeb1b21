"""Faults at every step of issuance, on the real local stack.

After retries every record ends with exactly one working key (one LiteLLM key under its alias, one
secret holding the same value) or a clear Failed message with its request in the dead-letter queue.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from lambdas.adapters import wiring
from lambdas.domain.key_request import key_hash
from lambdas.domain.request_budget import kintone_day
from local.aws_resources import local_client
from tests.integration.conftest import LocalStack
from tests.integration.fault_proxy import Fault

pytestmark = pytest.mark.integration


class InjectedCrashError(RuntimeError):
    """The worker process dying at a chosen step, as far as the message is concerned."""


class CrashingPort:
    """Wraps a port; the named method raises before or after doing its work, once."""

    def __init__(self, port, method: str, when: str) -> None:
        self._port, self._method, self._when, self.fired = port, method, when, False

    def __getattr__(self, name: str):
        attribute = getattr(self._port, name)
        if name != self._method or self.fired:
            return attribute

        def crashing(*args, **kwargs):
            self.fired = True
            if self._when == "before":
                raise InjectedCrashError(f"crash before {name}")
            attribute(*args, **kwargs)
            raise InjectedCrashError(f"crash after {name}")

        return crashing


@pytest.fixture
def faults(local_stack: LocalStack) -> Iterator[LocalStack]:
    yield local_stack
    local_stack.emulator.clear_faults()
    local_stack.litellm_faults.clear()
    local_stack.aws_faults.clear()


def assert_exactly_one_working_key(stack: LocalStack, record_id: str) -> str:
    record = stack.wait_for_status(record_id, "Issued")
    api_key = record["api_key"]["value"]
    assert len(stack.keys_under_alias(record_id)) == 1
    assert stack.stored_key(record_id) == api_key
    assert stack.chat_status(api_key) == 200
    return api_key


@pytest.mark.parametrize(
    ("port", "method", "when"),
    [
        ("_key_store", "get_or_create", "before"),
        ("_key_store", "get_or_create", "after"),
        ("_gateway", "create_key", "before"),
        ("_gateway", "create_key", "after"),
        ("_records", "write_fields", "before"),
        ("_records", "write_fields", "after"),
        ("_state_store", "put", "before"),
    ],
)
def test_a_crash_at_any_step_converges_on_one_key(
    faults: LocalStack, port: str, method: str, when: str
) -> None:
    provisioner = wiring.provisioner()
    original = getattr(provisioner, port)
    crashing = CrashingPort(original, method, when)
    setattr(provisioner, port, crashing)
    try:
        record_id = faults.save_record()
        assert_exactly_one_working_key(faults, record_id)
    finally:
        setattr(provisioner, port, original)
    assert crashing.fired


@pytest.mark.parametrize(
    ("path_prefix", "method", "status", "code"),
    [
        ("/k/v1/record.json", "GET", 429, "GAIA_TO04"),
        ("/k/v1/record.json", "GET", 503, "CB_IJ01"),
        ("/k/v1/records.json", "PUT", 500, "CB_IJ01"),
        ("/k/v1/records.json", "PUT", 409, "GAIA_CO02"),
    ],
)
def test_kintone_faults_are_retried(
    faults: LocalStack, path_prefix: str, method: str, status: int, code: str
) -> None:
    faults.emulator.add_fault(path_prefix=path_prefix, method=method, status=status, code=code, count=2)
    record_id = faults.save_record()
    assert_exactly_one_working_key(faults, record_id)


@pytest.mark.parametrize(
    ("method", "status", "code", "tries", "alone"),
    [
        # kintone refuses the batch's bulk update whole: each write is then sent on its own.
        ("PUT", 409, "GAIA_CO02", 1, "PUT /k/v1/records.json"),
        # The batch's one-query read fails every try: each record is then read on its own.
        ("GET", 503, "CB_IJ01", 3, "GET /k/v1/record.json"),
    ],
    ids=["bulk-update-refused", "batch-read-fails"],
)
def test_a_batch_whose_shared_kintone_call_fails_still_issues_each_key_once(
    faults: LocalStack, method: str, status: int, code: str, tries: int, alone: str
) -> None:
    day = kintone_day(time.time())
    before = faults.kintone_requests_by_api(day).get(alone, 0)
    faults.emulator.add_fault(
        path_prefix="/k/v1/records.json", method=method, status=status, code=code, count=tries
    )
    record_ids = faults.save_while_the_worker_waits(4)
    for record_id in record_ids:
        assert_exactly_one_working_key(faults, record_id)
    assert day == kintone_day(time.time()), "the test ran across 9:00 JST; run it again"
    # Each record went alone; the bulk update, once it was refused, is among the PUTs counted.
    assert faults.kintone_requests_by_api(day).get(alone, 0) - before >= len(record_ids)


@pytest.mark.parametrize(
    "fault",
    [
        Fault("/key/generate", count=2, status=500),
        Fault("/key/generate", count=1, status=503),
        Fault("/key/generate", count=1, hang_seconds=3),  # the worker's 2 s timeout fires first
        Fault("/key/generate", count=2, drop=True),
        Fault("/team/", count=1, status=502),
    ],
    ids=["5xx", "503", "timeout", "down", "team-5xx"],
)
def test_litellm_faults_are_retried(faults: LocalStack, fault: Fault) -> None:
    faults.litellm_faults.inject(fault)
    # A team's first key creates the LiteLLM team: research's, saved by jiro, a member of research.
    fields = {"team": "research", "user": "jiro"} if fault.path_prefix == "/team/" else {}
    record_id = faults.save_record(**fields)
    assert_exactly_one_working_key(faults, record_id)


@pytest.mark.parametrize("operation", ["CreateSecret", "GetItem", "PutItem"])
def test_aws_throttling_is_retried(faults: LocalStack, operation: str) -> None:
    faults.aws_faults.inject(operation, count=2)
    record_id = faults.save_record()
    assert_exactly_one_working_key(faults, record_id)
    assert faults.aws_faults.remaining(operation) == 0
    # botocore's standard retry mode absorbed both throttles: no second delivery was needed.
    assert faults.delivery_that_converged(record_id) == 1


def test_aws_throttling_that_outlasts_botocores_retries_comes_back_after_a_backoff(
    faults: LocalStack,
) -> None:
    faults.aws_faults.inject("CreateSecret", count=3)  # botocore's three attempts all throttled
    record_id = faults.save_record()
    assert_exactly_one_working_key(faults, record_id)
    assert faults.delivery_that_converged(record_id) == 2


def test_a_fault_that_outlasts_every_retry_says_so_and_parks_the_request(faults: LocalStack) -> None:
    faults.litellm_faults.inject(Fault("/key/generate", count=100, status=503))
    record_id = faults.save_record()

    record = faults.wait_for_status(record_id, "Failed")

    assert "after 5 attempts" in record["message"]["value"]
    assert "503" in record["message"]["value"]
    assert faults.keys_under_alias(record_id) == []
    sqs = local_client("sqs", faults.aws_endpoint)
    # SQS moves the message on the receive after its last attempt; long-polling waits for that.
    parked = sqs.receive_message(
        QueueUrl=faults.resources.dead_letter_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=10
    )
    bodies = [json.loads(message["Body"]) for message in parked.get("Messages", [])]
    assert any(body["record_id"] == record_id for body in bodies)

    # Once the fault is gone, an operator's redrive (or the next change) issues the key.
    faults.litellm_faults.clear()
    faults.edit_record(record_id, key_name="retry please")
    assert_exactly_one_working_key(faults, record_id)


def test_a_burst_with_transient_faults_gives_every_record_exactly_one_key(faults: LocalStack) -> None:
    """A smaller burst than `make bench` runs (1,000): 5% of the record reads fail first."""
    count = 60
    faults.emulator.add_fault(
        path_prefix="/k/v1/record.json", method="GET", status=503, code="CB_IJ01", count=3
    )
    with ThreadPoolExecutor(8) as pool:
        record_ids = list(pool.map(lambda index: faults.save_record(key_name=f"burst {index}"), range(count)))
        records = list(pool.map(lambda record_id: faults.wait_for_status(record_id, "Issued"), record_ids))
        key_counts = list(pool.map(lambda record_id: len(faults.keys_under_alias(record_id)), record_ids))

    assert key_counts == [1] * count
    # Compared by hash, so a failure's report cannot show a key.
    key_hashes = [key_hash(record["api_key"]["value"]) for record in records]
    assert len(set(key_hashes)) == count
    assert [key_hash(faults.stored_key(record_id) or "") for record_id in record_ids] == key_hashes
