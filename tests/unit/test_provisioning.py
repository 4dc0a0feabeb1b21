"""The provisioning decisions and the exactly-once property, without AWS or HTTP."""

from __future__ import annotations

import pytest

from lambdas.domain.membership import Memberships
from lambdas.domain.ports import KeyStatus, RecordRef, TransientError
from lambdas.domain.provisioning import KeyProvisioner, Outcome, ProvisioningConfig
from lambdas.domain.settings import FieldCodes
from lambdas.domain.teams import LOCAL_TEAM_CATALOG, TeamCatalog
from lambdas.domain.webhook_events import WorkItem
from tests.unit.fakes import (
    CrashPoints,
    FakeDirectory,
    FakeGateway,
    FakeKeyStore,
    FakeRecords,
    FakeStateStore,
    InjectedCrashError,
    kintone_record,
)

APP = "7"


class World:
    def __init__(self, language: str = "en") -> None:
        self.crashes = CrashPoints()
        self.records = FakeRecords(self.crashes)
        self.gateway = FakeGateway(self.crashes)
        self.key_store = FakeKeyStore(self.crashes)
        self.state_store = FakeStateStore()
        self.directory = FakeDirectory()
        self.provisioner = KeyProvisioner(
            ProvisioningConfig(
                team_catalog=TeamCatalog.model_validate(LOCAL_TEAM_CATALOG),
                field_codes=FieldCodes(),
                language=language,
                key_alias_prefix="kintone",
                kintone_base_url="https://example.cybozu.com",
            ),
            self.records,
            self.gateway,
            self.key_store,
            self.state_store,
            clock=lambda: 1_700_000_000.0,
            memberships=Memberships(self.directory),
        )

    def converge(self, ref: RecordRef, trigger: str = "ADD_RECORD"):
        item = WorkItem(app_id=ref.app_id, record_id=ref.record_id, trigger=trigger, received_at=0.0)
        return self.provisioner.converge(item)


@pytest.fixture
def world() -> World:
    return World()


def test_a_new_record_gets_one_key_written_back(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))

    result = world.converge(ref)

    assert result.outcome == Outcome.ISSUED
    api_key = world.records.value(ref, "api_key")
    assert api_key.startswith("sk-")
    assert world.records.value(ref, "status") == "Issued"
    assert "platform" in world.records.value(ref, "message")
    assert world.gateway.working_keys() == {api_key}
    spec = world.gateway.keys["kintone-7-1"]
    assert spec.team_id == "platform"
    assert spec.models == ("fake-gpt", "other-model")  # empty models → the team's default
    assert spec.metadata["requested_by"] == "taro"
    state = world.state_store.get(ref)
    assert state.status == KeyStatus.ISSUED
    assert state.record_revision == 2


def test_converging_a_matching_record_again_changes_nothing(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.converge(ref)
    writes = len(world.records.writes)

    result = world.converge(ref, trigger="UPDATE_RECORD")

    assert result.outcome == Outcome.UNCHANGED
    assert len(world.records.writes) == writes
    assert world.gateway.generate_calls == 1


def test_unknown_team_fails_with_a_message_naming_it_and_no_key(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1", team="foo"))

    result = world.converge(ref)

    assert result.outcome == Outcome.FAILED
    assert world.records.value(ref, "status") == "Failed"
    assert "team 'foo' is not a known team" in world.records.value(ref, "message")
    assert world.gateway.keys == {}
    assert world.key_store.secrets == {}
    # The failure is written once: its own echo finds the record already saying so.
    writes = len(world.records.writes)
    world.converge(ref, trigger="UPDATE_RECORD")
    assert len(world.records.writes) == writes


def test_messages_default_to_japanese() -> None:
    world = World(language="ja")
    ref = world.records.add(APP, kintone_record("1", team="foo"))
    world.converge(ref)
    assert "チーム 'foo' は登録されていません" in world.records.value(ref, "message")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"key_name": ""}, "'key_name' is empty"),
        ({"key_name": "x" * 101}, "at most 100 characters"),
        ({"key_name": "bad\x07name"}, "no control characters"),
        ({"team": ""}, "'team' is empty"),
        ({"models": ["priced-gpt"]}, "priced-gpt are not allowed for team 'platform'"),
    ],
)
def test_bad_values_fail_with_a_clear_message(world: World, fields: dict, expected: str) -> None:
    ref = world.records.add(APP, kintone_record("1", **fields))
    assert world.converge(ref).outcome == Outcome.FAILED
    assert expected in world.records.value(ref, "message")
    assert world.gateway.keys == {}


def test_a_record_missing_a_schema_field_fails_with_a_message(world: World) -> None:
    record = kintone_record("1")
    del record["team"]
    ref = world.records.add(APP, record)
    assert world.converge(ref).outcome == Outcome.FAILED
    assert "field 'team' is missing" in world.records.value(ref, "message")


def test_japanese_and_emoji_key_names_are_accepted(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1", key_name="検証用キー 🚀"))
    assert world.converge(ref).outcome == Outcome.ISSUED
    assert world.gateway.keys["kintone-7-1"].metadata["key_name"] == "検証用キー 🚀"


def test_a_forged_event_for_a_missing_record_issues_nothing(world: World) -> None:
    result = world.converge(RecordRef(app_id=APP, record_id="999"))
    assert result.outcome == Outcome.RECORD_NOT_FOUND
    assert world.gateway.keys == {}
    assert world.key_store.secrets == {}


def test_a_revision_conflict_rereads_and_retries(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.records.conflicts_to_inject = 2
    assert world.converge(ref).outcome == Outcome.ISSUED
    assert world.gateway.generate_calls == 1
    assert world.records.value(ref, "status") == "Issued"


def test_a_record_that_never_stops_changing_is_retried_later(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.records.conflicts_to_inject = 100
    with pytest.raises(TransientError):
        world.converge(ref)


@pytest.mark.parametrize(
    "crash_point",
    [
        "before_secret",
        "after_secret",
        "before_litellm",
        "after_litellm",
        "before_write_back",
        "after_write_back",
    ],
)
def test_a_crash_at_any_step_still_converges_on_exactly_one_key(world: World, crash_point: str) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.crashes.arm(crash_point)
    with pytest.raises(InjectedCrashError):
        world.converge(ref)

    world.converge(ref)  # the redelivered message

    api_key = world.records.value(ref, "api_key")
    assert world.gateway.working_keys() == {api_key}
    assert list(world.key_store.secrets.values()) == [api_key]
    assert world.records.value(ref, "status") == "Issued"
    assert world.state_store.get(ref).status == KeyStatus.ISSUED
    # and once converged, it stays put
    writes = len(world.records.writes)
    assert world.converge(ref).outcome == Outcome.UNCHANGED
    assert len(world.records.writes) == writes


def test_changing_team_and_models_updates_the_key_in_place(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.converge(ref)
    api_key = world.records.value(ref, "api_key")

    world.directory.move("taro", ["platform", "research"])
    world.records.edit(ref, team="research", models=["priced-gpt"])
    result = world.converge(ref, trigger="UPDATE_RECORD")

    assert result.outcome == Outcome.UPDATED
    assert world.gateway.working_keys() == {api_key}
    spec = world.gateway.keys["kintone-7-1"]
    assert (spec.team_id, spec.models) == ("research", ("priced-gpt",))
    message = world.records.value(ref, "message")
    assert "team: platform → research" in message
    assert "models: fake-gpt, other-model → priced-gpt" in message


@pytest.mark.parametrize("status", ["Revoke", "Revoked"])
def test_a_revoke_request_deletes_the_key_and_schedules_the_secret(world: World, status: str) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.converge(ref)
    world.records.edit(ref, status=status)

    assert world.converge(ref, trigger="UPDATE_RECORD").outcome == Outcome.REVOKED

    assert world.gateway.keys == {}
    assert world.key_store.scheduled_for_deletion == {"keys/app-7/record-1"}
    assert world.records.value(ref, "status") == "Revoked"
    assert world.records.value(ref, "api_key") == ""
    assert world.state_store.get(ref).status == KeyStatus.REVOKED


def test_a_deleted_record_has_its_key_revoked(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.converge(ref)
    del world.records.records[(APP, "1")]

    assert world.converge(ref, trigger="DELETE_RECORD").outcome == Outcome.REVOKED
    assert world.gateway.keys == {}
    assert world.converge(ref, trigger="DELETE_RECORD").outcome == Outcome.UNCHANGED


def test_a_forged_delete_for_a_record_that_exists_revokes_nothing(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.converge(ref)
    assert world.converge(ref, trigger="DELETE_RECORD").outcome == Outcome.UNCHANGED
    assert len(world.gateway.keys) == 1


def test_giving_up_tells_the_record_why(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    item = WorkItem(app_id=APP, record_id="1", trigger="ADD_RECORD", received_at=0.0)
    world.provisioner.report_gave_up(item, 5, "LiteLLM answered 503")
    assert world.records.value(ref, "status") == "Failed"
    assert "after 5 attempts (LiteLLM answered 503)" in world.records.value(ref, "message")


@pytest.mark.parametrize("status", ["Revoke", "Rotate"])
def test_giving_up_on_a_revoke_or_rotation_keeps_the_request_open(world: World, status: str) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.converge(ref)
    world.records.edit(ref, status=status)
    item = WorkItem(app_id=APP, record_id="1", trigger="UPDATE_RECORD", received_at=0.0)

    world.provisioner.report_gave_up(item, 5, "LiteLLM answered 503")

    assert world.records.value(ref, "status") == status  # still asked for: the reconciler retries
    assert "will be retried" in world.records.value(ref, "message")


def test_giving_up_on_an_issue_leaves_no_half_made_key(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.crashes.arm("before_write_back")
    with pytest.raises(InjectedCrashError):
        world.converge(ref)  # the secret and the key exist, the record does not show them
    item = WorkItem(app_id=APP, record_id="1", trigger="ADD_RECORD", received_at=0.0)

    world.provisioner.report_gave_up(item, 5, "kintone answered 403")

    assert world.records.value(ref, "status") == "Failed"
    assert world.gateway.keys == {}
    assert world.key_store.scheduled_for_deletion == {"keys/app-7/record-1"}


def test_a_revoke_names_who_asked_for_it(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.converge(ref)
    world.records.records[(APP, "1")]["更新者"]["value"] = {"code": "hanako", "name": "Hanako"}
    world.records.edit(ref, status="Revoke")
    world.converge(ref)
    assert world.key_store.deleted_by == {"keys/app-7/record-1": "hanako"}


def test_an_issued_key_gets_its_rotation_schedule(world: World) -> None:
    ref = world.records.add(APP, kintone_record("1"))
    world.converge(ref)
    assert world.key_store.rotation_scheduled == {"keys/app-7/record-1"}
