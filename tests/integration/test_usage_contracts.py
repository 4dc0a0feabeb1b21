"""The fakes added for usage behave like their adapters: the same checks on both (real ones on the stack)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from lambdas.adapters.dynamodb_state_store import DynamoDBAlertClaims
from lambdas.adapters.wiring import kintone_records
from lambdas.domain.ports import RecordMissingError, RecordRef, RecordWrite, RevisionConflictError
from tests.integration.conftest import APP_ID, LocalStack
from tests.unit.fakes import CrashPoints, FakeAlertClaims, FakeRecords, kintone_record

pytestmark = pytest.mark.integration


class RecordsUnderTest:
    """A writer plus what a test needs around it: make a record, read a field back."""

    def __init__(self, writer: Any, make: Callable[[], str], read: Callable[[str, str], Any]) -> None:
        self.writer = writer
        self.make = make
        self.read = read


def fake_records() -> RecordsUnderTest:
    fake = FakeRecords(CrashPoints())
    counter = iter(range(1, 1000))

    def make() -> str:
        record_id = str(next(counter))
        fake.add(APP_ID, kintone_record(record_id))
        return record_id

    return RecordsUnderTest(
        fake, make, lambda record_id, code: fake.value(RecordRef(app_id=APP_ID, record_id=record_id), code)
    )


def real_records(stack: LocalStack) -> RecordsUnderTest:
    return RecordsUnderTest(
        kintone_records(), stack.save_record, lambda record_id, code: stack.record(record_id)[code]["value"]
    )


@pytest.fixture(params=["fake", "real"])
def records(request: pytest.FixtureRequest, local_stack: LocalStack) -> RecordsUnderTest:
    return fake_records() if request.param == "fake" else real_records(local_stack)


def revision_of(records: RecordsUnderTest, record_id: str) -> int:
    return int(records.read(record_id, "$revision"))


def test_a_bulk_write_returns_each_records_new_revision(records: RecordsUnderTest) -> None:
    first, second = records.make(), records.make()
    before = revision_of(records, first)

    revisions = records.writer.write_records(
        APP_ID,
        [
            RecordWrite(record_id=first, values={"spend": "1.5"}),
            RecordWrite(record_id=second, values={"spend": "2"}),
        ],
    )

    assert revisions == {first: before + 1, second: revision_of(records, second)}
    assert float(records.read(first, "spend")) == 1.5


def test_a_bulk_write_naming_a_missing_record_changes_nothing(records: RecordsUnderTest) -> None:
    present = records.make()
    writes = [
        RecordWrite(record_id=present, values={"spend": "3"}),
        RecordWrite(record_id="999999", values={"spend": "4"}),
    ]

    with pytest.raises(RecordMissingError):
        records.writer.write_records(APP_ID, writes)

    assert records.read(present, "spend") == ""


def test_a_bulk_write_with_a_stale_revision_changes_nothing(records: RecordsUnderTest) -> None:
    first, second = records.make(), records.make()
    stale = (
        revision_of(records, second) - 1
        if revision_of(records, second) > 1
        else revision_of(records, second) + 5
    )
    writes = [
        RecordWrite(record_id=first, values={"spend": "5"}),
        RecordWrite(record_id=second, values={"spend": "6"}, revision=stale),
    ]

    with pytest.raises(RevisionConflictError):
        records.writer.write_records(APP_ID, writes)

    assert records.read(first, "spend") == ""


def test_the_batch_read_returns_each_named_record_whole_and_leaves_out_missing_ones(
    records: RecordsUnderTest,
) -> None:
    """The worker reads its batch with one query and uses each row as it would a single read."""
    first, second = records.make(), records.make()

    rows = records.writer.query_records(APP_ID, f"$id in ({first}, {second}, 999999) limit 3", [])

    by_id = {row["$id"]["value"]: row for row in rows}
    assert sorted(by_id) == sorted([first, second])
    for record_id in (first, second):
        assert by_id[record_id] == records.writer.get_record(RecordRef(app_id=APP_ID, record_id=record_id))


@pytest.fixture(params=["fake", "real"])
def claims(request: pytest.FixtureRequest, local_stack: LocalStack) -> Any:
    if request.param == "fake":
        fake = FakeAlertClaims()
        fake.now = time.time()
        return fake
    table = boto3.resource("dynamodb").Table(local_stack.resources.state_table_name)
    return DynamoDBAlertClaims(table)


def test_an_alert_is_claimed_once_until_it_expires_or_is_released(claims: Any) -> None:
    alert_id = uuid.uuid4().hex
    now = time.time()

    assert claims.claim(alert_id, now + 3600) is True
    assert claims.claim(alert_id, now + 3600) is False
    claims.release(alert_id)
    assert claims.claim(alert_id, now - 1) is True  # claimed, but already expired
    assert claims.claim(alert_id, now + 3600) is True
