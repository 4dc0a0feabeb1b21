"""A kintone record read through the app's field codes: what the requester asks for, what the system wrote."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from lambdas.domain.settings import FieldCodes


class RecordStatus(StrEnum):
    PENDING = "Pending"
    ISSUED = "Issued"
    FAILED = "Failed"
    REVOKED = "Revoked"
    # Values a requester may set to ask for an action; the system answers with one of the above.
    REVOKE_REQUESTED = "Revoke"
    ROTATE_REQUESTED = "Rotate"


class MalformedRecordError(ValueError):
    """The record lacks a field of the app schema or has a value of the wrong shape."""


class KeyRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    app_id: str
    record_id: str
    revision: int
    key_name: str
    team: str
    models: tuple[str, ...]
    status: str
    api_key: str
    message: str
    requested_by: str
    modified_by: str
    # The users named in the optional owner field; none means the creator owns the key.
    owner_choices: tuple[str, ...] = ()

    @property
    def api_key_hash(self) -> str:
        return key_hash(self.api_key) if self.api_key else ""

    @property
    def owner(self) -> str:
        """Who holds the key: the one user of the owner field, else the record's creator."""
        return self.owner_choices[0] if len(self.owner_choices) == 1 else self.requested_by


def key_hash(api_key: str) -> str:
    """LiteLLM stores a key as its SHA-256; the same digest lets state be compared without the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def _text(record: dict[str, Any], code: str, *, required: bool = True) -> str:
    field = record.get(code)
    if field is None:
        if required:
            raise MalformedRecordError(f"field {code!r} is missing from the record")
        return ""
    value = field.get("value") if isinstance(field, dict) else None
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedRecordError(f"field {code!r} is not text")
    return value


def _strings(record: dict[str, Any], code: str) -> tuple[str, ...]:
    field = record.get(code)
    if field is None:
        return ()
    value = field.get("value") if isinstance(field, dict) else None
    if value in (None, ""):
        return ()
    if isinstance(value, str):  # a SINGLE_LINE_TEXT or DROP_DOWN used for models
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MalformedRecordError(f"field {code!r} is not a list of text")
    return tuple(value)


def _user_code(record: dict[str, Any], code: str) -> str:
    field = record.get(code)
    value = field.get("value") if isinstance(field, dict) else None
    if isinstance(value, dict) and isinstance(value.get("code"), str):
        return value["code"]
    return ""


def _user_codes(record: dict[str, Any], code: str) -> tuple[str, ...]:
    field = record.get(code)
    if field is None:
        return ()  # the app has no such field: the creator owns every key
    value = field.get("value") if isinstance(field, dict) else None
    if value in (None, ""):
        return ()
    if not isinstance(value, list) or not all(
        isinstance(user, dict) and isinstance(user.get("code"), str) for user in value
    ):
        raise MalformedRecordError(f"field {code!r} is not a user selection")
    return tuple(user["code"] for user in value)


def key_request_from_record(app_id: str, record: dict[str, Any], codes: FieldCodes) -> KeyRequest:
    try:
        record_id = str(record["$id"]["value"])
        revision = int(record["$revision"]["value"])
    except (KeyError, TypeError, ValueError) as error:
        raise MalformedRecordError("the record has no valid $id and $revision") from error
    return KeyRequest(
        app_id=app_id,
        record_id=record_id,
        revision=revision,
        key_name=_text(record, codes.key_name).strip(),
        team=_text(record, codes.team).strip(),
        models=_strings(record, codes.models),
        status=_text(record, codes.status, required=False),
        api_key=_text(record, codes.api_key, required=False),
        message=_text(record, codes.message, required=False),
        requested_by=_user_code(record, codes.creator),
        modified_by=_user_code(record, codes.modifier),
        owner_choices=_user_codes(record, codes.owner),
    )


def system_field_changes(
    request: KeyRequest, codes: FieldCodes, status: RecordStatus, message: str, api_key: str | None = None
) -> dict[str, str] | None:
    """The system fields to write so the record shows these values; None when it already does.

    Writing only real changes keeps a repeated delivery from touching the record at all.
    """
    values = {codes.status: status.value, codes.message: message}
    current = {codes.status: request.status, codes.message: request.message}
    if api_key is not None:
        values[codes.api_key] = api_key
        current[codes.api_key] = request.api_key
    return None if values == current else values
