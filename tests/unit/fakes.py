"""In-memory stand-ins for the ports, with crash points for exactly-once tests."""

from __future__ import annotations

from typing import Any

from lambdas.domain.ports import (
    KeyChange,
    KeySpec,
    KeyState,
    RecordRef,
    RevisionConflictError,
    SecretLabels,
    StoredKey,
)
from lambdas.domain.teams import TeamPolicy


class InjectedCrashError(RuntimeError):
    """A process death at a chosen step, simulated."""


class CrashPoints:
    def __init__(self) -> None:
        self.armed: set[str] = set()

    def arm(self, name: str) -> None:
        self.armed.add(name)

    def hit(self, name: str) -> None:
        if name in self.armed:
            self.armed.discard(name)
            raise InjectedCrashError(name)


def kintone_record(record_id: str, revision: int = 1, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "$id": {"type": "__ID__", "value": record_id},
        "$revision": {"type": "__REVISION__", "value": str(revision)},
        "作成者": {"type": "CREATOR", "value": {"code": "taro", "name": "Taro"}},
        "更新者": {"type": "MODIFIER", "value": {"code": "taro", "name": "Taro"}},
        "key_name": {"type": "SINGLE_LINE_TEXT", "value": "my notebook"},
        "team": {"type": "SINGLE_LINE_TEXT", "value": "platform"},
        "models": {"type": "CHECK_BOX", "value": []},
        "status": {"type": "DROP_DOWN", "value": None},
        "api_key": {"type": "SINGLE_LINE_TEXT", "value": ""},
        "message": {"type": "MULTI_LINE_TEXT", "value": ""},
    }
    for code, value in fields.items():
        record[code]["value"] = value
    return record


class FakeRecords:
    def __init__(self, crashes: CrashPoints) -> None:
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[dict[str, str]] = []
        self.conflicts_to_inject = 0
        self._crashes = crashes

    def add(self, app_id: str, record: dict[str, Any]) -> RecordRef:
        self.records[(app_id, record["$id"]["value"])] = record
        return RecordRef(app_id=app_id, record_id=record["$id"]["value"])

    def get_record(self, ref: RecordRef) -> dict[str, Any] | None:
        record = self.records.get((ref.app_id, ref.record_id))
        return None if record is None else {code: dict(field) for code, field in record.items()}

    def edit(self, ref: RecordRef, **values: Any) -> None:
        """A user's save: new values and a new revision."""
        record = self.records[(ref.app_id, ref.record_id)]
        for code, value in values.items():
            record[code]["value"] = value
        record["$revision"]["value"] = str(int(record["$revision"]["value"]) + 1)

    def write_fields(self, ref: RecordRef, revision: int, values: dict[str, str]) -> int:
        self._crashes.hit("before_write_back")
        record = self.records[(ref.app_id, ref.record_id)]
        if self.conflicts_to_inject:
            self.conflicts_to_inject -= 1
            self.edit(ref)
        if int(record["$revision"]["value"]) != revision:
            raise RevisionConflictError("changed")
        for code, value in values.items():
            record[code]["value"] = value
        record["$revision"]["value"] = str(revision + 1)
        self.writes.append(values)
        self._crashes.hit("after_write_back")
        return revision + 1

    def value(self, ref: RecordRef, code: str) -> Any:
        return self.records[(ref.app_id, ref.record_id)][code]["value"]


class FakeGateway:
    """LiteLLM's observable key semantics: alias unique, key value unique, delete frees both."""

    def __init__(self, crashes: CrashPoints) -> None:
        self.teams: dict[str, TeamPolicy] = {}
        self.keys: dict[str, KeySpec] = {}  # alias → spec
        self.generate_calls = 0
        self._crashes = crashes

    def ensure_team(self, team_id: str, policy: TeamPolicy) -> None:
        self.teams.setdefault(team_id, policy)

    def create_key(self, spec: KeySpec) -> None:
        self._crashes.hit("before_litellm")
        self.keys.pop(spec.alias, None)
        self.keys[spec.alias] = spec
        self.generate_calls += 1
        self._crashes.hit("after_litellm")

    def upsert_key(self, spec: KeySpec) -> list[KeyChange]:
        self._crashes.hit("before_litellm")
        existing = self.keys.get(spec.alias)
        if existing is None or existing.api_key != spec.api_key:
            self.create_key(spec)
            return [KeyChange.CREATED]
        changes = []
        if existing.team_id != spec.team_id:
            changes.append(KeyChange.TEAM)
        if existing.models != spec.models:
            changes.append(KeyChange.MODELS)
        if existing.metadata != spec.metadata:
            changes.append(KeyChange.METADATA)
        self.keys[spec.alias] = spec
        self._crashes.hit("after_litellm")
        return changes

    def delete_key(self, alias: str) -> bool:
        return self.keys.pop(alias, None) is not None

    def working_keys(self) -> set[str]:
        return {spec.api_key for spec in self.keys.values()}


class FakeKeyStore:
    def __init__(self, crashes: CrashPoints) -> None:
        self.secrets: dict[str, str] = {}
        self.scheduled_for_deletion: set[str] = set()
        self.labels: dict[str, SecretLabels] = {}
        self._crashes = crashes
        self._counter = 0

    def get_or_create(self, ref: RecordRef, labels: SecretLabels) -> StoredKey:
        self._crashes.hit("before_secret")
        name = f"keys/app-{ref.app_id}/record-{ref.record_id}"
        created = name not in self.secrets or name in self.scheduled_for_deletion
        if created:
            self._counter += 1
            self.secrets[name] = f"sk-test-{self._counter:04d}-abcdefghijkl"
            self.scheduled_for_deletion.discard(name)
            self.labels[name] = labels
        self._crashes.hit("after_secret")
        return StoredKey(secret_id=name, api_key=self.secrets[name], created=created)

    def schedule_deletion(self, ref: RecordRef) -> None:
        name = f"keys/app-{ref.app_id}/record-{ref.record_id}"
        if name in self.secrets:
            self.scheduled_for_deletion.add(name)


class FakeStateStore:
    def __init__(self) -> None:
        self.states: dict[tuple[str, str], KeyState] = {}

    def get(self, ref: RecordRef) -> KeyState | None:
        return self.states.get((ref.app_id, ref.record_id))

    def put(self, state: KeyState) -> None:
        self.states[(state.app_id, state.record_id)] = state
