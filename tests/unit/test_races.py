"""Regression tests for the races and fault paths of issue 9, each a schedule the explorer also covers."""

from __future__ import annotations

import contextlib

import pytest

from lambdas.domain.ports import TransientError
from lambdas.domain.rotation import RotationStep
from lambdas.domain.webhook_events import WorkItem
from tests.unit.fakes import InjectedCrashError, kintone_record
from tests.unit.world import APP, GRACE, World

SECRET_ID = "keys/app-7/record-1"
CREATE, SET, TEST, FINISH = list(RotationStep)


@pytest.fixture
def world() -> World:
    world = World()
    world.directory.in_organization["taro"] = ["platform", "research"]  # may move a key to research
    return world


def live_key(world: World, alias: str = "kintone-7-1"):
    return world.gateway.keys[alias]


# -- defect 1: an edit during a rotation ------------------------------------------------------------


def test_a_team_edit_during_a_rotation_moves_the_new_key_to_the_new_team(world: World) -> None:
    ref = world.issued()
    world.rotate(ref, [CREATE, SET])  # the new key is made for the team read now
    world.records.edit(ref, team="research")
    world.converge(ref)

    world.rotate(ref, [TEST, FINISH])

    shown = world.records.value(ref, "api_key")
    assert live_key(world).api_key == shown
    assert live_key(world).team_id == "research"
    assert live_key(world).models == ("fake-gpt", "priced-gpt")


def test_a_models_edit_during_a_rotation_tests_the_new_key_with_a_model_it_has(world: World) -> None:
    ref = world.issued()
    world.rotate(ref, [CREATE, SET])
    world.records.edit(ref, team="research", models=["priced-gpt"])  # no model the new key has
    world.converge(ref)

    world.rotate(ref, [TEST, FINISH])  # used to fail: "the new key did not work"

    assert world.records.value(ref, "status") == "Issued"
    assert live_key(world).api_key == world.records.value(ref, "api_key")
    assert live_key(world).models == ("priced-gpt",)


def test_an_edit_landing_during_the_switch_is_not_undone_by_the_rotation(world: World) -> None:
    ref = world.issued()
    world.rotate(ref, [CREATE, SET, TEST])
    original_promote = world.key_store.promote

    def promote_then_edit(*args, **kwargs):
        original_promote(*args, **kwargs)
        world.records.edit(ref, team="research")
        world.converge(ref)  # the worker handles the edit between the rotator's calls

    world.key_store.promote = promote_then_edit
    world.rotate(ref, [FINISH])

    assert live_key(world).api_key == world.records.value(ref, "api_key")
    assert live_key(world).team_id == "research"
    assert world.state_store.get(ref).team == "research"


# -- defect 2: a rotation of a Failed record --------------------------------------------------------


def test_a_rotation_of_a_failed_record_keeps_the_key_it_shows_working(world: World) -> None:
    ref = world.issued()
    world.records.edit(ref, team="no-such-team")
    world.converge(ref)
    assert world.records.value(ref, "status") == "Failed"

    world.rotate(ref)
    world.advance(GRACE + 60)
    world.reconciler.run()
    world.drain()

    shown = world.records.value(ref, "api_key")
    assert shown in world.gateway.working_keys()
    assert world.records.value(ref, "status") == "Failed"  # and its message still says why


# -- defect 3: rotation set-up and requests ---------------------------------------------------------


def test_a_failed_rotation_set_up_is_retried(world: World) -> None:
    original = world.key_store.ensure_rotation
    calls = []

    def throttled_once(ref):
        calls.append(ref)
        if len(calls) == 1:
            raise TransientError("Secrets Manager RotateSecret: ThrottlingException")
        original(ref)

    world.key_store.ensure_rotation = throttled_once
    ref = world.records.add(APP, kintone_record("1"))
    with pytest.raises(TransientError):
        world.converge(ref, "ADD_RECORD")

    world.converge(ref, "ADD_RECORD")  # SQS delivers it again

    assert SECRET_ID in world.key_store.rotation_scheduled


# -- defect 4: give-up ------------------------------------------------------------------------------


def kintone_down(world: World) -> None:
    def unavailable(*_args, **_kwargs):
        raise TransientError("kintone answered 503")

    world.records.get_record = unavailable
    world.records.write_fields = unavailable


def test_give_up_while_kintone_is_down_leaves_no_key_the_sweep_cannot_find(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.crashes.arm("before_write_back")  # the key exists; kintone fails from here on
    with pytest.raises(InjectedCrashError):
        world.converge(ref, "ADD_RECORD")
    healthy = (world.records.get_record, world.records.write_fields)
    kintone_down(world)
    item = WorkItem(app_id=APP, record_id="1", trigger="ADD_RECORD", received_at=0.0)
    with contextlib.suppress(TransientError):  # the worker logs it; the DLQ alarm tells operators
        world.provisioner.report_gave_up(item, 5, "kintone answered 503")

    world.records.get_record, world.records.write_fields = healthy
    world.records.delete(ref)  # a bulk delete: no webhook
    world.advance(700)  # past the full-sweep interval
    world.reconciler.run()
    world.drain()

    assert world.gateway.working_keys() == set()


def test_give_up_on_a_later_change_keeps_the_key_the_record_shows(world: World) -> None:
    ref = world.issued()
    shown = world.records.value(ref, "api_key")
    world.records.edit(ref, team="no-such-team")
    world.converge(ref)  # Failed, the key stays
    world.records.edit(ref, team="research")

    def unavailable(*_args, **_kwargs):
        raise TransientError("LiteLLM answered 503")

    world.gateway.ensure_team = unavailable
    with pytest.raises(TransientError):
        world.converge(ref)
    item = WorkItem(app_id=APP, record_id="1", trigger="UPDATE_RECORD", received_at=0.0)
    world.provisioner.report_gave_up(item, 5, "LiteLLM answered 503")

    assert world.records.value(ref, "api_key") == shown
    assert shown in world.gateway.working_keys()


# -- defect 7: retirement ---------------------------------------------------------------------------


def test_retirement_deletes_the_key_it_recorded_not_whatever_holds_the_alias_now(world: World) -> None:
    ref = world.issued()
    world.rotate(ref)  # key 0 retires, key 1 is current
    key_1 = world.records.value(ref, "api_key")
    world.advance(GRACE + 60)
    original_listing = world.state_store.due_retirements

    def listing_then_rotation(now):
        due = original_listing(now)
        for step in RotationStep:  # a second rotation: key 1 retires, key 2 is current
            world.rotator.run(SECRET_ID, "request-token-2", step)
        return due

    world.state_store.due_retirements = listing_then_rotation
    world.reconciler.retire_due_keys()

    assert key_1 in world.gateway.working_keys()  # inside its own grace period
    assert world.records.value(ref, "api_key") in world.gateway.working_keys()
