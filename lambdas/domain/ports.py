"""Interfaces the provisioning logic needs from the outside world, and the values that cross them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from lambdas.domain.teams import TeamPolicy
from lambdas.domain.webhook_events import WorkItem


class TransientError(RuntimeError):
    """A dependency failed in a way that a later retry may fix (5xx, 429, timeout, throttling)."""


class RevisionConflictError(RuntimeError):
    """kintone refused a write because the record changed since it was read (GAIA_CO02)."""


class StateConflictError(RevisionConflictError):
    """The stored state changed since it was read (another actor wrote it): read and decide again."""


class RecordRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    app_id: str
    record_id: str


class StoredKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    secret_id: str
    api_key: str
    created: bool  # False when the secret already existed, i.e. this is a retry or a change


class SecretLabels(BaseModel):
    """What the secret's description and tags say, so CloudTrail readers can find the record."""

    model_config = ConfigDict(frozen=True)

    requested_by: str
    team: str
    key_alias: str
    record_url: str


class KeySpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    api_key: str
    alias: str
    team_id: str
    models: tuple[str, ...]
    metadata: dict[str, str]


class KeyChange(StrEnum):
    CREATED = "created"
    TEAM = "team"
    MODELS = "models"
    METADATA = "metadata"


class KeyStatus(StrEnum):
    # Written before the secret and the key exist: a crash or a give-up that leaves them half-made
    # still leaves a state that the sweeps and the give-up path find.
    ISSUING = "ISSUING"
    ISSUED = "ISSUED"
    FAILED = "FAILED"
    REVOKED = "REVOKED"


class ShownUsage(BaseModel):
    """The usage values last written to a record, as kintone field values."""

    model_config = ConfigDict(frozen=True)

    spend: str
    max_budget: str
    budget_reset_at: str


class KeyState(BaseModel):
    """What the system last made true for a record."""

    model_config = ConfigDict(frozen=True)

    app_id: str
    record_id: str
    status: KeyStatus
    key_alias: str = ""
    key_hash: str = ""
    secret_id: str = ""
    team: str = ""
    models: tuple[str, ...] = ()
    key_name: str = ""
    requested_by: str = ""
    owner: str = ""  # who holds the key; empty in states stored before owners, where requested_by is
    record_revision: int = 0
    message: str = ""
    updated_at: float = 0.0
    version: int = 0  # counts the writes; every write is conditional on the version it read
    usage: ShownUsage | None = None  # what the spend sync last wrote to the record


class RecordMissingError(RuntimeError):
    """A write named a record that no longer exists (GAIA_RE01); a bulk write then changed nothing."""


class RecordWrite(BaseModel):
    """Field values for one record of a bulk write; without a revision it cannot conflict."""

    model_config = ConfigDict(frozen=True)

    record_id: str
    values: dict[str, str]
    revision: int | None = None


class RecordSource(Protocol):
    def get_record(self, ref: RecordRef) -> dict[str, Any] | None: ...

    def add_comment(self, ref: RecordRef, text: str, mention_user: str) -> None:
        """Post a comment mentioning the user; kintone then notifies them."""
        ...

    def write_fields(self, ref: RecordRef, revision: int, values: dict[str, str]) -> int:
        """Write field values with optimistic locking; returns the new revision.

        Raises RevisionConflictError when the record changed since `revision`.
        """
        ...


class KeyGateway(Protocol):
    def ensure_team(self, team_id: str, policy: TeamPolicy) -> None: ...

    def create_key(self, spec: KeySpec) -> None:
        """Create a key that should not exist yet; an orphan holding the alias is removed first."""
        ...

    def upsert_key(self, spec: KeySpec) -> list[KeyChange]:
        """Make the key match `spec`, creating it if missing; returns what changed."""
        ...

    def delete_keys(self, aliases: Sequence[str]) -> bool:
        """Delete the keys with these aliases; False if there was none."""
        ...

    def delete_key_with_hash(self, key_hash: str) -> bool:
        """Delete exactly the key with this SHA-256, whatever its alias now; False if it is gone."""
        ...

    def alias_of(self, api_key: str) -> str | None:
        """The alias of the key with this value; None if no such key works."""
        ...

    def rename_key(self, api_key: str, alias: str) -> None: ...

    def key_works(self, api_key: str, model: str) -> bool: ...


class KeyStore(Protocol):
    def get_or_create(self, ref: RecordRef, labels: SecretLabels) -> StoredKey: ...

    def schedule_deletion(self, ref: RecordRef, actor: str = "") -> None:
        """Void the stored value and schedule the secret's deletion; `actor` revoked it."""
        ...

    def ensure_rotation(self, ref: RecordRef) -> None:
        """Give the key's secret its rotation schedule if it has none."""
        ...


class RotationRequester(Protocol):
    def request_rotation(self, ref: RecordRef) -> None:
        """Start a rotation of the record's key secret (turning rotation on if it is off); returns
        before it finishes. A rotation already under way counts as started."""
        ...


class SecretVersions(BaseModel):
    """A key secret as its rotation sees it."""

    model_config = ConfigDict(frozen=True)

    ref: RecordRef
    scheduled_for_deletion: bool
    stages_by_version: dict[str, tuple[str, ...]]

    def version_with(self, stage: str) -> str | None:
        return next((v for v, stages in self.stages_by_version.items() if stage in stages), None)


class RotatingKeyStore(Protocol):
    """The four rotation steps' view of a key secret (AWSCURRENT, AWSPENDING version stages)."""

    def versions(self, secret_id: str) -> SecretVersions:
        """Raises ValueError for a secret that is not a key secret of this deployment."""
        ...

    def value_of(self, secret_id: str, version_id: str) -> str | None: ...

    def create_pending(self, secret_id: str, version_id: str) -> None:
        """Store a new key value as version `version_id` with stage AWSPENDING (idempotent)."""
        ...

    def promote(self, secret_id: str, version_id: str, current_version_id: str) -> None:
        """Move AWSCURRENT to `version_id` and drop its AWSPENDING stage."""
        ...


class ReconcilerCursor(BaseModel):
    model_config = ConfigDict(frozen=True)

    last_run_at: float
    last_full_sweep_at: float


class Retirement(BaseModel):
    """An old key kept working through a grace period after a rotation, deleted once due."""

    model_config = ConfigDict(frozen=True)

    ref: RecordRef
    key_alias: str
    due_at: float
    # The exact key: a later rotation may have given the retiring alias to another key meanwhile.
    # Empty only for retirements scheduled before it was recorded; those go by alias.
    key_hash: str = ""


class StateStore(Protocol):
    def get(self, ref: RecordRef) -> KeyState | None: ...

    def put(self, state: KeyState, expected: KeyState | None) -> KeyState:
        """Store `state` only if the stored state is still `expected` (None: there is none), so no
        actor overwrites what another wrote since it read; returns it as stored (next version).

        Raises StateConflictError when another write came first.
        """
        ...

    def schedule_retirement(self, retirement: Retirement) -> None:
        """One per record: a later rotation's retirement replaces an earlier one."""
        ...


class SweepStateStore(StateStore, Protocol):
    """What the reconciler reads and keeps besides the per-record states."""

    def states_with_status(self, app_id: str, status: KeyStatus) -> list[KeyState]: ...

    def get_cursor(self, app_id: str) -> ReconcilerCursor | None: ...

    def put_cursor(self, app_id: str, cursor: ReconcilerCursor) -> None: ...

    def due_retirements(self, now: float) -> list[Retirement]: ...

    def clear_retirement(self, retirement: Retirement) -> None:
        """Forget it unless a later rotation replaced it meanwhile."""
        ...


class RecordLister(Protocol):
    def query_records(self, app_id: str, query: str, fields: list[str]) -> list[dict[str, Any]]: ...


class RecordWriter(Protocol):
    def write_records(self, app_id: str, writes: Sequence[RecordWrite]) -> dict[str, int]:
        """One bulk write of up to 100 records, all or nothing; returns each record's new revision.

        Raises RevisionConflictError or RecordMissingError, and then no record was changed.
        """
        ...


class KeyUsage(BaseModel):
    """A key's spend and budget as LiteLLM reports them."""

    model_config = ConfigDict(frozen=True)

    key_alias: str
    key_hash: str
    spend: float
    max_budget: float | None = None
    budget_reset_at: str | None = None  # ISO 8601, as LiteLLM sends it


class UsageSource(Protocol):
    def key_usage(self, alias_contains: str) -> Iterator[KeyUsage]:
        """The usage of every key whose alias contains this text, read in pages (never key by key)."""
        ...


class UsageStateStore(Protocol):
    def states_with_status(self, app_id: str, status: KeyStatus) -> list[KeyState]: ...

    def mark_usage_shown(self, state: KeyState, usage: ShownUsage, revision: int) -> None:
        """Remember what the record now shows. The record's new `revision` is taken as the one the
        system last saw only when the state saw the revision just before it: then nobody else wrote
        in between, and the reconciler need not look at the record again."""
        ...


class WorkQueue(Protocol):
    def enqueue(self, items: Sequence[tuple[WorkItem, str]]) -> None:
        """Send (work item, deduplication id) pairs to the worker's FIFO queue."""
        ...


class DirectoryUser(BaseModel):
    """A cybozu.com user as the directory answers: login name and whether they may sign in."""

    model_config = ConfigDict(frozen=True)

    code: str
    valid: bool


class DirectoryOrganization(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    parent_code: str | None = None


class DirectoryError(RuntimeError):
    """The directory refused a request (credential, scope, an unknown code): a retry will not fix it."""


class Directory(Protocol):
    """The company directory (cybozu.com User API). Every list is whole or the call raises: a
    transient fault raises TransientError, a refusal DirectoryError, never a shorter answer."""

    def users(self, codes: Sequence[str]) -> list[DirectoryUser]:
        """The users with these login names; a name missing from the answer has no user."""
        ...

    def organizations_of(self, user: str) -> list[str]:
        """Codes of the organizations the user belongs to directly."""
        ...

    def groups_of(self, user: str) -> list[str]: ...

    def organization_members(self, code: str) -> list[DirectoryUser]:
        """The organization's direct members (not those of its sub-organizations)."""
        ...

    def group_members(self, code: str) -> list[DirectoryUser]: ...

    def organizations(self) -> list[DirectoryOrganization]:
        """Every organization with its parent, to follow sub-organizations."""
        ...
