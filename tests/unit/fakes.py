"""In-memory stand-ins for the ports, with crash points for exactly-once tests."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from typing import Any

from lambdas.adapters.litellm_keys import LiteLLMError
from lambdas.domain import key_request
from lambdas.domain.ports import (
    DirectoryError,
    DirectoryOrganization,
    DirectoryUser,
    KeyChange,
    KeySpec,
    KeyState,
    KeyStatus,
    KeyUsage,
    ReconcilerCursor,
    RecordMissingError,
    RecordRef,
    RecordWrite,
    Retirement,
    RevisionConflictError,
    SecretLabels,
    SecretVersions,
    ShownUsage,
    StateConflictError,
    StoredKey,
)
from lambdas.domain.teams import TeamPolicy
from lambdas.domain.webhook_events import WorkItem


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
        "spend": {"type": "NUMBER", "value": ""},
        "max_budget": {"type": "NUMBER", "value": ""},
        "budget_reset_at": {"type": "DATETIME", "value": ""},
    }
    for code, value in fields.items():
        record[code]["value"] = value
    return record


class FakeRecords:
    def __init__(self, crashes: CrashPoints) -> None:
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[dict[str, str]] = []
        self.comments: list[tuple[RecordRef, str, str]] = []
        self.queries: list[str] = []
        self.conflicts_to_inject = 0
        self.bulk_writes: list[list[RecordWrite]] = []
        self.fail_comments = False
        self.now = 1_700_000_000.0  # what kintone stamps as 更新日時 on a save
        self._crashes = crashes

    def add(self, app_id: str, record: dict[str, Any]) -> RecordRef:
        record["更新日時"] = {"type": "UPDATED_TIME", "value": _kintone_minute(self.now)}
        self.records[(app_id, record["$id"]["value"])] = record
        return RecordRef(app_id=app_id, record_id=record["$id"]["value"])

    def delete(self, ref: RecordRef) -> None:
        """A bulk delete: no webhook, the record is just gone."""
        del self.records[(ref.app_id, ref.record_id)]

    def add_comment(self, ref: RecordRef, text: str, mention_user: str) -> None:
        if self.fail_comments:
            raise RuntimeError("kintone refused the comment")
        self.comments.append((ref, text, mention_user))

    def query_records(self, app_id: str, query: str, fields: list[str]) -> list[dict[str, Any]]:
        """Understands the reconciler's queries (`[更新日時 >= "T" and ]$id > N order by … limit L`)
        and the worker's batch read (`$id in (A, B) limit L`, every field)."""
        self.queries.append(query)
        batch_read = re.fullmatch(r"\$id in \((?P<ids>\d+(?:, \d+)*)\) limit (?P<limit>\d+)", query)
        if batch_read is not None:
            assert not fields, "the batch read asks for every field"
            wanted = batch_read["ids"].split(", ")
            found = [self.get_record(RecordRef(app_id=app_id, record_id=record_id)) for record_id in wanted]
            return [record for record in found if record is not None][: int(batch_read["limit"])]
        match = re.fullmatch(
            r'(?:更新日時 >= "(?P<since>[^"]+)" and )?'
            r"\$id > (?P<after>\d+) order by \$id asc limit (?P<limit>\d+)",
            query,
        )
        assert match is not None, query
        since = match["since"]
        rows = sorted(
            (record for (app, _), record in self.records.items() if app == app_id),
            key=lambda record: int(record["$id"]["value"]),
        )
        rows = [
            record
            for record in rows
            if int(record["$id"]["value"]) > int(match["after"])
            and (since is None or record["更新日時"]["value"] >= since)
        ]
        return [{code: dict(record[code]) for code in fields} for record in rows[: int(match["limit"])]]

    def get_record(self, ref: RecordRef) -> dict[str, Any] | None:
        record = self.records.get((ref.app_id, ref.record_id))
        return None if record is None else {code: dict(field) for code, field in record.items()}

    def edit(self, ref: RecordRef, **values: Any) -> None:
        """A user's save: new values and a new revision."""
        record = self.records[(ref.app_id, ref.record_id)]
        for code, value in values.items():
            record[code]["value"] = value
        record["$revision"]["value"] = str(int(record["$revision"]["value"]) + 1)
        record["更新日時"]["value"] = _kintone_minute(self.now)

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
        record["更新日時"]["value"] = _kintone_minute(self.now)
        self.writes.append(values)
        self._crashes.hit("after_write_back")
        return revision + 1

    def write_records(self, app_id: str, writes: Sequence[RecordWrite]) -> dict[str, int]:
        """kintone's bulk update: checks every record first, then writes all or none."""
        assert len(writes) <= 100, "kintone refuses more than 100 records a request"
        self.bulk_writes.append(list(writes))
        for write in writes:
            record = self.records.get((app_id, write.record_id))
            if record is None:
                raise RecordMissingError(write.record_id)
            if write.revision is not None and int(record["$revision"]["value"]) != write.revision:
                raise RevisionConflictError(write.record_id)
        revisions = {}
        for write in writes:
            record = self.records[(app_id, write.record_id)]
            for code, value in write.values.items():
                record[code]["value"] = value
            record["$revision"]["value"] = str(int(record["$revision"]["value"]) + 1)
            record["更新日時"]["value"] = _kintone_minute(self.now)
            revisions[write.record_id] = int(record["$revision"]["value"])
        return revisions

    def value(self, ref: RecordRef, code: str) -> Any:
        return self.records[(ref.app_id, ref.record_id)][code]["value"]


class FakeGateway:
    """LiteLLM's observable key semantics: alias unique, key value unique, delete frees both."""

    def __init__(self, crashes: CrashPoints) -> None:
        self.teams: dict[str, TeamPolicy] = {}
        self.keys: dict[str, KeySpec] = {}  # alias → spec
        self.tested_models: list[str] = []  # the model of each key_works request, in order
        self.broken_keys: set[str] = set()  # keys that exist but fail a real request
        self.generate_calls = 0
        self.spend: dict[str, float] = {}  # alias → spend
        self.budget: dict[str, tuple[float | None, str | None]] = {}  # alias → (max, reset at)
        self.usage_pages_read = 0
        self._crashes = crashes

    def ensure_team(self, team_id: str, policy: TeamPolicy) -> None:
        self.teams[team_id] = policy  # created, or brought up to the catalog's policy

    def create_key(self, spec: KeySpec) -> None:
        self._crashes.hit("before_litellm")
        self.keys.pop(spec.alias, None)
        self.keys[spec.alias] = spec
        self.generate_calls += 1
        self._crashes.hit("after_litellm")

    def upsert_key(self, spec: KeySpec) -> list[KeyChange]:
        self._crashes.hit("before_litellm")
        holder = self.alias_of(spec.api_key)
        if holder is None:
            self.create_key(spec)
            return [KeyChange.CREATED]
        if holder != spec.alias:
            raise LiteLLMError(409, "alias_mismatch", "key_alias", "the stored key carries another alias")
        existing = self.keys[spec.alias]
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

    def delete_keys(self, aliases: Sequence[str]) -> bool:
        return bool([alias for alias in aliases if self.keys.pop(alias, None) is not None])

    def delete_key_with_hash(self, key_hash: str) -> bool:
        for alias, spec in self.keys.items():
            if key_request.key_hash(spec.api_key) == key_hash:
                return self.keys.pop(alias) is not None
        return False

    def alias_of(self, api_key: str) -> str | None:
        return next((alias for alias, spec in self.keys.items() if spec.api_key == api_key), None)

    def alias_of_hash(self, token: str) -> str | None:
        return next(
            (alias for alias, spec in self.keys.items() if key_request.key_hash(spec.api_key) == token), None
        )

    def rename_key(self, api_key: str, alias: str) -> None:
        self._crashes.hit("before_rename")
        old_alias = self.alias_of(api_key)
        if old_alias is None:
            raise LiteLLMError(404, "not_found", "key", "no such key")
        if alias in self.keys and old_alias != alias:
            raise LiteLLMError(400, "bad_request_error", "key_alias", "the alias is taken")
        self.keys[alias] = self.keys.pop(old_alias).model_copy(update={"alias": alias})

    def key_works(self, api_key: str, model: str) -> bool:
        self.tested_models.append(model)
        spec = next((spec for spec in self.keys.values() if spec.api_key == api_key), None)
        return spec is not None and model in spec.models and api_key not in self.broken_keys

    def key_usage(self, alias_contains: str) -> Iterator[KeyUsage]:
        matching = [(alias, spec) for alias, spec in self.keys.items() if alias_contains in alias]
        for start in range(0, len(matching), 100):
            self.usage_pages_read += 1
            for alias, spec in matching[start : start + 100]:
                max_budget, reset_at = self.budget.get(alias, (None, None))
                yield KeyUsage(
                    key_alias=alias,
                    key_hash=key_request.key_hash(spec.api_key),
                    spend=self.spend.get(alias, 0.0),
                    max_budget=max_budget,
                    budget_reset_at=reset_at,
                )

    def working_keys(self) -> set[str]:
        return {spec.api_key for spec in self.keys.values()}


class FakeKeyStore:
    """Secrets named `keys/app-A/record-R`; `secrets` holds each one's AWSCURRENT value."""

    def __init__(self, crashes: CrashPoints) -> None:
        self.secrets: dict[str, str] = {}
        self.current_version: dict[str, str] = {}
        self.pending: dict[str, tuple[str, str]] = {}  # name → (version id, value)
        self.scheduled_for_deletion: set[str] = set()
        self.rotation_scheduled: set[str] = set()
        self.deleted_by: dict[str, str] = {}
        self.labels: dict[str, SecretLabels] = {}
        self.rotation_requests: list[RecordRef] = []
        self._crashes = crashes
        self._counter = 0

    def get_or_create(self, ref: RecordRef, labels: SecretLabels) -> StoredKey:
        self._crashes.hit("before_secret")
        name = f"keys/app-{ref.app_id}/record-{ref.record_id}"
        created = name not in self.secrets or name in self.scheduled_for_deletion
        if created:
            self._counter += 1
            self.secrets[name] = self._new_value()
            self.current_version[name] = f"v{self._counter}"
            self.scheduled_for_deletion.discard(name)
            self.labels[name] = labels
        self._crashes.hit("after_secret")
        return StoredKey(secret_id=name, api_key=self.secrets[name], created=created)

    def ensure_rotation(self, ref: RecordRef) -> None:
        self.rotation_scheduled.add(f"keys/app-{ref.app_id}/record-{ref.record_id}")

    def schedule_deletion(self, ref: RecordRef, actor: str = "") -> None:
        self.deleted_by[f"keys/app-{ref.app_id}/record-{ref.record_id}"] = actor
        name = f"keys/app-{ref.app_id}/record-{ref.record_id}"
        if name in self.secrets:
            self.scheduled_for_deletion.add(name)

    def request_rotation(self, ref: RecordRef) -> None:
        self.rotation_scheduled.add(f"keys/app-{ref.app_id}/record-{ref.record_id}")  # turned on if off
        self.rotation_requests.append(ref)

    def versions(self, secret_id: str) -> SecretVersions:
        match = re.fullmatch(r"keys/app-(\d+)/record-(\d+)", secret_id)
        if match is None:
            raise ValueError("not a key secret of this deployment")
        stages: dict[str, tuple[str, ...]] = {self.current_version[secret_id]: ("AWSCURRENT",)}
        if secret_id in self.pending:
            stages[self.pending[secret_id][0]] = ("AWSPENDING",)
        return SecretVersions(
            ref=RecordRef(app_id=match[1], record_id=match[2]),
            scheduled_for_deletion=secret_id in self.scheduled_for_deletion,
            stages_by_version=stages,
        )

    def value_of(self, secret_id: str, version_id: str) -> str | None:
        if self.current_version.get(secret_id) == version_id:
            return self.secrets[secret_id]
        pending = self.pending.get(secret_id)
        return pending[1] if pending and pending[0] == version_id else None

    def create_pending(self, secret_id: str, version_id: str) -> None:
        if self.value_of(secret_id, version_id) is None:
            self._counter += 1
            self.pending[secret_id] = (version_id, self._new_value())

    def promote(self, secret_id: str, version_id: str, current_version_id: str) -> None:
        self._crashes.hit("before_promote")
        pending_version, value = self.pending.pop(secret_id)
        assert (pending_version, self.current_version[secret_id]) == (version_id, current_version_id)
        self.secrets[secret_id] = value
        self.current_version[secret_id] = version_id

    def _new_value(self) -> str:
        return f"sk-test-{self._counter:04d}-abcdefghijkl"


class FakeStateStore:
    def __init__(self) -> None:
        self.states: dict[tuple[str, str], KeyState] = {}
        self.cursors: dict[str, ReconcilerCursor] = {}
        self.retirements: dict[RecordRef, Retirement] = {}

    def get(self, ref: RecordRef) -> KeyState | None:
        return self.states.get((ref.app_id, ref.record_id))

    def put(self, state: KeyState, expected: KeyState | None) -> KeyState:
        stored = self.get(RecordRef(app_id=state.app_id, record_id=state.record_id))
        if (stored.version if stored else None) != (expected.version if expected else None):
            raise StateConflictError(f"state of record {state.app_id}:{state.record_id} changed meanwhile")
        written = state.model_copy(update={"version": (expected.version if expected else 0) + 1})
        self.states[(state.app_id, state.record_id)] = written
        return written

    def states_with_status(self, app_id: str, status: KeyStatus) -> list[KeyState]:
        return [state for state in self.states.values() if state.app_id == app_id and state.status == status]

    def mark_usage_shown(self, state: KeyState, usage: ShownUsage, revision: int) -> None:
        stored = self.get(RecordRef(app_id=state.app_id, record_id=state.record_id))
        if stored is None or stored.status != KeyStatus.ISSUED or stored.key_hash != state.key_hash:
            return
        update: dict[str, Any] = {"usage": usage}
        if stored.record_revision == revision - 1:
            update["record_revision"] = revision
        # An update of two attributes, like the real one: the version is left alone.
        self.states[(state.app_id, state.record_id)] = stored.model_copy(update=update)

    def get_cursor(self, app_id: str) -> ReconcilerCursor | None:
        return self.cursors.get(app_id)

    def put_cursor(self, app_id: str, cursor: ReconcilerCursor) -> None:
        self.cursors[app_id] = cursor

    def schedule_retirement(self, retirement: Retirement) -> None:
        self.retirements[retirement.ref] = retirement

    def due_retirements(self, now: float) -> list[Retirement]:
        return [retirement for retirement in self.retirements.values() if retirement.due_at <= now]

    def clear_retirement(self, retirement: Retirement) -> None:
        if self.retirements.get(retirement.ref) == retirement:
            del self.retirements[retirement.ref]


class FakeAlertClaims:
    def __init__(self) -> None:
        self.claims: dict[str, float] = {}  # alert id → expiry
        self.now = 0.0

    def claim(self, alert_id: str, expires_at: float) -> bool:
        if self.claims.get(alert_id, 0.0) > self.now:
            return False
        self.claims[alert_id] = expires_at
        return True

    def release(self, alert_id: str) -> None:
        self.claims.pop(alert_id, None)


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[tuple[WorkItem, str]] = []

    def enqueue(self, items: Sequence[tuple[WorkItem, str]]) -> None:
        self.sent.extend(items)

    def take(self) -> list[WorkItem]:
        """Everything sent so far, deduplicated as SQS FIFO would, and forget it."""
        unique: dict[str, WorkItem] = {}
        for item, dedup_id in self.sent:
            unique.setdefault(dedup_id, item)
        self.sent.clear()
        return list(unique.values())


def _kintone_minute(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp - timestamp % 60, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeDirectory:
    """The cybozu.com directory as the User API shows it; by default the emulator's local one:
    organization platform (taro, hanako) with platform-sre under it, research (jiro), saburo in
    none, and admin in the group llm-operators.

    `failure` makes every read raise it, as a directory that is down or answers in part does.
    """

    def __init__(self) -> None:
        self.valid: dict[str, bool] = {
            "taro": True,
            "hanako": True,
            "jiro": True,
            "saburo": True,
            "admin": True,
        }
        self.parents: dict[str, str | None] = {"platform": None, "platform-sre": "platform", "research": None}
        self.in_organization: dict[str, list[str]] = {
            "taro": ["platform"],
            "hanako": ["platform"],
            "jiro": ["research"],
        }
        self.in_group: dict[str, list[str]] = {"admin": ["llm-operators"]}
        self.groups: set[str] = {"llm-operators"}
        self.failure: Exception | None = None
        self.reads = 0

    # -- what an administrator does --------------------------------------------------------------

    def deactivate(self, user: str) -> None:
        self.valid[user] = False

    def delete(self, user: str) -> None:
        del self.valid[user]
        self.in_organization.pop(user, None)
        self.in_group.pop(user, None)

    def move(self, user: str, organizations: list[str]) -> None:
        """Like PUT /v1/userOrganizations.json: the full list, what is left out is left."""
        self.in_organization[user] = list(organizations)

    # -- the reads ---------------------------------------------------------------------------------

    def users(self, codes: Sequence[str]) -> list[DirectoryUser]:
        self._read()
        return [
            DirectoryUser(code=code, valid=self.valid[code])
            for code in dict.fromkeys(codes)
            if code in self.valid
        ]

    def organizations_of(self, user: str) -> list[str]:
        self._read()
        self._known_user(user)
        return list(self.in_organization.get(user, []))

    def groups_of(self, user: str) -> list[str]:
        self._read()
        self._known_user(user)
        return list(self.in_group.get(user, []))

    def organization_members(self, code: str) -> list[DirectoryUser]:
        self._read()
        if code not in self.parents:
            raise DirectoryError(f"no organization {code}")
        return self._members(lambda user: code in self.in_organization.get(user, []))

    def group_members(self, code: str) -> list[DirectoryUser]:
        self._read()
        if code not in self.groups:
            raise DirectoryError(f"no group {code}")
        return self._members(lambda user: code in self.in_group.get(user, []))

    def organizations(self) -> list[DirectoryOrganization]:
        self._read()
        return [DirectoryOrganization(code=code, parent_code=parent) for code, parent in self.parents.items()]

    def _members(self, belongs: Any) -> list[DirectoryUser]:
        return [DirectoryUser(code=user, valid=valid) for user, valid in self.valid.items() if belongs(user)]

    def _known_user(self, user: str) -> None:
        if user not in self.valid:
            raise DirectoryError(f"no user {user}")

    def _read(self) -> None:
        self.reads += 1
        if self.failure is not None:
            raise self.failure
