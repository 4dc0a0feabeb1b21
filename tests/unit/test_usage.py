"""Spend sync: changed usage reaches the records in bulk writes, and nothing else touches kintone."""

from __future__ import annotations

from lambdas.domain.ports import KeyUsage, RecordRef
from lambdas.domain.provisioning import Outcome
from lambdas.domain.settings import FieldCodes
from lambdas.domain.usage import SpendSync, SpendSyncConfig, record_id_of_alias, shown_usage
from tests.unit.fakes import kintone_record
from tests.unit.test_rotation import APP, World


def issued_world(count: int) -> tuple[World, list[RecordRef], SpendSync]:
    world = World()
    refs = [world.records.add(APP, kintone_record(str(number))) for number in range(1, count + 1)]
    world.reconciler.run()
    assert world.drain() == [Outcome.ISSUED] * count
    sync = SpendSync(
        SpendSyncConfig(app_id=APP, field_codes=FieldCodes(), key_alias_prefix="kintone"),
        usage=world.gateway,
        records=world.records,
        state_store=world.state_store,
    )
    return world, refs, sync


def test_every_issued_record_gets_its_usage_in_bulk_writes_of_at_most_100() -> None:
    world, refs, sync = issued_world(250)
    world.gateway.spend["kintone-7-7"] = 1.23456
    world.gateway.budget["kintone-7-7"] = (10.0, "2026-12-01T00:00:00+00:00")

    report = sync.run()

    assert report.records_written == 250
    assert [len(batch) for batch in world.records.bulk_writes] == [100, 100, 50]
    assert report.kintone_requests == 3
    assert world.gateway.usage_pages_read == 3  # LiteLLM in pages too, never one call per key
    ref = RecordRef(app_id=APP, record_id="7")
    assert world.records.value(ref, "spend") == "1.2346"
    assert world.records.value(ref, "max_budget") == "10"
    assert world.records.value(ref, "budget_reset_at") == "2026-12-01T00:00:00Z"
    assert world.records.value(refs[0], "spend") == "0"
    assert world.records.value(refs[0], "max_budget") == ""


def test_only_records_whose_usage_changed_are_written_and_an_idle_run_costs_no_request() -> None:
    world, _refs, sync = issued_world(30)
    sync.run()
    world.records.bulk_writes.clear()

    idle = sync.run()
    world.gateway.spend["kintone-7-3"] = 0.5
    world.gateway.spend["kintone-7-9"] = 0.25
    busy = sync.run()

    assert idle.kintone_requests == 0
    assert busy.records_written == 2
    assert [sorted(write.record_id for write in batch) for batch in world.records.bulk_writes] == [["3", "9"]]


def test_the_sync_does_not_send_its_own_writes_back_through_the_reconciler() -> None:
    world, _refs, sync = issued_world(5)
    world.advance(120)
    world.gateway.spend["kintone-7-2"] = 3.0
    sync.run()
    world.advance(60)

    world.reconciler.run()

    assert world.queue.take() == []


def test_a_user_edit_next_to_a_sync_write_is_still_seen_by_the_reconciler() -> None:
    world, refs, sync = issued_world(3)
    world.advance(120)
    world.records.edit(refs[1], key_name="renamed")  # the user saves, no webhook reached us
    world.gateway.spend["kintone-7-2"] = 3.0
    sync.run()
    world.advance(60)

    world.reconciler.run()

    assert [item.record_id for item in world.queue.take()] == ["2"]


def test_a_deleted_record_does_not_stop_the_others_of_its_bulk_write() -> None:
    world, refs, sync = issued_world(4)
    world.records.delete(refs[2])

    report = sync.run()

    assert report.records_written == 3
    assert report.records_missing == 1
    assert report.kintone_requests == 1 + 4  # the refused bulk write, then one by one
    assert world.records.value(refs[3], "spend") == "0"


def test_keys_other_than_the_records_current_one_are_left_out() -> None:
    world, refs, sync = issued_world(2)
    current = world.gateway.keys["kintone-7-1"]
    world.gateway.keys["kintone-7-1-next"] = current.model_copy(update={"api_key": "sk-next"})
    world.gateway.spend["kintone-7-1-next"] = 9.0
    world.gateway.keys["kintone-8-1"] = current.model_copy(update={"api_key": "sk-other-app"})

    sync.run()

    assert world.records.value(refs[0], "spend") == "0"
    written = {write.record_id for batch in world.records.bulk_writes for write in batch}
    assert written == {"1", "2"}


def test_record_ids_come_only_from_the_current_alias_of_this_app() -> None:
    assert record_id_of_alias("kintone", "1", "kintone-1-42") == "42"
    for alias in ("kintone-1-42-next", "kintone-1-42-prev", "kintone-12-42", "kintone-1-", "kintone-1-042"):
        assert record_id_of_alias("kintone", "1", alias) is None


def test_usage_values_are_written_as_kintone_expects_them() -> None:
    shown = shown_usage(
        KeyUsage(
            key_alias="a",
            key_hash="h",
            spend=0.00004,
            max_budget=50.5,
            budget_reset_at="2026-12-01T09:30:45.123456+09:00",
        )
    )
    assert (shown.spend, shown.max_budget, shown.budget_reset_at) == ("0", "50.5", "2026-12-01T00:30:00Z")
    naive = shown_usage(
        KeyUsage(key_alias="a", key_hash="h", spend=12, budget_reset_at="2026-12-01T00:00:00")
    )
    assert (naive.spend, naive.budget_reset_at) == ("12", "2026-12-01T00:00:00Z")
