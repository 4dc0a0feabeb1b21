"""Interfaces the provisioning logic needs from the outside world, and the values that cross them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from lambdas.domain.teams import TeamPolicy


class TransientError(RuntimeError):
    """A dependency failed in a way that a later retry may fix (5xx, 429, timeout, throttling)."""


class RevisionConflictError(RuntimeError):
    """kintone refused a write because the record changed since it was read (GAIA_CO02)."""


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
    ISSUED = "ISSUED"
    FAILED = "FAILED"
    REVOKED = "REVOKED"


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
    record_revision: int = 0
    message: str = ""
    updated_at: float = 0.0


class RecordSource(Protocol):
    def get_record(self, ref: RecordRef) -> dict[str, Any] | None: ...

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

    def delete_key(self, alias: str) -> bool:
        """Delete the key with this alias; False if there was none."""
        ...


class KeyStore(Protocol):
    def get_or_create(self, ref: RecordRef, labels: SecretLabels) -> StoredKey: ...

    def schedule_deletion(self, ref: RecordRef) -> None: ...


class StateStore(Protocol):
    def get(self, ref: RecordRef) -> KeyState | None: ...

    def put(self, state: KeyState) -> None: ...
