"""Keys only for active members of their team, on the real local stack.

The emulator's directory is changed through the User API as an administrator would
(`PUT /v1/users.json`, `PUT /v1/userOrganizations.json`); each offboarding test has its own owner
(conftest.LEAVERS) and puts them back, because every reconciler run checks every owner.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lambdas.adapters.wiring import state_store
from lambdas.domain.ports import KeyStatus, RecordRef
from lambdas.handlers import reconciler as reconciler_handler
from tests.integration.conftest import APP_ID, LocalStack

pytestmark = pytest.mark.integration


def issued_to(stack: LocalStack, owner: str) -> tuple[str, str]:
    record_id = stack.save_record(user=owner)
    return record_id, stack.wait_for_status(record_id, "Issued")["api_key"]["value"]


@pytest.fixture
def directory_restored(local_stack: LocalStack) -> Iterator[LocalStack]:
    yield local_stack
    local_stack.emulator.clear_faults()
    for leaver in ("leaver-deactivated", "leaver-moved", "leaver-during-fault", "leaver-en-masse"):
        local_stack.deactivate_user(leaver, valid=True)
        local_stack.move_user(leaver, "platform")


def emitted_metrics(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """What the reconciler handler hands to Powertools (printed as EMF for CloudWatch and alarms)."""
    emitted: list[tuple[str, float]] = []
    add_metric = reconciler_handler.metrics.add_metric
    monkeypatch.setattr(
        reconciler_handler.metrics,
        "add_metric",
        lambda name, unit, value, **kwargs: (
            emitted.append((name, value)) or add_metric(name, unit, value, **kwargs)
        ),
    )
    return emitted


def test_a_member_of_platform_gets_a_working_key(local_stack: LocalStack) -> None:
    record_id, api_key = issued_to(local_stack, "hanako")

    assert local_stack.chat_status(api_key) == 200
    assert state_store().get(RecordRef(app_id=APP_ID, record_id=record_id)).owner == "hanako"
    [key] = local_stack.keys_under_alias(record_id)
    assert key["team_id"] == "platform"


@pytest.mark.parametrize("user", ["jiro", "saburo"], ids=["research-only", "no-team"])
def test_someone_outside_platform_gets_failed_and_no_key(local_stack: LocalStack, user: str) -> None:
    record_id = local_stack.save_record(user=user)

    record = local_stack.wait_for_status(record_id, "Failed")

    assert record["message"]["value"] == (
        f"{user} may not hold a key of team 'platform' (not a member of the team). "
        "Only active members of organization platform may."
    )
    assert record["api_key"]["value"] == ""
    assert local_stack.keys_under_alias(record_id) == []
    assert local_stack.stored_key(record_id) is None


@pytest.mark.parametrize(
    ("owner", "leave", "reason"),
    [
        (
            "leaver-deactivated",
            lambda stack: stack.deactivate_user("leaver-deactivated"),
            "the user is deactivated",
        ),
        (
            "leaver-moved",
            lambda stack: stack.move_user("leaver-moved", "research"),
            "not a member of the team",
        ),
    ],
    ids=["deactivated", "moved-out"],
)
def test_an_owner_who_leaves_loses_the_key_within_one_reconciler_run(
    directory_restored: LocalStack, owner: str, leave, reason: str
) -> None:
    stack = directory_restored
    record_id, api_key = issued_to(stack, owner)
    kept_id, kept_key = issued_to(stack, "taro")

    leave(stack)
    report = stack.reconcile()
    record = stack.wait_for_status(record_id, "Revoked")

    assert report["owners_left"] >= 1  # this owner, and any other the session's tests left behind
    assert stack.chat_status(api_key) == 401
    assert record["api_key"]["value"] == ""
    assert record["message"]["value"] == (
        f"The key was revoked: {owner} may no longer hold a key of team 'platform' ({reason}). "
        "Only active members of organization platform may."
    )
    assert stack.keys_under_alias(record_id) == []
    assert stack.secrets_client().describe_secret(SecretId=stack.secret_name(record_id))["DeletedDate"]
    assert state_store().get(RecordRef(app_id=APP_ID, record_id=record_id)).status == KeyStatus.REVOKED
    assert stack.chat_status(kept_key) == 200
    assert stack.record(kept_id)["status"]["value"] == "Issued"


@pytest.mark.parametrize(
    "fault",
    [
        {"path_prefix": "/v1/", "status": 503, "count": 100},
        {"path_prefix": "/v1/", "status": 429, "count": 100},
        {"path_prefix": "/v1/", "delay_seconds": 3, "count": 100},  # longer than the 2 s timeout
    ],
    ids=["5xx", "429", "timeout"],
)
def test_a_failing_user_api_during_a_sweep_revokes_nothing(
    directory_restored: LocalStack, monkeypatch: pytest.MonkeyPatch, fault: dict
) -> None:
    stack = directory_restored
    record_id, api_key = issued_to(stack, "leaver-during-fault")
    stack.deactivate_user("leaver-during-fault")
    stack.emulator.add_fault(**fault)
    emitted = emitted_metrics(monkeypatch)

    report = stack.reconcile()

    assert report["owner_check_failed"] is True
    assert report["owners_left"] == 0
    assert ("OwnerCheckFailed", 1) in emitted
    assert stack.chat_status(api_key) == 200
    assert stack.record(record_id)["status"]["value"] == "Issued"


def test_an_owner_a_partial_member_list_misses_keeps_the_key(
    directory_restored: LocalStack,
) -> None:
    """A 200 answer cut short (a list read while people move): the worker asks about the owner alone."""
    stack = directory_restored
    record_id, api_key = issued_to(stack, "leaver-listed-late")  # the last member of platform by id
    platform_members = len(stack.emulator.directory.organization_members("platform"))
    handled = stack.handled_for(record_id)
    # Both teams' lists are read once per sweep; research's is shorter than the cut.
    stack.emulator.add_fault(
        path_prefix="/v1/organization/users.json", truncate_to=platform_members - 1, count=2
    )

    report = stack.reconcile()
    stack.wait_record_handled(record_id, handled + 1)

    assert report["owners_left"] >= 1
    assert stack.chat_status(api_key) == 200
    assert stack.record(record_id)["status"]["value"] == "Issued"


def test_more_owners_leaving_than_the_guard_allows_revokes_nothing(
    directory_restored: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = directory_restored
    issued_keys = len(state_store().states_with_status(APP_ID, KeyStatus.ISSUED))
    # More than MAX_REVOKE_SHARE (0.2) of the keys and more than MASS_REVOKE_FLOOR (5).
    record_ids = stack.bulk_save(issued_keys // 4 + 6, user="leaver-en-masse")
    stack.reconcile()  # no webhooks for a bulk save: the sweep finds them
    keys = [stack.wait_for_status(record_id, "Issued")["api_key"]["value"] for record_id in record_ids]
    stack.deactivate_user("leaver-en-masse")
    emitted = emitted_metrics(monkeypatch)

    report = stack.reconcile()

    assert report["mass_revoke_blocked"] is True
    assert report["owners_left"] >= len(record_ids)
    assert ("MassRevokeBlocked", 1) in emitted
    assert all(stack.chat_status(api_key) == 200 for api_key in keys[:3])
    assert all(stack.record(record_id)["status"]["value"] == "Issued" for record_id in record_ids[:3])
