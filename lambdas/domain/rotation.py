"""Rotate a record's key through Secrets Manager's four rotation steps.

LiteLLM's own regenerate is Enterprise-only, so a rotation is: a new key under the record's pending
alias (setSecret), a real request with it (testSecret), then the switch (finishSecret): the old key
takes the retiring alias, the new one the record's alias, AWSCURRENT moves, and the record, the state
and the requester hear of it. The old key keeps working until the reconciler deletes it once its
grace period is over. Every step is safe to repeat, as Secrets Manager may call it again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from lambdas.domain import messages
from lambdas.domain.key_request import RecordStatus, key_hash, key_request_from_record, system_field_changes
from lambdas.domain.ports import (
    KeyGateway,
    KeySpec,
    KeyState,
    KeyStatus,
    RecordRef,
    RecordSource,
    Retirement,
    RevisionConflictError,
    RotatingKeyStore,
    SecretVersions,
    StateConflictError,
    StateStore,
    TransientError,
)
from lambdas.domain.provisioning import (
    MAX_REVISION_CONFLICTS,
    every_alias,
    key_metadata,
    pending_alias,
    record_alias,
    retiring_alias,
)
from lambdas.domain.settings import FieldCodes

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"


class RotationStep(StrEnum):
    CREATE = "createSecret"
    SET = "setSecret"
    TEST = "testSecret"
    FINISH = "finishSecret"


class RotationRefusedError(RuntimeError):
    """The rotation cannot go on: its message is safe to show on the record."""


@dataclass(frozen=True)
class RotationConfig:
    field_codes: FieldCodes
    language: messages.Language
    key_alias_prefix: str
    grace_seconds: int
    # The gateway's cheapest model: the test request uses it when the key may, else the key's first.
    test_model: str | None = None


class KeyRotator:
    def __init__(
        self,
        config: RotationConfig,
        secrets: RotatingKeyStore,
        gateway: KeyGateway,
        records: RecordSource,
        state_store: StateStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._secrets = secrets
        self._gateway = gateway
        self._records = records
        self._state_store = state_store
        self._clock = clock

    def run(self, secret_id: str, token: str, step: RotationStep) -> None:
        versions = self._secrets.versions(secret_id)
        if step != RotationStep.FINISH and CURRENT in versions.stages_by_version.get(token, ()):
            return  # this rotation was switched in already; Secrets Manager repeats a step now and then
        if step == RotationStep.TEST and token not in versions.stages_by_version:
            # Turning rotation on (RotateImmediately=False) makes Secrets Manager run testSecret with a
            # token no version has: a test of the configuration, which reaching here has passed.
            return
        try:
            if step == RotationStep.CREATE:
                self._secrets.create_pending(secret_id, token)
            elif step == RotationStep.SET:
                self._set(secret_id, token, versions)
            elif step == RotationStep.TEST:
                self._test(secret_id, token, versions)
            else:
                self._finish(secret_id, token, versions)
        except RotationRefusedError as error:
            # A refused rotation ends here, and its new key (if it made one, perhaps just before a
            # revoke) must not outlive it. After the switch, nothing holds the pending alias.
            self._gateway.delete_keys([pending_alias(self._alias(versions.ref))])
            self._report_failure(versions, error)
            raise
        except Exception as error:
            # Any failure, whatever its kind, must reach the record; the step still fails after.
            self._report_failure(versions, error)
            raise

    # -- steps -----------------------------------------------------------------------------------

    def _set(self, secret_id: str, token: str, versions: SecretVersions) -> None:
        state = self._issued_state(versions.ref)
        new_key = self._pending_value(secret_id, token, versions)
        self._make_pending_key(secret_id, versions.ref, state, new_key)

    def _test(self, secret_id: str, token: str, versions: SecretVersions) -> None:
        state = self._issued_state(versions.ref)
        new_key = self._pending_value(secret_id, token, versions)
        # An edit since setSecret may have moved the team or models: the new key follows it first,
        # so the test asks for a model the key has.
        spec = self._make_pending_key(secret_id, versions.ref, state, new_key)
        test_model = self._config.test_model if self._config.test_model in spec.models else spec.models[0]
        if not self._gateway.key_works(new_key, test_model):
            self._gateway.delete_keys([spec.alias])
            raise RotationRefusedError("the new key did not work in a test request")

    def _finish(self, secret_id: str, token: str, versions: SecretVersions) -> None:
        ref = versions.ref
        state = self._issued_state(ref)
        alias = self._alias(ref)
        switched = CURRENT in versions.stages_by_version.get(token, ())  # a repeat after a crash
        if switched:
            new_key = self._secrets.value_of(secret_id, token) or ""
            # The state still names the old key unless the crash came after the state's switch.
            old_key_hash = "" if state.key_hash == key_hash(new_key) else state.key_hash
        else:
            new_key = self._pending_value(secret_id, token, versions)
            current_version = versions.version_with(CURRENT)
            if current_version is None:
                raise RotationRefusedError("the secret has no current version")
            self._refuse_if_revoked(ref, secret_id, alias)
            old_key = self._secrets.value_of(secret_id, current_version)
            old_key_hash = key_hash(old_key) if old_key else state.key_hash
            if self._gateway.alias_of(new_key) != alias:
                if old_key is not None and self._gateway.alias_of(old_key) == alias:
                    # A key still retiring from an earlier rotation goes now: one old key at a time.
                    self._gateway.delete_keys([retiring_alias(alias)])
                    self._gateway.rename_key(old_key, retiring_alias(alias))
                self._gateway.rename_key(new_key, alias)
            self._secrets.promote(secret_id, token, current_version)
            # A revoke that came during the switch found the old aliases; it cannot miss this check.
            self._refuse_if_revoked(ref, secret_id, alias)
        # The follow-ups repeat harmlessly: each writes what is already there, or nothing.
        now = self._clock()
        if old_key_hash:
            self._state_store.schedule_retirement(
                Retirement(
                    ref=ref,
                    key_alias=retiring_alias(alias),
                    key_hash=old_key_hash,
                    due_at=now + self._config.grace_seconds,
                )
            )
        grace = messages.duration(self._config.grace_seconds, self._config.language)
        text = messages.render("rotated", self._config.language, grace=grace)
        revision, wrote = self._write_back(ref, RecordStatus.ISSUED, text, api_key=new_key)
        self._switch_state(ref, state.key_hash, new_key, revision, text, now)
        if wrote:
            comment = messages.render("comment_rotated", self._config.language, grace=grace)
            # Best effort, whatever the failure: the record already shows the new key.
            with contextlib.suppress(Exception):
                self._records.add_comment(ref, comment, state.requested_by)

    def _switch_state(
        self, ref: RecordRef, old_key_hash: str, new_key: str, revision: int | None, text: str, now: float
    ) -> None:
        """Record the new key in the state, written only over the state the key was last made to
        match: an edit the worker stored meanwhile is carried to the new key, never undone."""
        new_key_hash = key_hash(new_key)
        for _ in range(MAX_REVISION_CONFLICTS):
            state = self._state_store.get(ref)
            if (
                state is None
                or state.status != KeyStatus.ISSUED
                or state.key_hash not in (old_key_hash, new_key_hash)
            ):
                # Revoked (or revoked and issued anew) since the switch began: the new key goes, even
                # if the update below brought it back after the revoke deleted it.
                self._gateway.delete_key_with_hash(new_key_hash)
                raise RotationRefusedError("the key was revoked or changed during the rotation")
            self._gateway.upsert_key(self._spec(ref, state, new_key, self._alias(ref)))
            try:
                self._state_store.put(
                    state.model_copy(
                        update={
                            "key_hash": new_key_hash,
                            "record_revision": revision or state.record_revision,
                            "message": text,
                            "updated_at": now,
                        }
                    ),
                    expected=state,
                )
            except StateConflictError:
                continue  # the worker stored a change meanwhile: carry it to the new key too
            return
        raise TransientError(f"state of record {ref.app_id}:{ref.record_id} kept changing during rotation")

    # -- helpers ---------------------------------------------------------------------------------

    def _make_pending_key(self, secret_id: str, ref: RecordRef, state: KeyState, new_key: str) -> KeySpec:
        """The new key under the pending alias, with the state's team and models."""
        spec = self._spec(ref, state, new_key, pending_alias(self._alias(ref)))
        self._gateway.upsert_key(spec)
        # A revoke schedules the secret's deletion before deleting the record's keys. Checking it
        # after making ours means one of us always sees the other: no new key outlives a revoke.
        if self._secrets.versions(secret_id).scheduled_for_deletion:
            self._gateway.delete_keys([spec.alias])
            raise RotationRefusedError("the key was revoked during the rotation")
        return spec

    @staticmethod
    def _spec(ref: RecordRef, state: KeyState, api_key: str, alias: str) -> KeySpec:
        return KeySpec(
            api_key=api_key,
            alias=alias,
            team_id=state.team,
            models=state.models,
            metadata=key_metadata(ref, state.key_name, state.requested_by, state.secret_id),
        )

    def _refuse_if_revoked(self, ref: RecordRef, secret_id: str, alias: str) -> None:
        """Stop the switch when the record was deleted or asked to be revoked: every key goes."""
        raw = self._records.get_record(ref)
        status = (
            key_request_from_record(ref.app_id, raw, self._config.field_codes).status
            if raw is not None
            else ""
        )
        revoked = raw is None or status in (RecordStatus.REVOKE_REQUESTED, RecordStatus.REVOKED)
        if revoked or self._secrets.versions(secret_id).scheduled_for_deletion:
            self._gateway.delete_keys(every_alias(alias))
            raise RotationRefusedError("the key was revoked during the rotation")

    def _issued_state(self, ref: RecordRef) -> KeyState:
        state = self._state_store.get(ref)
        if state is None or state.status != KeyStatus.ISSUED:
            raise RotationRefusedError("the record holds no issued key")
        return state

    def _pending_value(self, secret_id: str, token: str, versions: SecretVersions) -> str:
        value = None
        if PENDING in versions.stages_by_version.get(token, ()):
            value = self._secrets.value_of(secret_id, token)
        if value is None:
            raise RotationRefusedError("the new key was not created (createSecret did not run)")
        return value

    def _write_back(
        self, ref: RecordRef, status: RecordStatus, text: str, api_key: str | None = None
    ) -> tuple[int | None, bool]:
        """Write status, message (and key) to the record: (revision, whether it wrote). The revision
        is None if the record is gone."""
        codes = self._config.field_codes
        for _ in range(MAX_REVISION_CONFLICTS):
            raw = self._records.get_record(ref)
            if raw is None:
                return None, False  # deleted meanwhile: the worker or the reconciler revokes the key
            request = key_request_from_record(ref.app_id, raw, codes)
            if request.status in (RecordStatus.ISSUED, RecordStatus.ROTATE_REQUESTED):
                values = system_field_changes(request, codes, status, text, api_key)
            elif request.status in (RecordStatus.REVOKE_REQUESTED, RecordStatus.REVOKED) or not (
                api_key and request.api_key and request.api_key != api_key
            ):
                return request.revision, False  # revoked meanwhile (the worker decides), or nothing shown
            else:
                # A Failed record keeps its status and message, which say why, and shows the key that
                # works now rather than one that stops working after the grace period.
                values = {codes.api_key: api_key}
            if values is None:
                return request.revision, False
            try:
                return self._records.write_fields(ref, request.revision, values), True
            except RevisionConflictError:
                continue  # a user saved meanwhile: re-read and write on top
        raise TransientError(f"record {ref.app_id}:{ref.record_id} kept changing during write-back")

    def _report_failure(self, versions: SecretVersions, error: Exception) -> None:
        """Tell the record why, unless it moved on (revoked, deleted); the old key still works."""
        reason = str(error) if isinstance(error, RotationRefusedError) else type(error).__name__
        text = messages.render("rotation_failed", self._config.language, reason=reason)
        raw = self._records.get_record(versions.ref)
        if raw is None:
            return
        request = key_request_from_record(versions.ref.app_id, raw, self._config.field_codes)
        if request.status in (RecordStatus.ISSUED, RecordStatus.ROTATE_REQUESTED):
            self._write_back(versions.ref, RecordStatus.ISSUED, text)

    def _alias(self, ref: RecordRef) -> str:
        return record_alias(self._config.key_alias_prefix, ref)
