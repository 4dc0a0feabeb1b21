"""The reconciler: what webhooks missed reaches the worker, orphaned keys go, mass revokes stop."""

from __future__ import annotations

from lambdas.domain.ports import KeyStatus, RecordRef
from lambdas.domain.provisioning import Outcome
from tests.unit.fakes import kintone_record
from tests.unit.world import APP, World


def saved_without_webhook(world: World, count: int, start: int = 1) -> list[RecordRef]:
    return [world.records.add(APP, kintone_record(str(number))) for number in range(start, start + count)]


def test_records_whose_webhooks_were_dropped_get_exactly_one_key_each() -> None:
    world = World()
    refs = saved_without_webhook(world, 200)

    report = world.reconciler.run()
    outcomes = world.drain()

    assert report.enqueued == 200
    assert outcomes == [Outcome.ISSUED] * 200
    assert len(world.gateway.keys) == 200
    assert world.gateway.generate_calls == 200
    assert all(world.records.value(ref, "status") == "Issued" for ref in refs)


def test_records_are_read_a_page_of_500_at_a_time_by_id() -> None:
    world = World()
    saved_without_webhook(world, 1001)

    assert world.reconciler.run().records_listed == 1001

    assert world.records.queries == [
        "$id > 0 order by $id asc limit 500",
        "$id > 500 order by $id asc limit 500",
        "$id > 1000 order by $id asc limit 500",
    ]


def test_a_later_run_asks_only_for_recent_changes_with_a_minute_of_overlap() -> None:
    world = World()
    world.advance(30)  # 30 s into a minute
    world.reconciler.run()
    world.records.queries.clear()
    world.advance(60)

    world.reconciler.run()

    # The last run was at hh:mm:30; kintone keeps minutes, so ask from that minute less the lookback.
    expected = '更新日時 >= "2023-11-14T22:12:00Z" and $id > 0 order by $id asc limit 500'
    assert world.records.queries == [expected]


def test_a_record_saved_in_the_minute_of_the_last_run_is_still_seen() -> None:
    world = World()
    world.reconciler.run()
    [ref] = saved_without_webhook(world, 1)  # same minute, after the run

    world.advance(60)
    world.reconciler.run()

    assert [item.record_id for item in world.queue.take()] == [ref.record_id]


def test_records_already_handled_are_not_queued_again() -> None:
    world = World()
    saved_without_webhook(world, 3)
    world.reconciler.run()
    world.drain()

    world.advance(60)
    report = world.reconciler.run()

    assert report.enqueued == 0


def test_an_old_failed_record_is_left_alone_but_an_open_request_is_not() -> None:
    world = World()
    failed = world.records.add(APP, kintone_record("1", team="nope"))
    world.converge(failed, "ADD_RECORD")
    pending = world.records.add(APP, kintone_record("2"))
    world.reconciler.run()
    world.advance(3600)
    world.reconciler.run()  # the overlapping window shows the failed record once more
    world.queue.take()

    world.advance(3600)  # long after both were saved, and past the full sweep interval
    world.reconciler.run()

    assert [item.record_id for item in world.queue.take()] == [pending.record_id]


def test_a_status_set_by_a_bulk_write_reaches_the_worker() -> None:
    world = World()
    ref = world.issued()
    world.reconciler.run()
    world.queue.take()

    world.advance(60)
    world.records.write_fields(ref, int(world.records.value(ref, "$revision")), {"status": "Revoke"})
    world.reconciler.run()
    world.drain()

    assert world.gateway.keys == {}
    assert world.records.value(ref, "status") == "Revoked"


def test_a_bulk_delete_is_found_by_the_full_sweep_and_revoked() -> None:
    world = World()
    refs = [world.issued(str(number)) for number in range(1, 11)]
    world.records.delete(refs[0])

    report = world.reconciler.run()
    world.drain()

    assert (report.full_sweep, report.missing_records, report.mass_revoke_blocked) == (True, 1, False)
    assert "kintone-7-1" not in world.gateway.keys
    assert len(world.gateway.keys) == 9
    assert world.state_store.get(refs[0]).status == KeyStatus.REVOKED
    assert world.key_store.scheduled_for_deletion == {"keys/app-7/record-1"}


def test_too_many_missing_records_at_once_revoke_nothing_until_an_operator_allows_it() -> None:
    world = World(max_revoke_share=0.2, mass_revoke_floor=2)
    refs = [world.issued(str(number)) for number in range(1, 11)]
    for ref in refs[:3]:  # 30% > 20%, and 3 > the floor of 2
        world.records.delete(ref)

    report = world.reconciler.run()

    assert (report.mass_revoke_blocked, report.missing_records, report.issued_keys) == (True, 3, 10)
    assert world.queue.take() == []
    assert len(world.gateway.keys) == 10

    world.reconciler.run(allow_mass_revoke=True)
    world.drain()
    assert len(world.gateway.keys) == 7


def test_a_few_missing_records_are_revoked_whatever_their_share() -> None:
    world = World(max_revoke_share=0.2, mass_revoke_floor=2)
    refs = [world.issued(str(number)) for number in range(1, 4)]
    for ref in refs[:2]:  # 67%, but only 2
        world.records.delete(ref)

    assert world.reconciler.run().mass_revoke_blocked is False
    world.drain()
    assert list(world.gateway.keys) == ["kintone-7-3"]


def test_only_a_full_sweep_looks_for_missing_records() -> None:
    world = World()
    world.issued("1")
    world.reconciler.run()  # the first run is a full sweep
    world.records.delete(RecordRef(app_id=APP, record_id="1"))

    world.advance(60)
    assert world.reconciler.run().full_sweep is False
    assert world.queue.take() == []

    world.advance(600)
    assert world.reconciler.run().full_sweep is True
    assert [item.record_id for item in world.queue.take()] == ["1"]
