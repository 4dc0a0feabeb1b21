"""The test doubles keep their adapters' contract: each check runs against the fake (tests/unit/fakes.py)
and against the real adapter on the local stack (LiteLLM, moto's Secrets Manager and DynamoDB)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from lambdas.adapters import wiring
from lambdas.adapters.litellm_keys import LiteLLMError, LiteLLMKeyGateway
from lambdas.domain.key_request import key_hash
from lambdas.domain.ports import (
    KeyChange,
    KeySpec,
    KeyState,
    KeyStatus,
    RecordRef,
    Retirement,
    SecretLabels,
    StateConflictError,
)
from lambdas.domain.teams import LOCAL_TEAM_CATALOG, TeamPolicy
from tests.integration.conftest import LocalStack
from tests.unit.fakes import CrashPoints, FakeGateway, FakeKeyStore, FakeStateStore

pytestmark = pytest.mark.integration

PLATFORM = TeamPolicy.model_validate(LOCAL_TEAM_CATALOG["platform"])
RESEARCH = TeamPolicy.model_validate(LOCAL_TEAM_CATALOG["research"])


def new_value() -> str:
    return f"sk-contract-{uuid.uuid4().hex}"


def new_alias() -> str:
    return f"contract-{uuid.uuid4().hex[:12]}"


def spec(
    api_key: str, alias: str, team: str = "platform", models: tuple[str, ...] = ("fake-gpt",)
) -> KeySpec:
    return KeySpec(api_key=api_key, alias=alias, team_id=team, models=models, metadata={"k": "v"})


@pytest.fixture(params=["fake", "real"])
def gateway(request: pytest.FixtureRequest):
    if request.param == "fake":
        return FakeGateway(CrashPoints())
    stack: LocalStack = request.getfixturevalue("local_stack")
    # LiteLLM itself, not through the fault proxy, with a timeout that a loaded machine keeps.
    return LiteLLMKeyGateway(stack.litellm.base_url, StaticCredential(stack.litellm.master_key), 10)


class StaticCredential:
    def __init__(self, value: str) -> None:
        self._value = value

    def current(self) -> str:
        return self._value

    def refreshed(self) -> str:
        return self._value


@pytest.fixture(params=["fake", "real"])
def key_store(request: pytest.FixtureRequest):
    if request.param == "fake":
        return FakeKeyStore(CrashPoints())
    request.getfixturevalue("local_stack")
    return wiring.key_store()


@pytest.fixture(params=["fake", "real"])
def state_store(request: pytest.FixtureRequest):
    if request.param == "fake":
        return FakeStateStore()
    request.getfixturevalue("local_stack")
    return wiring.state_store()


def new_ref() -> RecordRef:
    return RecordRef(app_id="1", record_id=str(uuid.uuid4().int % 10**9 + 1))


# -- LiteLLM keys -----------------------------------------------------------------------------------


def test_a_created_key_works_under_its_alias_and_an_upsert_reports_what_changed(gateway) -> None:
    gateway.ensure_team("platform", PLATFORM)
    gateway.ensure_team("research", RESEARCH)
    value, alias = new_value(), new_alias()
    gateway.create_key(spec(value, alias))

    assert gateway.alias_of(value) == alias
    assert gateway.key_works(value, "fake-gpt")
    assert not gateway.key_works(value, "other-model")  # not among its models
    assert gateway.upsert_key(spec(value, alias)) == []
    assert gateway.upsert_key(spec(value, alias, models=("fake-gpt", "other-model"))) == [KeyChange.MODELS]
    assert gateway.key_works(value, "other-model")
    changes = gateway.upsert_key(spec(value, alias, team="research", models=("priced-gpt",)))
    assert changes == [KeyChange.TEAM, KeyChange.MODELS]
    assert gateway.key_works(value, "priced-gpt")
    gateway.delete_keys([alias])


def test_an_upsert_never_adopts_a_key_that_carries_another_alias(gateway) -> None:
    gateway.ensure_team("platform", PLATFORM)
    value, alias = new_value(), new_alias()
    gateway.create_key(spec(value, f"{alias}-prev"))

    with pytest.raises(LiteLLMError) as refused:
        gateway.upsert_key(spec(value, alias))

    assert refused.value.error_type == "alias_mismatch"
    assert gateway.alias_of(value) == f"{alias}-prev"  # untouched
    gateway.delete_keys([f"{alias}-prev"])


def test_creating_a_key_replaces_an_orphan_that_holds_its_alias(gateway) -> None:
    gateway.ensure_team("platform", PLATFORM)
    orphan, value, alias = new_value(), new_value(), new_alias()
    gateway.create_key(spec(orphan, alias))

    gateway.create_key(spec(value, alias))

    assert gateway.alias_of(value) == alias
    assert gateway.alias_of(orphan) is None
    assert not gateway.key_works(orphan, "fake-gpt")
    gateway.delete_keys([alias])


def test_a_rename_moves_the_alias_and_refuses_one_that_is_taken(gateway) -> None:
    gateway.ensure_team("platform", PLATFORM)
    first, second, alias = new_value(), new_value(), new_alias()
    gateway.create_key(spec(first, alias))
    gateway.create_key(spec(second, f"{alias}-next"))

    gateway.rename_key(first, f"{alias}-prev")
    gateway.rename_key(second, alias)

    assert (gateway.alias_of(first), gateway.alias_of(second)) == (f"{alias}-prev", alias)
    with pytest.raises(LiteLLMError):
        gateway.rename_key(first, alias)
    gateway.delete_keys([alias, f"{alias}-prev"])


def test_keys_are_deleted_by_alias_or_exactly_by_hash(gateway) -> None:
    gateway.ensure_team("platform", PLATFORM)
    first, second, alias = new_value(), new_value(), new_alias()
    gateway.create_key(spec(first, alias))
    gateway.create_key(spec(second, f"{alias}-prev"))

    assert gateway.delete_key_with_hash(key_hash(second)) is True
    assert gateway.delete_key_with_hash(key_hash(second)) is False
    assert gateway.alias_of(first) == alias  # only that key went
    assert gateway.delete_keys([alias, f"{alias}-next"]) is True
    assert gateway.delete_keys([alias, f"{alias}-next"]) is False
    assert gateway.alias_of(first) is None
    assert not gateway.key_works(first, "fake-gpt")


def test_a_changed_team_budget_reaches_litellm(local_stack: LocalStack) -> None:
    """The real gateway only: LiteLLM's team holds the catalog's new values (defect 9)."""
    team = f"contract-{uuid.uuid4().hex[:8]}"
    master_key = StaticCredential(local_stack.litellm.master_key)
    LiteLLMKeyGateway(local_stack.litellm.base_url, master_key, 10).ensure_team(team, PLATFORM)
    changed = PLATFORM.model_copy(update={"max_budget": 250.0, "rpm_limit": 30, "models": ("fake-gpt",)})
    # A new container, as after a deployment that changed the catalog.
    LiteLLMKeyGateway(local_stack.litellm.base_url, master_key, 10).ensure_team(team, changed)

    listed = httpx.get(
        f"{local_stack.litellm.base_url}/v2/team/list",
        params={"team_id": team},
        headers={"Authorization": f"Bearer {local_stack.litellm.master_key}"},
        timeout=10,
    )
    (stored,) = [row for row in listed.json()["teams"] if row["team_id"] == team]
    assert (stored["max_budget"], stored["rpm_limit"], stored["models"]) == (250.0, 30, ["fake-gpt"])
    assert stored["budget_duration"] == PLATFORM.budget_duration


# -- key secrets --------------------------------------------------------------------------------------


def labels() -> SecretLabels:
    return SecretLabels(requested_by="taro", team="platform", key_alias="a", record_url="https://x/k/1")


def test_a_key_secret_is_made_once_voided_at_revoke_and_renewed_after(key_store) -> None:
    ref = new_ref()
    first = key_store.get_or_create(ref, labels())
    again = key_store.get_or_create(ref, labels())
    assert (first.created, again.created, again.api_key) == (True, False, first.api_key)
    assert first.api_key.startswith("sk-")

    key_store.schedule_deletion(ref, "taro")
    assert key_store.versions(first.secret_id).scheduled_for_deletion
    renewed = key_store.get_or_create(ref, labels())

    assert renewed.created is True
    assert renewed.api_key not in ("", first.api_key)
    assert not key_store.versions(renewed.secret_id).scheduled_for_deletion


def test_a_rotation_stages_a_pending_value_and_promotes_it(key_store) -> None:
    stored = key_store.get_or_create(new_ref(), labels())
    current = key_store.versions(stored.secret_id).version_with("AWSCURRENT")
    token = str(uuid.uuid4())

    key_store.create_pending(stored.secret_id, token)
    key_store.create_pending(stored.secret_id, token)  # repeated by Secrets Manager
    pending = key_store.value_of(stored.secret_id, token)
    assert pending not in (None, stored.api_key)
    assert key_store.versions(stored.secret_id).version_with("AWSPENDING") == token

    key_store.promote(stored.secret_id, token, current)

    assert key_store.versions(stored.secret_id).version_with("AWSCURRENT") == token
    assert key_store.versions(stored.secret_id).version_with("AWSPENDING") is None
    assert key_store.value_of(stored.secret_id, token) == pending


# -- state ------------------------------------------------------------------------------------------


def test_a_state_is_written_only_over_the_state_that_was_read(state_store) -> None:
    ref = new_ref()
    intent = KeyState(app_id=ref.app_id, record_id=ref.record_id, status=KeyStatus.ISSUING, team="platform")
    read = state_store.put(intent, expected=None)
    assert (read.version, state_store.get(ref)) == (1, read)

    with pytest.raises(StateConflictError):
        state_store.put(intent, expected=None)
    issued = state_store.put(read.model_copy(update={"status": KeyStatus.ISSUED}), expected=read)
    with pytest.raises(StateConflictError):
        state_store.put(read.model_copy(update={"team": "research"}), expected=read)  # read before `issued`

    assert state_store.get(ref) == issued
    assert issued.version == 2
    assert state_store.states_with_status(ref.app_id, KeyStatus.ISSUED).count(issued) == 1


def test_a_retirement_is_due_once_its_time_comes_and_a_later_one_replaces_it(state_store) -> None:
    ref = new_ref()
    earlier = Retirement(ref=ref, key_alias="a-prev", key_hash="1" * 64, due_at=1_000.0)
    later = Retirement(ref=ref, key_alias="a-prev", key_hash="2" * 64, due_at=2_000.0)
    mine: Callable[[float], list[Retirement]] = lambda now: [  # noqa: E731 - other tests' rows share the table
        retirement for retirement in state_store.due_retirements(now) if retirement.ref == ref
    ]
    state_store.schedule_retirement(earlier)
    assert mine(999.0) == []
    assert mine(1_000.0) == [earlier]

    state_store.schedule_retirement(later)
    state_store.clear_retirement(earlier)  # the sweep listed the earlier one: the later one stays
    assert mine(2_000.0) == [later]
    state_store.clear_retirement(later)
    assert mine(2_000.0) == []
