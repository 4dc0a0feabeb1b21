"""A worker batch's records converge together: one query reads them, one bulk update writes them back,
and a refused bulk update falls back to record-by-record writes that each meet their own answer."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest

from lambdas.adapters.record_batch import RecordBatch
from lambdas.domain.ports import RecordRef
from lambdas.domain.provisioning import Outcome
from lambdas.domain.webhook_events import WorkItem
from tests.unit.fakes import FakeRecords, kintone_record
from tests.unit.world import APP, World


class CountedRecords:
    """The fake kintone, counting the requests each API gets."""

    def __init__(self, records: FakeRecords) -> None:
        self.records = records
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.records, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return call(*args, **kwargs)

        return counted


def batched_world() -> tuple[World, RecordBatch, CountedRecords]:
    made: dict[str, Any] = {}

    def port(name: str, fake: Any) -> Any:
        if name != "kintone":
            return fake
        made["counted"] = CountedRecords(fake)
        made["batch"] = RecordBatch(made["counted"])
        return made["batch"]

    world = World(port=port)
    return world, made["batch"], made["counted"]


def item(ref: RecordRef) -> WorkItem:
    return WorkItem(app_id=ref.app_id, record_id=ref.record_id, trigger="ADD_RECORD", received_at=0.0)


def converge_all(world: World, batch: RecordBatch, refs: list[RecordRef]) -> list[Outcome]:
    works = [lambda ref=ref: world.provisioner.converge(item(ref)).outcome for ref in refs]
    return batch.run(refs, works)


def assert_one_working_key_shown(world: World, ref: RecordRef) -> None:
    alias = f"kintone-{ref.app_id}-{ref.record_id}"
    assert [spec.alias for spec in world.gateway.keys.values()].count(alias) == 1
    assert world.records.value(ref, "api_key") == world.gateway.keys[alias].api_key
    assert world.records.value(ref, "status") == "Issued"


def test_ten_new_records_cost_one_query_and_one_bulk_update() -> None:
    world, batch, kintone = batched_world()
    refs = [world.records.add(APP, kintone_record(str(record_id))) for record_id in range(1, 11)]

    assert converge_all(world, batch, refs) == [Outcome.ISSUED] * 10

    for ref in refs:
        assert_one_working_key_shown(world, ref)
    # The comments telling each requester are the only per-record requests (kintone has no bulk).
    assert kintone.calls == {"query_records": 1, "write_records": 1, "add_comment": 10}
    assert [len(writes) for writes in world.records.bulk_writes] == [10]


def test_a_record_saved_after_the_batch_read_is_read_again_and_the_others_are_still_written() -> None:
    world, batch, kintone = batched_world()
    refs = [world.records.add(APP, kintone_record(str(record_id))) for record_id in range(1, 5)]

    def user_renames_record_3_then_converge_1() -> Outcome:
        world.records.edit(refs[2], key_name="renamed by its owner")
        return world.provisioner.converge(item(refs[0])).outcome

    works = [user_renames_record_3_then_converge_1] + [
        lambda ref=ref: world.provisioner.converge(item(ref)).outcome for ref in refs[1:]
    ]
    assert batch.run(refs, works) == [Outcome.ISSUED] * 4

    for ref in refs:
        assert_one_working_key_shown(world, ref)
    assert world.records.value(refs[2], "key_name") == "renamed by its owner"
    # The bulk update was refused whole; each write went alone, record 3's after reading it again.
    assert kintone.calls["write_records"] == 1
    assert kintone.calls["write_fields"] == 4 + 1
    assert kintone.calls["get_record"] == 1


def test_a_record_missing_from_the_batch_read_is_read_on_its_own() -> None:
    world, batch, kintone = batched_world()
    refs = [world.records.add(APP, kintone_record(str(record_id))) for record_id in range(1, 4)]
    deleted = RecordRef(app_id=APP, record_id="99")

    outcomes = converge_all(world, batch, [*refs, deleted])

    assert outcomes == [Outcome.ISSUED] * 3 + [Outcome.RECORD_NOT_FOUND]
    assert kintone.calls["query_records"] == 1
    assert kintone.calls["get_record"] == 1
    assert [len(writes) for writes in world.records.bulk_writes] == [3]


def test_when_the_batch_read_fails_each_record_is_read_on_its_own() -> None:
    world, batch, kintone = batched_world()
    refs = [world.records.add(APP, kintone_record(str(record_id))) for record_id in range(1, 4)]

    def unavailable(*_args: Any) -> None:
        raise RuntimeError("kintone answered 503 CB_IJ01")

    world.records.query_records = unavailable  # type: ignore[method-assign]
    assert converge_all(world, batch, refs) == [Outcome.ISSUED] * 3

    assert kintone.calls["get_record"] == 3
    assert [len(writes) for writes in world.records.bulk_writes] == [3]


def test_a_failing_record_neither_blocks_nor_loses_the_others_writes() -> None:
    world, batch, _kintone = batched_world()
    refs = [world.records.add(APP, kintone_record(str(record_id))) for record_id in range(1, 4)]

    def fails() -> Outcome:
        raise RuntimeError("LiteLLM answered 503")

    works = [lambda ref=ref: world.provisioner.converge(item(ref)).outcome for ref in refs]
    with pytest.raises(RuntimeError, match="503"):
        batch.run(refs, [works[0], fails, works[1], works[2]])

    for ref in refs:
        assert_one_working_key_shown(world, ref)


def test_a_refused_single_write_reaches_its_own_record_as_unbatched() -> None:
    world, batch, kintone = batched_world()
    [ref] = [world.records.add(APP, kintone_record("1"))]
    world.records.conflicts_to_inject = 1  # someone saves the record just before our write

    assert converge_all(world, batch, [ref]) == [Outcome.ISSUED]

    assert_one_working_key_shown(world, ref)
    assert "query_records" not in kintone.calls  # one record: its own read costs the same
    assert kintone.calls["get_record"] == 2


def test_outside_a_batch_every_call_goes_straight_to_kintone() -> None:
    world, _batch, kintone = batched_world()
    ref = world.records.add(APP, kintone_record("1"))

    assert world.provisioner.converge(item(ref)).outcome == Outcome.ISSUED

    assert_one_working_key_shown(world, ref)
    assert kintone.calls["write_fields"] == 1


def test_each_work_sees_the_invocations_context() -> None:
    _world, batch, _kintone = batched_world()
    deadline: contextvars.ContextVar[str] = contextvars.ContextVar("deadline", default="unset")
    deadline.set("set by the handler")

    assert batch.run([], [deadline.get, deadline.get]) == ["set by the handler"] * 2
