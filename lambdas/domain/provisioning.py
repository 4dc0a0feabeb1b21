"""Converge one kintone record and its LiteLLM key. Plain Python: every dependency is a port.

Issuance is exactly-once by construction: the secret (named after the record) is created first and
holds the key value, the key is generated with that value under a stable alias, and the record is
written back with its revision. Every step is an upsert, so a retry after a crash at any point
converges on the same single key.

Every key of a record carries one of three aliases: the current key holds the record's alias, a
rotation's new key holds the pending alias until it is switched in, and the old key holds the
retiring alias through its grace period. A revoke deletes all three, so no key outlives it.
"""

from __future__ import annotations

import contextlib
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from lambdas.domain import messages
from lambdas.domain.key_request import (
    KeyRequest,
    MalformedRecordError,
    RecordStatus,
    key_hash,
    key_request_from_record,
    system_field_changes,
)
from lambdas.domain.membership import Memberships, Standing
from lambdas.domain.ports import (
    KeyChange,
    KeyGateway,
    KeySpec,
    KeyState,
    KeyStatus,
    KeyStore,
    RecordRef,
    RecordSource,
    RevisionConflictError,
    RotationRequester,
    SecretLabels,
    StateConflictError,
    StateStore,
    TransientError,
)
from lambdas.domain.settings import FieldCodes
from lambdas.domain.teams import TeamCatalog, TeamMembers
from lambdas.domain.webhook_events import WorkItem

MAX_KEY_NAME_LENGTH = 100
MAX_REVISION_CONFLICTS = 5


def record_alias(prefix: str, ref: RecordRef) -> str:
    """The alias of a record's current key: stable, so it doubles as the idempotency key."""
    return f"{prefix}-{ref.app_id}-{ref.record_id}"


def pending_alias(alias: str) -> str:
    return f"{alias}-next"


def retiring_alias(alias: str) -> str:
    return f"{alias}-prev"


def every_alias(alias: str) -> list[str]:
    """Every key a record can hold at once (current, rotation's new, rotated-out old)."""
    return [alias, pending_alias(alias), retiring_alias(alias)]


def key_metadata(ref: RecordRef, key_name: str, requested_by: str, secret_id: str) -> dict[str, str]:
    """LiteLLM metadata of a record's key; `/key/update` replaces it, so it is always whole."""
    return {
        "key_name": key_name,
        "kintone_app": ref.app_id,
        "kintone_record": ref.record_id,
        "requested_by": requested_by,
        "secret_id": secret_id,
    }


class Outcome(StrEnum):
    ISSUED = "issued"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    REVOKED = "revoked"
    ROTATION_REQUESTED = "rotation_requested"
    RECORD_NOT_FOUND = "record_not_found"


@dataclass(frozen=True)
class ProvisioningConfig:
    team_catalog: TeamCatalog
    field_codes: FieldCodes
    language: messages.Language
    key_alias_prefix: str
    kintone_base_url: str


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    ref: RecordRef
    team: str = ""
    requested_by: str = ""
    notified: bool = True  # False when the comment telling the requester could not be posted


def _revoked_already(request: KeyRequest, state: KeyState | None) -> bool:
    return (
        request.status == RecordStatus.REVOKED
        and bool(request.message)
        and state is not None
        and state.status == KeyStatus.REVOKED
    )


class KeyProvisioner:
    def __init__(
        self,
        config: ProvisioningConfig,
        records: RecordSource,
        gateway: KeyGateway,
        key_store: KeyStore,
        state_store: StateStore,
        clock: Callable[[], float] = time.time,
        rotations: RotationRequester | None = None,
        *,
        memberships: Memberships,
    ) -> None:
        self._config = config
        self._memberships = memberships
        self._rotations = rotations
        self._records = records
        self._gateway = gateway
        self._key_store = key_store
        self._state_store = state_store
        self._clock = clock

    def converge(self, item: WorkItem) -> Result:
        ref = RecordRef(app_id=item.app_id, record_id=item.record_id)
        for _ in range(MAX_REVISION_CONFLICTS):
            try:
                return self._converge_once(ref, offboarding=item.trigger == "OFFBOARD")
            except RevisionConflictError:
                continue  # someone saved the record meanwhile: re-read and decide again
        raise TransientError(f"record {ref.app_id}:{ref.record_id} kept changing during write-back")

    def report_gave_up(self, item: WorkItem, attempts: int, reason: str) -> None:
        """After the last retry of a transient fault, clean up what a failed issuance left and say so
        on the record. A key the state records as issued is never touched: the record still shows it
        and the fault hit a later change. When kintone is what fails, this raises before changing
        anything, and the ISSUING state leads the next full sweep to the record (or, if it is gone,
        to the revoke of what was made)."""
        ref = RecordRef(app_id=item.app_id, record_id=item.record_id)
        state = self._state_store.get(ref)
        raw = self._records.get_record(ref)
        if raw is None:
            self._record_gone(ref, state)
            return
        request = key_request_from_record(ref.app_id, raw, self._config.field_codes)
        if request.status == RecordStatus.ISSUED:
            return  # the record holds a key already; the fault hit a later change
        language = self._config.language
        if request.status in (
            RecordStatus.REVOKE_REQUESTED,
            RecordStatus.REVOKED,
            RecordStatus.ROTATE_REQUESTED,
        ):
            # The request stays open (status unchanged), so the reconciler takes it up again.
            text = messages.render("request_pending", language, attempts=attempts, reason=reason)
            self._write_if_changed(request, status=RecordStatus(request.status), message=text)
            return
        text = messages.render("gave_up", language, attempts=attempts, reason=reason)
        if state is not None and state.status == KeyStatus.ISSUED:
            self._write_if_changed(request, status=RecordStatus.FAILED, message=text)
            return
        # No half-issued key may outlive the failure. Cleaned before the record is told, so a
        # failing kintone cannot stop it; a failing cleanup raises and the ISSUING state stays.
        alias = self.key_alias(ref)
        self._gateway.delete_keys([alias, pending_alias(alias)])
        self._key_store.schedule_deletion(ref)
        revision = self._write_if_changed(request, status=RecordStatus.FAILED, message=text)
        self._state_store.put(
            KeyState(
                app_id=ref.app_id,
                record_id=ref.record_id,
                status=KeyStatus.FAILED,
                key_alias=alias,
                team=request.team,
                key_name=request.key_name,
                requested_by=request.requested_by or (state.requested_by if state else ""),
                record_revision=revision,
                message=text,
                updated_at=self._clock(),
            ),
            expected=state,
        )

    # -- decisions -------------------------------------------------------------------------------

    def _converge_once(self, ref: RecordRef, *, offboarding: bool = False) -> Result:
        raw = self._records.get_record(ref)
        state = self._state_store.get(ref)
        if raw is None:
            return self._record_gone(ref, state)
        try:
            request = key_request_from_record(ref.app_id, raw, self._config.field_codes)
        except MalformedRecordError as error:
            return self._fail_malformed(ref, raw, str(error))

        if request.status in (RecordStatus.REVOKE_REQUESTED, RecordStatus.REVOKED):
            return self._revoke(ref, state, request)
        if offboarding and state is not None and state.status == KeyStatus.ISSUED:
            left = self._owner_left(state)
            if left is not None:
                return self._revoke(ref, state, request, text=left, actor="")

        problem = self._validation_problem(request)
        if problem is not None:
            return self._fail(request, problem)

        policy = self._config.team_catalog.get(request.team)
        assert policy is not None  # noqa: S101 - _validation_problem checked the team
        models = request.models or policy.models
        refusal = self._owner_refusal(request, state)
        if refusal is not None:
            return self._fail(request, refusal)
        if (
            request.status == RecordStatus.ROTATE_REQUESTED
            and self._rotations is not None
            and state is not None
            and state.status == KeyStatus.ISSUED
        ):
            if not self._key_matches(request, state, models):
                # A save that also changed the key's values: the change first, with the request
                # left open, so the rotation starts from the key the record asks for.
                self._issue(request, state, models, status=RecordStatus.ROTATE_REQUESTED)
                return self._converge_once(ref)
            return self._request_rotation(request, state)
        if request.status == RecordStatus.ISSUED and self._key_matches(request, state, models):
            return Result(Outcome.UNCHANGED, ref, request.team, request.requested_by)
        return self._issue(request, state, models)

    def _validation_problem(self, request: KeyRequest) -> str | None:
        language = self._config.language
        codes = self._config.field_codes
        if not request.key_name:
            return messages.render("missing_field", language, field=codes.key_name)
        if len(request.key_name) > MAX_KEY_NAME_LENGTH or any(
            unicodedata.category(char) == "Cc" for char in request.key_name
        ):
            return messages.render("invalid_key_name", language, max=MAX_KEY_NAME_LENGTH)
        if not request.team:
            return messages.render("missing_field", language, field=codes.team)
        policy = self._config.team_catalog.get(request.team)
        if policy is None:
            known = messages.join_names(self._config.team_catalog.names(), language)
            return messages.render("unknown_team", language, team=request.team, known=known)
        not_allowed = tuple(model for model in request.models if model not in policy.models)
        if not_allowed:
            return messages.render(
                "model_not_allowed",
                language,
                team=request.team,
                models=messages.join_names(not_allowed, language),
                allowed=messages.join_names(policy.models, language),
            )
        if len(request.owner_choices) > 1:
            return messages.render("owner_ambiguous", language, field=codes.owner)
        return None

    def _owner_refusal(self, request: KeyRequest, state: KeyState | None) -> str | None:
        """Why the owner may not hold this team's key; None when they may, or already hold it.

        Checked before anything is created: issuing, moving the key to another team, or handing it
        to another owner. Keeping an issued key is the sweeps' business (offboarding).
        """
        if (
            state is not None
            and state.status == KeyStatus.ISSUED
            and state.team == request.team
            and (state.owner or state.requested_by) == request.owner
        ):
            return None
        members = self._members(request.team)
        assert members is not None  # noqa: S101 - _validation_problem checked the team
        standing = self._memberships.standing(request.owner, members)
        if standing == Standing.MEMBER:
            return None
        language = self._config.language
        return messages.render(
            "owner_not_allowed",
            language,
            owner=request.owner or "-",
            team=request.team,
            reason=messages.standing_reason(standing, language),
            members=self._describe(members),
        )

    def _owner_left(self, state: KeyState) -> str | None:
        """Why the key's owner may no longer hold it, asked of the directory about them alone; None
        while they may. A failing directory raises, so doubt never revokes."""
        members = self._members(state.team)
        if members is None:
            return None  # the team left the catalog: the platform team's call, not an offboarding
        owner = state.owner or state.requested_by
        standing = self._memberships.standing(owner, members)
        if standing == Standing.MEMBER:
            return None
        language = self._config.language
        return messages.render(
            "revoked_owner_left",
            language,
            owner=owner or "-",
            team=state.team,
            reason=messages.standing_reason(standing, language),
            members=self._describe(members),
        )

    def _members(self, team: str) -> TeamMembers | None:
        policy = self._config.team_catalog.get(team)
        return None if policy is None else policy.members

    def _describe(self, members: TeamMembers) -> str:
        return messages.describe_members(
            [(organization.code, organization.include_subs) for organization in members.organizations],
            list(members.groups),
            self._config.language,
        )

    @staticmethod
    def _key_matches(request: KeyRequest, state: KeyState | None, models: tuple[str, ...]) -> bool:
        """The issued key is the one the record shows, with the values the record asks for."""
        return (
            state is not None
            and state.status == KeyStatus.ISSUED
            and state.team == request.team
            and state.models == models
            and state.key_name == request.key_name
            and (state.owner or state.requested_by) == request.owner
            and request.api_key_hash == state.key_hash
        )

    # -- actions ---------------------------------------------------------------------------------

    def _issue(
        self,
        request: KeyRequest,
        state: KeyState | None,
        models: tuple[str, ...],
        status: RecordStatus = RecordStatus.ISSUED,
    ) -> Result:
        """Issue a key or bring the issued one to the record's values; the record gets `status`.
        Every state write is conditional on the state read, so a rotation's switch in between makes
        it start over."""
        ref = RecordRef(app_id=request.app_id, record_id=request.record_id)
        policy = self._config.team_catalog.get(request.team)
        assert policy is not None  # noqa: S101 - validated by the caller
        alias = self.key_alias(ref)
        self._gateway.ensure_team(request.team, policy)
        requested_by = request.requested_by or (state.requested_by if state else "")
        if state is None or state.status != KeyStatus.ISSUED:
            # The intent comes before the secret and the key: whatever a crash or a give-up leaves
            # half-made, the sweeps and the give-up path find through it.
            state = self._state_store.put(
                KeyState(
                    app_id=ref.app_id,
                    record_id=ref.record_id,
                    status=KeyStatus.ISSUING,
                    key_alias=alias,
                    team=request.team,
                    models=models,
                    key_name=request.key_name,
                    requested_by=requested_by,
                    record_revision=request.revision,
                    updated_at=self._clock(),
                ),
                expected=state,
            )
        stored = self._key_store.get_or_create(
            ref,
            SecretLabels(
                requested_by=requested_by,
                team=request.team,
                key_alias=alias,
                record_url=self._record_url(ref),
            ),
        )
        spec = KeySpec(
            api_key=stored.api_key,
            alias=alias,
            team_id=request.team,
            models=models,
            metadata=key_metadata(ref, request.key_name, requested_by, stored.secret_id),
        )
        if stored.created:
            self._gateway.create_key(spec)
            changes = [KeyChange.CREATED]
        else:
            changes = self._gateway.upsert_key(spec)

        language = self._config.language
        previously_issued = state.status == KeyStatus.ISSUED
        if KeyChange.CREATED in changes or not previously_issued:
            text = messages.render(
                "issued", language, team=request.team, models=messages.join_names(models, language)
            )
            outcome = Outcome.ISSUED
        else:
            text = messages.render(
                "updated", language, changes=self._describe_changes(state, request, models)
            )
            outcome = Outcome.UPDATED
        if (
            outcome == Outcome.ISSUED
            and request.status == RecordStatus.ISSUED
            and (request.api_key == stored.api_key)
        ):
            revision = request.revision  # a retry after the write-back landed: keep its message
        else:
            revision = self._write_if_changed(request, status=status, message=text, api_key=stored.api_key)
        # Before the issued state: a retry after a failure here finds the state not yet issued.
        self._key_store.ensure_rotation(ref)
        self._state_store.put(
            KeyState(
                app_id=ref.app_id,
                record_id=ref.record_id,
                status=KeyStatus.ISSUED,
                key_alias=alias,
                key_hash=key_hash(stored.api_key),
                secret_id=stored.secret_id,
                team=request.team,
                models=models,
                key_name=request.key_name,
                requested_by=requested_by,
                owner=request.owner,
                record_revision=revision,
                message=text,
                updated_at=self._clock(),
            ),
            expected=state,
        )
        notified = True
        if outcome == Outcome.ISSUED and revision != request.revision:
            notified = self._notify(ref, "comment_issued", requested_by)
        return Result(outcome, ref, request.team, requested_by, notified)

    def _request_rotation(self, request: KeyRequest, state: KeyState) -> Result:
        """Secrets Manager runs the rotation; the record leaves `Rotate` at once so that a sweep
        does not ask again, and the rotator writes the new key when it is done."""
        ref = RecordRef(app_id=request.app_id, record_id=request.record_id)
        assert self._rotations is not None  # noqa: S101 - the caller checked
        self._rotations.request_rotation(ref)
        text = messages.render("rotation_requested", self._config.language)
        revision = self._write_if_changed(request, status=RecordStatus.ISSUED, message=text)
        # Our own write's revision is known, so a sweep does not queue the record for it. Stored only
        # while the state is the one read: a rotation that switched keys meanwhile is not undone.
        with contextlib.suppress(StateConflictError):
            self._state_store.put(
                state.model_copy(update={"record_revision": revision, "message": text}), expected=state
            )
        return Result(Outcome.ROTATION_REQUESTED, ref, state.team, state.requested_by)

    def _describe_changes(self, state: KeyState | None, request: KeyRequest, models: tuple[str, ...]) -> str:
        language = self._config.language
        parts = []
        if state is None or state.team != request.team:
            parts.append(f"team: {state.team if state else '-'} → {request.team}")
        if state is None or state.models != models:
            before = messages.join_names(state.models if state else (), language)
            parts.append(f"models: {before} → {messages.join_names(models, language)}")
        if state is not None and state.key_name != request.key_name:
            parts.append(f"key_name: {state.key_name} → {request.key_name}")
        if state is not None and (state.owner or state.requested_by) != request.owner:
            parts.append(f"owner: {state.owner or state.requested_by} → {request.owner}")
        return "; ".join(parts) or "-"

    def _fail(self, request: KeyRequest, text: str) -> Result:
        ref = RecordRef(app_id=request.app_id, record_id=request.record_id)
        self._write_if_changed(request, status=RecordStatus.FAILED, message=text)
        return Result(Outcome.FAILED, ref, request.team, request.requested_by)

    def _fail_malformed(self, ref: RecordRef, raw: dict, reason: str) -> Result:
        codes = self._config.field_codes
        text = messages.render("malformed_record", self._config.language, reason=reason)
        try:
            revision = int(raw["$revision"]["value"])
        except (KeyError, TypeError, ValueError):
            return Result(Outcome.FAILED, ref)  # not even a revision to write against
        if raw.get(codes.message, {}).get("value") != text:
            self._records.write_fields(
                ref, revision, {codes.status: RecordStatus.FAILED.value, codes.message: text}
            )
        return Result(Outcome.FAILED, ref)

    def _revoke(
        self,
        ref: RecordRef,
        state: KeyState | None,
        request: KeyRequest | None,
        *,
        text: str = "",
        actor: str | None = None,
    ) -> Result:
        """`text` says why on the record (default: plainly revoked); `actor` is who revoked it
        (default: whoever last modified the record)."""
        # The secret goes first, even without state (a crash may have come between creating it and
        # recording the state): a rotation checks it after creating its new key, so whichever of the
        # two runs second deletes that key. Then every alias of the record, so no key keeps working.
        if actor is None:
            actor = request.modified_by if request else ""
        self._key_store.schedule_deletion(ref, actor)
        alias = self.key_alias(ref)
        self._gateway.delete_keys(every_alias(alias))
        if not text and request is not None and _revoked_already(request, state):
            # It keeps the reason it shows (an offboarding's, say): a later delivery redoes the
            # revoke's steps but has nothing new to say.
            text = request.message
        text = text or messages.render("revoked", self._config.language)
        revision = 0
        notified = True
        if request is not None:
            revision = self._write_if_changed(request, status=RecordStatus.REVOKED, message=text, api_key="")
            if revision != request.revision:
                requested_by = request.requested_by or (state.requested_by if state else "")
                notified = self._notify(ref, "comment_revoked", requested_by)
        if state is None or state.status != KeyStatus.REVOKED:
            self._state_store.put(
                KeyState(
                    app_id=ref.app_id,
                    record_id=ref.record_id,
                    status=KeyStatus.REVOKED,
                    key_alias=self.key_alias(ref),
                    secret_id=state.secret_id if state else "",
                    team=state.team if state else "",
                    requested_by=state.requested_by if state else "",
                    owner=state.owner if state else "",
                    record_revision=revision,
                    message=text,
                    updated_at=self._clock(),
                ),
                expected=state,
            )
        return Result(Outcome.REVOKED, ref, state.team if state else "", notified=notified)

    def _record_gone(self, ref: RecordRef, state: KeyState | None) -> Result:
        """No record: a deleted one has its key revoked; a forged id never had one."""
        if state is None:
            # A forged id, or a record deleted after a crash left its secret and key without a state:
            # whatever exists under its names goes (for a forged id, nothing does).
            alias = self.key_alias(ref)
            if not self._gateway.delete_keys(every_alias(alias)):
                self._key_store.schedule_deletion(ref)
                return Result(Outcome.RECORD_NOT_FOUND, ref)
            return self._revoke(ref, None, None)
        if state.status == KeyStatus.REVOKED:
            return Result(Outcome.UNCHANGED, ref, state.team)
        return self._revoke(ref, state, None)

    # -- helpers ---------------------------------------------------------------------------------

    def _write_if_changed(
        self, request: KeyRequest, *, status: RecordStatus, message: str, api_key: str | None = None
    ) -> int:
        """Write the system fields unless the record already shows them; returns the revision."""
        values = system_field_changes(request, self._config.field_codes, status, message, api_key)
        if values is None:
            return request.revision
        ref = RecordRef(app_id=request.app_id, record_id=request.record_id)
        return self._records.write_fields(ref, request.revision, values)

    def _notify(self, ref: RecordRef, message_id: str, requested_by: str) -> bool:
        """Comment on the record, mentioning the requester, so kintone notifies them."""
        text = messages.render(message_id, self._config.language)
        try:
            self._records.add_comment(ref, text, requested_by)
        except Exception:  # noqa: BLE001 - best effort: the record itself already says what happened
            return False
        return True

    def key_alias(self, ref: RecordRef) -> str:
        return record_alias(self._config.key_alias_prefix, ref)

    def _record_url(self, ref: RecordRef) -> str:
        return f"{self._config.kintone_base_url}/k/{ref.app_id}/show#record={ref.record_id}"
