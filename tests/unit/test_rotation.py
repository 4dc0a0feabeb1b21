"""Rotation through the four Secrets Manager steps, notifications, and revokes racing other work."""

from __future__ import annotations

import pytest

from lambdas.domain.key_request import key_hash
from lambdas.domain.ports import KeyStatus
from lambdas.domain.provisioning import Outcome
from lambdas.domain.rotation import RotationRefusedError, RotationStep
from tests.unit.fakes import InjectedCrashError, kintone_record
from tests.unit.world import APP, GRACE, STEPS, World


@pytest.fixture
def world() -> World:
    return World()


# -- rotation -------------------------------------------------------------------------------------


def test_a_rotation_switches_to_a_tested_new_key_and_keeps_the_old_one_through_the_grace(
    world: World,
) -> None:
    ref = world.issued()
    old_key = world.records.value(ref, "api_key")

    world.rotate(ref)

    new_key = world.records.value(ref, "api_key")
    assert new_key != old_key
    assert world.gateway.alias_of(new_key) == "kintone-7-1"  # the record's alias, as before
    assert world.gateway.alias_of(old_key) == "kintone-7-1-prev"
    assert world.key_store.secrets["keys/app-7/record-1"] == new_key
    assert world.records.value(ref, "status") == "Issued"
    message = world.records.value(ref, "message")
    assert "The key was rotated. The old key stops working in 1 hour(s)" in message
    assert world.state_store.get(ref).key_hash == key_hash(new_key)
    assert world.records.comments[-1][2] == "taro"


def test_the_old_key_goes_once_its_grace_period_is_over(world: World) -> None:
    ref = world.issued()
    old_key = world.records.value(ref, "api_key")
    world.rotate(ref)
    new_key = world.records.value(ref, "api_key")

    world.advance(GRACE - 60)
    assert world.reconciler.run().keys_retired == 0
    assert world.gateway.working_keys() == {old_key, new_key}

    world.advance(120)
    assert world.reconciler.run().keys_retired == 1
    assert world.gateway.working_keys() == {new_key}
    assert world.state_store.retirements == {}


def test_after_a_rotation_the_worker_sees_nothing_to_do(world: World) -> None:
    ref = world.issued()
    world.rotate(ref)
    writes = len(world.records.writes)

    assert world.converge(ref).outcome == Outcome.UNCHANGED
    assert len(world.records.writes) == writes


def test_a_team_change_after_a_rotation_updates_the_new_key(world: World) -> None:
    ref = world.issued()
    world.rotate(ref)
    new_key = world.records.value(ref, "api_key")

    world.directory.move("taro", ["platform", "research"])
    world.records.edit(ref, team="research", models=["priced-gpt"])
    assert world.converge(ref).outcome == Outcome.UPDATED

    assert world.gateway.keys["kintone-7-1"].api_key == new_key
    assert world.gateway.keys["kintone-7-1"].team_id == "research"


def test_every_step_can_be_repeated(world: World) -> None:
    ref = world.issued()
    secret_id = "keys/app-7/record-1"
    for step in STEPS:
        world.rotator.run(secret_id, "request-token-1", step)
        world.rotator.run(secret_id, "request-token-1", step)
    world.rotator.run(secret_id, "request-token-1", RotationStep.FINISH)

    new_key = world.records.value(ref, "api_key")
    assert world.gateway.alias_of(new_key) == "kintone-7-1"
    assert len(world.gateway.keys) == 2  # the new key and the retiring one
    assert len([comment for comment in world.records.comments if "rotated" in comment[1]]) == 1


@pytest.mark.parametrize("crash_point", ["before_rename", "before_promote", "before_write_back"])
def test_a_crash_during_finish_converges_when_the_step_is_retried(world: World, crash_point: str) -> None:
    ref = world.issued()
    world.rotate(ref, steps=[RotationStep.CREATE, RotationStep.SET, RotationStep.TEST])
    world.crashes.arm(crash_point)
    with pytest.raises(InjectedCrashError):
        world.rotate(ref, steps=[RotationStep.FINISH])

    world.rotate(ref, steps=[RotationStep.FINISH])

    new_key = world.records.value(ref, "api_key")
    assert world.key_store.secrets["keys/app-7/record-1"] == new_key
    assert world.gateway.alias_of(new_key) == "kintone-7-1"
    assert len(world.gateway.keys) == 2


def test_a_failed_test_leaves_the_old_key_working_and_says_why(world: World) -> None:
    ref = world.issued()
    old_key = world.records.value(ref, "api_key")
    world.rotate(ref, steps=[RotationStep.CREATE, RotationStep.SET])
    world.gateway.broken_keys.add(world.gateway.keys["kintone-7-1-next"].api_key)

    with pytest.raises(RotationRefusedError):
        world.rotate(ref, steps=[RotationStep.TEST])

    assert world.records.value(ref, "api_key") == old_key
    assert world.gateway.alias_of(old_key) == "kintone-7-1"
    assert world.records.value(ref, "status") == "Issued"
    assert "Key rotation failed (the new key did not work" in world.records.value(ref, "message")
    assert world.key_store.secrets["keys/app-7/record-1"] == old_key
    assert world.gateway.working_keys() == {old_key}  # the untested key is gone


def test_a_rotation_of_a_record_without_a_key_is_refused(world: World) -> None:
    ref = world.issued()
    world.records.edit(ref, status="Revoke")
    world.converge(ref)

    with pytest.raises(Exception):  # noqa: B017 - the secret is gone; any refusal will do
        world.rotate(ref)
    assert world.gateway.keys == {}


def test_a_revoke_during_a_rotation_leaves_no_key(world: World) -> None:
    ref = world.issued()
    world.rotate(ref, steps=[RotationStep.CREATE])
    world.records.edit(ref, status="Revoke")
    world.converge(ref)  # revoked between createSecret and setSecret

    with pytest.raises(RotationRefusedError):
        world.rotate(ref, steps=[RotationStep.SET])

    assert world.gateway.keys == {}
    assert world.records.value(ref, "status") == "Revoked"


def test_a_revoke_deletes_the_keys_of_a_rotation_in_progress(world: World) -> None:
    ref = world.issued()
    world.rotate(ref, steps=[RotationStep.CREATE, RotationStep.SET])  # the pending key exists
    world.records.edit(ref, status="Revoke")

    world.converge(ref)

    assert world.gateway.keys == {}


def test_rotate_on_the_record_asks_secrets_manager_and_leaves_the_rotate_status(world: World) -> None:
    ref = world.issued()
    world.records.edit(ref, status="Rotate")

    assert world.converge(ref).outcome == Outcome.ROTATION_REQUESTED

    assert world.key_store.rotation_requests == [ref]
    assert world.records.value(ref, "status") == "Issued"
    assert "Key rotation started" in world.records.value(ref, "message")


def test_rotate_on_a_record_without_a_key_issues_one(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1", status="Rotate"))
    assert world.converge(ref, "ADD_RECORD").outcome == Outcome.ISSUED
    assert world.key_store.rotation_requests == []


# -- notifications --------------------------------------------------------------------------------


def test_issue_and_revoke_each_comment_once_mentioning_the_requester(world: World) -> None:
    ref = world.issued()
    world.converge(ref)  # an echo changes nothing and says nothing
    world.records.edit(ref, status="Revoke")
    world.converge(ref)
    world.converge(ref)

    assert [(text, user) for _, text, user in world.records.comments] == [
        ("Your key has been issued. See the record's api_key field.", "taro"),
        ("Your key has been revoked.", "taro"),
    ]


def test_a_comment_that_fails_does_not_fail_the_issue(world: World) -> None:
    world.records.fail_comments = True
    ref = world.records.add(APP, kintone_record("1"))
    result = world.converge(ref, "ADD_RECORD")
    assert (result.outcome, result.notified) == (Outcome.ISSUED, False)
    assert world.records.value(ref, "status") == "Issued"


# -- revokes racing pending work ------------------------------------------------------------------


def test_an_issue_retry_after_a_delete_does_not_bring_the_key_back(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.crashes.arm("before_write_back")  # the first issue attempt dies; its retry stays queued
    with pytest.raises(InjectedCrashError):
        world.converge(ref, "ADD_RECORD")
    world.records.delete(ref)
    assert world.converge(ref, "DELETE_RECORD").outcome == Outcome.REVOKED

    assert world.converge(ref, "ADD_RECORD").outcome == Outcome.UNCHANGED  # the retry

    assert world.gateway.keys == {}
    assert world.state_store.get(ref).status == KeyStatus.REVOKED
    assert world.key_store.scheduled_for_deletion == {"keys/app-7/record-1"}


def test_an_issue_retry_after_a_revoke_request_keeps_the_record_revoked(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.crashes.arm("after_litellm")
    with pytest.raises(InjectedCrashError):
        world.converge(ref, "ADD_RECORD")
    world.records.edit(ref, status="Revoke")
    assert world.converge(ref).outcome == Outcome.REVOKED

    assert world.converge(ref, "ADD_RECORD").outcome == Outcome.REVOKED  # the retry

    assert world.gateway.keys == {}
    assert world.records.value(ref, "status") == "Revoked"
    assert world.records.value(ref, "api_key") == ""


# -- review: revokes racing the switch -------------------------------------------------------------


def test_a_revoke_asked_for_before_the_switch_wins(world: World) -> None:
    ref = world.issued()
    world.rotate(ref, STEPS[:3])
    world.records.edit(ref, status="Revoke")  # the worker has not run yet

    with pytest.raises(RotationRefusedError, match="revoked"):
        world.rotate(ref, STEPS[3:])

    assert world.gateway.keys == {}  # neither the old nor the new key works
    assert world.records.value(ref, "status") == "Revoke"
    assert world.converge(ref).outcome == Outcome.REVOKED
    assert world.state_store.get(ref).status == KeyStatus.REVOKED


def test_a_revoke_landing_during_the_switch_leaves_no_stuck_state(world: World) -> None:
    ref = world.issued()
    world.rotate(ref, STEPS[:3])
    secret_id = "keys/app-7/record-1"
    original_promote = world.key_store.promote

    def promote_then_revoke(*args, **kwargs):
        original_promote(*args, **kwargs)
        world.records.edit(ref, status="Revoke")
        world.converge(ref)  # the worker revokes while the rotator is between its steps

    world.key_store.promote = promote_then_revoke
    with pytest.raises(RotationRefusedError):
        world.rotator.run(secret_id, "request-token-1", RotationStep.FINISH)

    assert world.gateway.keys == {}
    assert world.records.value(ref, "status") == "Revoked"
    assert world.state_store.get(ref).status == KeyStatus.REVOKED


def test_turning_rotation_on_passes_the_configuration_test(world: World) -> None:
    ref = world.issued()
    world.rotator.run(f"keys/app-{ref.app_id}/record-{ref.record_id}", "config-test-token", RotationStep.TEST)
    assert world.records.value(ref, "status") == "Issued"


def test_a_rotation_request_records_its_own_write_so_a_sweep_leaves_it_alone(world: World) -> None:
    ref = world.issued()
    world.records.edit(ref, status="Rotate")
    world.converge(ref)
    revision = int(world.records.records[(APP, "1")]["$revision"]["value"])
    assert world.state_store.get(ref).record_revision == revision


@pytest.mark.parametrize(
    ("test_model", "tested"),
    [
        ("other-model", "other-model"),  # the environment's cheap model, which the key may use
        ("priced-gpt", "fake-gpt"),  # not one of the key's models: the key's first model instead
        (None, "fake-gpt"),
    ],
)
def test_the_test_request_uses_the_configured_model_only_when_the_key_may_use_it(
    test_model: str | None, tested: str
) -> None:
    world = World(test_model=test_model)
    ref = world.issued()
    world.rotate(ref)
    assert world.gateway.tested_models == [tested]
    assert world.records.value(ref, "status") == "Issued"
