"""A local emulator of one kintone app: its REST API and the webhooks kintone sends.

It keeps the app in memory and answers the record, records and comment APIs under ``/k/v1/`` with
kintone's status codes, error codes and JSON shapes, so that the worker, the reconciler and the tests
can run against it instead of a real kintone domain.

Run it as a process (it prints ``KINTONE_BASE_URL=http://127.0.0.1:PORT`` once it is listening)::

    python -m local.kintone_emulator --port 0 --app-id 1 --api-token TOKEN --webhook-url URL

or in-process::

    with KintoneEmulator(app_id="1", api_tokens=["TOKEN"]) as emulator:
        httpx.get(f"{emulator.base_url}/k/v1/records.json", params={"app": "1"}, ...)

Emulator-only endpoints live under ``/_emulator/`` and need no authentication (see ``KintoneEmulator``).

Where it differs from kintone, knowingly:

* ``like`` matches a case-insensitive substring; kintone runs a word search.
* Dates in queries (``TODAY()``, ``"2026-11-27"``) are taken in UTC; kintone uses the user's time zone.
* Only the field types an app schema here can hold are supported (single-line text, multi-line text,
  number, date-time, drop-down, check box); queries on date-time fields are refused; there is no
  process management, subtable, lookup, file or updateKey.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as dt
import decimal
import http.server
import json
import logging
import operator
import os
import queue
import re
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger("kintone_emulator")

# Limits kintone documents for the APIs emulated here.
MAX_RECORDS_PER_WRITE = 100
DEFAULT_QUERY_LIMIT = 100
MAX_QUERY_LIMIT = 500
MAX_QUERY_OFFSET = 10_000
MAX_COMMENTS_PER_READ = 10
MAX_COMMENT_LENGTH = 65_535
MAX_MENTIONS = 10
CONCURRENT_REQUEST_LIMIT = 100
WEBHOOKS_PER_MINUTE = 60
WEBHOOK_WINDOW_SECONDS = 60.0

# Bounds of the emulator itself.
MAX_WAIT_SECONDS = 120.0
DEFAULT_WAIT_SECONDS = 10.0
MAX_FAULT_DELAY_SECONDS = 60.0
MAX_REQUEST_BODY_BYTES = 10 * 1024 * 1024
RECORD_HISTORY_DEPTH = 20
WEBHOOK_LOG_CAPACITY = 10_000
IDLE_CONNECTION_SECONDS = 60

DELETE_KEY_STYLES = ("deleteBy", "deletedBy")
FIELD_TYPES = frozenset(
    {"SINGLE_LINE_TEXT", "MULTI_LINE_TEXT", "NUMBER", "DATETIME", "DROP_DOWN", "CHECK_BOX"}
)
MENTION_TYPES = frozenset({"USER", "GROUP", "ORGANIZATION"})


@dataclasses.dataclass(frozen=True)
class User:
    code: str
    name: str

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "name": self.name}


# kintone attributes whatever is done with an API token to the built-in administrator account.
API_TOKEN_USER = User("Administrator", "Administrator")


# --------------------------------------------------------------------------------------------------
# The app's schema
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    code: str
    type: str
    options: tuple[str, ...] = ()
    required: bool = False
    default: str | tuple[str, ...] | None = None  # the value of a new record that does not set the field

    def empty_value(self) -> Any:
        if self.type == "CHECK_BOX":
            return []
        if self.type == "DROP_DOWN":
            return None  # an unselected drop-down reads as null, not ""
        return ""

    def initial_value(self) -> Any:
        if self.default is None:
            return self.empty_value()
        return list(self.default) if self.type == "CHECK_BOX" else self.default


@dataclasses.dataclass(frozen=True)
class AppSchema:
    name: str
    title_field: str
    fields: tuple[FieldSpec, ...]
    # The system fields' codes default to those of a Japanese-language kintone.
    record_number_code: str = "レコード番号"
    creator_code: str = "作成者"
    modifier_code: str = "更新者"
    created_time_code: str = "作成日時"
    updated_time_code: str = "更新日時"

    def __post_init__(self) -> None:
        for spec in self.fields:
            if spec.type not in FIELD_TYPES:
                raise ValueError(f"field {spec.code!r}: unsupported type {spec.type!r}")
        if self.field(self.title_field) is None:
            raise ValueError(f"title field {self.title_field!r} is not a field of the app")

    def field(self, code: str) -> FieldSpec | None:
        return next((spec for spec in self.fields if spec.code == code), None)

    def system_field_types(self) -> dict[str, str]:
        return {
            self.record_number_code: "RECORD_NUMBER",
            self.creator_code: "CREATOR",
            self.modifier_code: "MODIFIER",
            self.created_time_code: "CREATED_TIME",
            self.updated_time_code: "UPDATED_TIME",
        }

    @classmethod
    def from_file(cls, path: Path) -> AppSchema:
        """Reads ``{"name", "title_field", "fields": [{"code", "type", "options", "required", "default"}],
        "system_field_codes": {"record_number", "creator", "modifier", "created_time", "updated_time"}}``."""
        document = json.loads(path.read_text(encoding="utf-8"))
        fields = tuple(
            FieldSpec(
                code=item["code"],
                type=item["type"],
                options=tuple(item.get("options", ())),
                required=bool(item.get("required", False)),
                default=tuple(item["default"])
                if isinstance(item.get("default"), list)
                else item.get("default"),
            )
            for item in document["fields"]
        )
        system_codes = {f"{name}_code": code for name, code in document.get("system_field_codes", {}).items()}
        return cls(name=document["name"], title_field=document["title_field"], fields=fields, **system_codes)


DEFAULT_SCHEMA = AppSchema(
    name="LiteLLM API keys",
    title_field="key_name",
    fields=(
        FieldSpec("key_name", "SINGLE_LINE_TEXT"),
        FieldSpec("team", "SINGLE_LINE_TEXT"),
        FieldSpec("models", "CHECK_BOX", options=("fake-gpt", "other-model", "priced-gpt")),
        FieldSpec(
            "status", "DROP_DOWN", options=("Pending", "Issued", "Failed", "Revoked", "Revoke", "Rotate")
        ),
        FieldSpec("api_key", "SINGLE_LINE_TEXT"),
        FieldSpec("message", "MULTI_LINE_TEXT"),
        FieldSpec("spend", "NUMBER"),
        FieldSpec("max_budget", "NUMBER"),
        FieldSpec("budget_reset_at", "DATETIME"),
    ),
)


# --------------------------------------------------------------------------------------------------
# Errors, as kintone answers them
# --------------------------------------------------------------------------------------------------


class KintoneError(Exception):
    """An error answered the way kintone answers it: a status and a ``{code, id, message}`` body."""

    def __init__(
        self, status: int, code: str, message: str, errors: Mapping[str, list[str]] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def response_body(self) -> dict[str, Any]:
        # kintone gives every error response a fresh random id for its support desk.
        body: dict[str, Any] = {"code": self.code, "id": secrets.token_urlsafe(15), "message": self.message}
        if self.errors is not None:
            body["errors"] = {key: {"messages": messages} for key, messages in self.errors.items()}
        return body


def _invalid_input(errors: Mapping[str, list[str]]) -> KintoneError:
    return KintoneError(400, "CB_VA01", "Missing or invalid input.", errors)


def _invalid_param(key: str, message: str) -> KintoneError:
    return _invalid_input({key: [message]})


def _record_not_found(record_id: int) -> KintoneError:
    return KintoneError(404, "GAIA_RE01", f"The record (id: {record_id}) was not found.")


def _revision_conflict() -> KintoneError:
    return KintoneError(409, "GAIA_CO02", "The revision is not the latest; someone else updated the record.")


def _query_error() -> KintoneError:
    return _invalid_param("query", "The query is not valid.")


def _add_error(errors: dict[str, list[str]], key: str, message: str) -> None:
    errors.setdefault(key, []).append(message)


# --------------------------------------------------------------------------------------------------
# Times and values
# --------------------------------------------------------------------------------------------------


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def _minute_of(timestamp: float) -> dt.datetime:
    # kintone keeps record times to the minute: the API always answers ...:00Z.
    return _utc(timestamp).replace(second=0, microsecond=0)


def _format_minute(timestamp: float) -> str:
    return _minute_of(timestamp).strftime("%Y-%m-%dT%H:%M:%SZ")


def _format_second(timestamp: float) -> str:
    return _utc(timestamp).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_empty(value: Any) -> bool:
    return value is None or value in ("", [])


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


def _copy_value(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RevisionSnapshot:
    revision: int
    written_at: float  # time.time() of the write that made this revision
    values: Mapping[str, Any]


@dataclasses.dataclass
class StoredRecord:
    record_id: int
    revision: int
    values: dict[str, Any]  # replaced, never mutated, on each write: snapshots share it
    creator: User
    modifier: User
    created_at: float
    updated_at: float
    history: collections.deque[RevisionSnapshot]


@dataclasses.dataclass(frozen=True)
class StoredComment:
    comment_id: int
    text: str
    created_at: float
    creator: User
    mentions: tuple[tuple[str, str], ...]  # (code, type)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.comment_id),
            "text": self.text,
            "createdAt": _format_second(self.created_at),
            "creator": self.creator.as_json(),
            "mentions": [{"code": code, "type": kind} for code, kind in self.mentions],
        }


@dataclasses.dataclass(frozen=True)
class RecordCondition:
    """What a wait on a record waits for; every part that is given must hold."""

    field: str | None = None
    nonempty: bool = False
    equals: str | None = None
    revision_gt: int | None = None

    def holds(self, revision: int, values: Mapping[str, Any]) -> bool:
        if self.revision_gt is not None and revision <= self.revision_gt:
            return False
        if self.field is None:
            return True
        value = values.get(self.field)
        if self.nonempty and _is_empty(value):
            return False
        return self.equals is None or _as_text(value) == self.equals


@dataclasses.dataclass(frozen=True)
class RecordMatch:
    record: dict[str, Any]
    revision: int
    matched_revision: int
    matched_at: float  # time.time() of the write after which the condition has held


Publish = Callable[[str, str, dict[str, Any], float], None]


class RecordStore:
    """The app's records and comments, with kintone's validation, revisions and webhook triggers."""

    def __init__(
        self,
        app_id: str,
        schema: AppSchema,
        *,
        publish: Publish,
        reject_unknown_fields: bool,
        delete_key_style: str,
    ) -> None:
        self.app_id = app_id
        self.schema = schema
        self.base_url = ""  # set once the server listens; record links in webhooks start with it
        self.delete_key_style = delete_key_style
        self._publish = publish
        self._reject_unknown_fields = reject_unknown_fields
        self._cond = threading.Condition()
        self._records: dict[int, StoredRecord] = {}
        self._comments: dict[int, list[StoredComment]] = {}
        self._next_record_id = 1
        self._closed = False

    # ---- writes ---------------------------------------------------------------------------------

    def add(self, record_input: Any, user: User, *, notify: bool) -> tuple[int, int]:
        errors: dict[str, list[str]] = {}
        values = self._new_values(record_input, "record", errors)
        if errors:
            raise _invalid_input(errors)
        with self._cond:
            record = self._insert(values, user, time.time())
            if notify:
                self._publish_record("ADD_RECORD", record)
            self._cond.notify_all()
            return record.record_id, record.revision

    def add_many(self, record_inputs: Sequence[Any], user: User) -> list[tuple[int, int]]:
        errors: dict[str, list[str]] = {}
        all_values = [self._new_values(item, f"records[{i}]", errors) for i, item in enumerate(record_inputs)]
        if errors:
            raise _invalid_input(errors)
        with self._cond:
            now = time.time()
            added = [self._insert(values, user, now) for values in all_values]
            self._cond.notify_all()
            return [(record.record_id, record.revision) for record in added]

    def update(
        self, record_id: int, expected_revision: int | None, record_input: Any, user: User, *, notify: bool
    ) -> int:
        with self._cond:
            record = self._existing(record_id)
            _check_revision(record, expected_revision)
            if record_input is None:  # kintone leaves a record alone when the request has no `record`
                return record.revision
            errors: dict[str, list[str]] = {}
            values = self._updated_values(record, record_input, "record", errors)
            if errors:
                raise _invalid_input(errors)
            self._apply(record, values, user, time.time())
            if notify:
                self._publish_record("UPDATE_RECORD", record)
            self._cond.notify_all()
            return record.revision

    def update_many(
        self, entries: Sequence[tuple[int, int | None, Any]], user: User
    ) -> list[tuple[int, int]]:
        """All or nothing, like kintone: one conflict or invalid value and no record changes."""
        with self._cond:
            records = [self._existing(record_id) for record_id, _, _ in entries]
            for record, (_, expected_revision, _) in zip(records, entries, strict=True):
                _check_revision(record, expected_revision)
            errors: dict[str, list[str]] = {}
            new_values = [
                None
                if record_input is None
                else self._updated_values(record, record_input, f"records[{i}]", errors)
                for i, (record, (_, _, record_input)) in enumerate(zip(records, entries, strict=True))
            ]
            if errors:
                raise _invalid_input(errors)
            now = time.time()
            for record, values in zip(records, new_values, strict=True):
                if values is not None:
                    self._apply(record, values, user, now)
            self._cond.notify_all()
            return [(record.record_id, record.revision) for record in records]

    def delete_many(
        self, record_ids: Sequence[int], revisions: Sequence[int | None], user: User, *, notify: bool
    ) -> None:
        with self._cond:
            for record_id, expected_revision in zip(record_ids, revisions, strict=True):
                _check_revision(self._existing(record_id), expected_revision)
            for record_id in record_ids:
                if self._records.pop(record_id, None) is None:
                    continue  # the same id twice in one request
                self._comments.pop(record_id, None)
                if notify:
                    self._publish_delete(record_id, user, time.time())
            self._cond.notify_all()

    def add_comment(self, record_id: int, text: str, mentions: Sequence[tuple[str, str]], user: User) -> int:
        with self._cond:
            self._existing(record_id)
            comments = self._comments.setdefault(record_id, [])
            comment = StoredComment(len(comments) + 1, text, time.time(), user, tuple(mentions))
            comments.append(comment)
            payload = {
                "type": "ADD_RECORD_COMMENT",
                "app": self._app_json(),
                "comment": comment.as_json(),
                "recordId": str(record_id),
                "url": self._record_url(record_id),
            }
            self._publish("ADD_RECORD_COMMENT", str(record_id), payload, comment.created_at)
            return comment.comment_id

    def set_times(self, record_id: int, *, created_at: float | None, updated_at: float | None) -> None:
        with self._cond:
            record = self._existing(record_id)
            record.created_at = record.created_at if created_at is None else created_at
            record.updated_at = record.updated_at if updated_at is None else updated_at

    def reset(self) -> None:
        with self._cond:
            self._records.clear()
            self._comments.clear()
            self._next_record_id = 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # ---- reads ----------------------------------------------------------------------------------

    def get(self, record_id: int) -> dict[str, Any]:
        with self._cond:
            return self._api_record(self._existing(record_id))

    def peek(self, record_id: int) -> dict[str, Any] | None:
        with self._cond:
            record = self._records.get(record_id)
            return None if record is None else self._api_record(record)

    def count(self) -> int:
        with self._cond:
            return len(self._records)

    def all_records(self) -> list[dict[str, Any]]:
        with self._cond:
            return [self._api_record(self._records[record_id]) for record_id in sorted(self._records)]

    def comments_of(self, record_id: int) -> list[dict[str, Any]]:
        with self._cond:
            return [comment.as_json() for comment in self._comments.get(record_id, [])]

    def list_comments(self, record_id: int, order: str, offset: int, limit: int) -> dict[str, Any]:
        with self._cond:
            self._existing(record_id)
            comments = self._comments.get(record_id, [])
            ordered = comments if order == "asc" else list(reversed(comments))
            page = ordered[offset : offset + limit]
            before, after = offset > 0, offset + limit < len(ordered)
            return {
                "comments": [comment.as_json() for comment in page],
                "older": after if order == "desc" else before,
                "newer": before if order == "desc" else after,
            }

    def search(
        self, query_text: str, fields: Sequence[str] | None, *, with_total: bool, user: User
    ) -> dict[str, Any]:
        query = _QueryParser(query_text).parse()
        limit = DEFAULT_QUERY_LIMIT if query.limit is None else query.limit
        offset = query.offset or 0
        if limit > MAX_QUERY_LIMIT:
            raise KintoneError(400, "GAIA_QU01", f"limit must be {MAX_QUERY_LIMIT} or less.")
        if offset > MAX_QUERY_OFFSET:
            raise KintoneError(400, "GAIA_QU02", f"offset must be {MAX_QUERY_OFFSET:,} or less.")
        compiled = _QueryCompiler(self.schema, user, time.time()).compile(query)
        with self._cond:
            # With no `order by`, kintone answers in descending record id order.
            candidates = sorted(self._records.values(), key=lambda record: record.record_id, reverse=True)
            matched = [record for record in candidates if compiled.predicate(record)]
            compiled.sort(matched)
            page = matched[offset : offset + limit]
            return {
                "records": [self._api_record(record, fields) for record in page],
                "totalCount": str(len(matched)) if with_total else None,
            }

    def wait_for(self, record_id: int, condition: RecordCondition, timeout: float) -> RecordMatch | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                record = self._records.get(record_id)
                if record is not None and condition.holds(record.revision, record.values):
                    return self._match(record, condition)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return None
                self._cond.wait(remaining)

    # ---- internals (the caller holds the lock where it matters) ----------------------------------

    def _existing(self, record_id: int) -> StoredRecord:
        record = self._records.get(record_id)
        if record is None:
            raise _record_not_found(record_id)
        return record

    def _insert(self, values: dict[str, Any], user: User, now: float) -> StoredRecord:
        record = StoredRecord(
            record_id=self._next_record_id,
            revision=1,
            values=values,
            creator=user,
            modifier=user,
            created_at=now,
            updated_at=now,
            history=collections.deque([RevisionSnapshot(1, now, values)], maxlen=RECORD_HISTORY_DEPTH),
        )
        self._records[record.record_id] = record
        self._next_record_id += 1
        return record

    def _apply(self, record: StoredRecord, values: dict[str, Any], user: User, now: float) -> None:
        # Every save is a new revision, even one that changes no value.
        record.revision += 1
        record.values = values
        record.modifier = user
        record.updated_at = now
        record.history.append(RevisionSnapshot(record.revision, now, values))

    def _match(self, record: StoredRecord, condition: RecordCondition) -> RecordMatch:
        matched = record.history[-1]
        for snapshot in reversed(record.history):
            if not condition.holds(snapshot.revision, snapshot.values):
                break
            matched = snapshot
        return RecordMatch(self._api_record(record), record.revision, matched.revision, matched.written_at)

    def _new_values(self, record_input: Any, prefix: str, errors: dict[str, list[str]]) -> dict[str, Any]:
        values = {spec.code: spec.initial_value() for spec in self.schema.fields}
        values.update(self._coerce(record_input, prefix, errors))
        self._check_required(values, prefix, errors)
        return values

    def _updated_values(
        self, record: StoredRecord, record_input: Any, prefix: str, errors: dict[str, list[str]]
    ) -> dict[str, Any]:
        values = dict(record.values)
        values.update(self._coerce(record_input, prefix, errors))
        self._check_required(values, prefix, errors)
        return values

    def _check_required(self, values: Mapping[str, Any], prefix: str, errors: dict[str, list[str]]) -> None:
        for spec in self.schema.fields:
            if spec.required and _is_empty(values.get(spec.code)):
                suffix = "values" if spec.type == "CHECK_BOX" else "value"
                _add_error(errors, f"{prefix}.{spec.code}.{suffix}", "Required.")

    def _coerce(self, record_input: Any, prefix: str, errors: dict[str, list[str]]) -> dict[str, Any]:
        if not isinstance(record_input, dict):
            _add_error(errors, prefix, "Must be an object of field codes.")
            return {}
        system_types = self.schema.system_field_types()
        coerced: dict[str, Any] = {}
        for code, cell in record_input.items():
            if system_types.get(code) == "RECORD_NUMBER":
                raise KintoneError(400, "GAIA_UN10", "A value cannot be set for the record number field.")
            if code in system_types:
                # Setting the creator, modifier or their times takes app administration rights,
                # which neither this app's API tokens nor its users have.
                raise KintoneError(403, "CB_NO02", f"No permission to set the field {code}.")
            spec = self.schema.field(code)
            if spec is None:
                # kintone ignores field codes the app does not have.
                if self._reject_unknown_fields:
                    _add_error(errors, f"{prefix}.{code}", "The app has no field with this code.")
                continue
            if not isinstance(cell, dict):
                _add_error(errors, f"{prefix}.{code}", "Must be an object with a value.")
                continue
            coerced[code] = _coerce_value(spec, cell.get("value"), prefix, errors)
        return coerced

    # ---- JSON shapes ------------------------------------------------------------------------------

    def _app_json(self) -> dict[str, str]:
        return {"id": self.app_id, "name": self.schema.name}

    def _record_url(self, record_id: int) -> str:
        return f"{self.base_url}/k/{self.app_id}/show#record={record_id}"

    def _api_record(self, record: StoredRecord, fields: Sequence[str] | None = None) -> dict[str, Any]:
        schema = self.schema
        result: dict[str, Any] = {
            spec.code: {"type": spec.type, "value": _copy_value(record.values.get(spec.code))}
            for spec in schema.fields
        }
        result[schema.record_number_code] = {"type": "RECORD_NUMBER", "value": str(record.record_id)}
        result[schema.creator_code] = {"type": "CREATOR", "value": record.creator.as_json()}
        result[schema.modifier_code] = {"type": "MODIFIER", "value": record.modifier.as_json()}
        result[schema.created_time_code] = {
            "type": "CREATED_TIME",
            "value": _format_minute(record.created_at),
        }
        result[schema.updated_time_code] = {
            "type": "UPDATED_TIME",
            "value": _format_minute(record.updated_at),
        }
        result["$id"] = {"type": "__ID__", "value": str(record.record_id)}
        result["$revision"] = {"type": "__REVISION__", "value": str(record.revision)}
        if fields is None:
            return result
        return {code: result[code] for code in fields if code in result}

    def _publish_record(self, event_type: str, record: StoredRecord) -> None:
        payload = {
            "type": event_type,
            "app": self._app_json(),
            "record": self._api_record(record),
            "recordTitle": _as_text(record.values.get(self.schema.title_field)),
            "url": self._record_url(record.record_id),
        }
        self._publish(event_type, str(record.record_id), payload, record.updated_at)

    def _publish_delete(self, record_id: int, user: User, now: float) -> None:
        # kintone's documentation spells these keys both ways; the emulator sends the configured one.
        by_key, at_key = (
            ("deleteBy", "deleteAt") if self.delete_key_style == "deleteBy" else ("deletedBy", "deletedAt")
        )
        payload = {
            "type": "DELETE_RECORD",
            "app": self._app_json(),
            "recordId": str(record_id),
            by_key: user.as_json(),
            at_key: _format_second(now),
        }
        self._publish("DELETE_RECORD", str(record_id), payload, now)


def _check_revision(record: StoredRecord, expected_revision: int | None) -> None:
    if expected_revision is not None and expected_revision != record.revision:
        raise _revision_conflict()


def _coerce_value(spec: FieldSpec, value: Any, prefix: str, errors: dict[str, list[str]]) -> Any:
    key = f"{prefix}.{spec.code}.value"
    if spec.type == "CHECK_BOX":
        return _coerce_check_box(spec, value, prefix, errors)
    if value is None or value == "":
        return spec.empty_value()
    if spec.type == "NUMBER":
        return _coerce_number(value, f"{prefix}[{spec.code}].value", errors)
    if spec.type == "DATETIME":
        return _coerce_datetime(value, key, errors)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        _add_error(errors, key, "Must be a string.")
        return spec.empty_value()
    text = str(value)
    if spec.type == "DROP_DOWN" and text not in spec.options:
        _add_error(errors, key, f'"{text}" is not one of the options.')
    return text


def _coerce_check_box(spec: FieldSpec, value: Any, prefix: str, errors: dict[str, list[str]]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        _add_error(errors, f"{prefix}.{spec.code}.value", "Must be an array of option names.")
        return []
    for index, item in enumerate(value):
        if not isinstance(item, str) or item not in spec.options:
            _add_error(
                errors, f"{prefix}.{spec.code}.values[{index}].value", f'"{item}" is not one of the options.'
            )
    return [item for item in value if isinstance(item, str)]


def _coerce_datetime(value: Any, key: str, errors: dict[str, list[str]]) -> str:
    """kintone takes ISO 8601 with a zone and keeps the minute, in UTC."""
    moment = None
    if isinstance(value, str) and _DATETIME_VALUE.fullmatch(value):
        with contextlib.suppress(ValueError):  # a well-shaped but impossible date, e.g. 02-30
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment is None:
        _add_error(errors, key, "Invalid date-time format.")
        return ""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:00Z")


_DATETIME_VALUE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})")


def _coerce_number(value: Any, key: str, errors: dict[str, list[str]]) -> str:
    try:
        number = decimal.Decimal(str(value).strip())
    except decimal.InvalidOperation:
        number = None
    if isinstance(value, bool) or number is None or not number.is_finite():
        _add_error(errors, key, "Only numbers are allowed.")
        return ""
    return str(number.normalize()) if number != number.to_integral_value() else str(int(number))


# --------------------------------------------------------------------------------------------------
# The query language
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Literal:
    kind: str  # "string", "number" or "function"
    text: str  # the value, or the function's upper-case name
    args: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Condition:
    field: str
    operator: str  # "=", "!=", ">", "<", ">=", "<=", "in", "not in", "like", "not like", "is empty", ...
    operands: tuple[_Literal, ...]


@dataclasses.dataclass(frozen=True)
class _Junction:
    operator: str  # "and" or "or"
    left: _Condition | _Junction
    right: _Condition | _Junction


@dataclasses.dataclass(frozen=True)
class ParsedQuery:
    where: _Condition | _Junction | None
    order_by: tuple[tuple[str, bool], ...]  # (field code, descending)
    limit: int | None
    offset: int | None


_TOKEN_PATTERN = re.compile(
    r'(?P<space>[ \t\r\n\u3000]+)|(?P<string>"(?:[^"\\\x00-\x1f]|\\[^\x00-\x1f])*")'
    r"|(?P<operator>!=|>=|<=|=|<|>)|(?P<open>\()|(?P<close>\))|(?P<comma>,)"
    r'|(?P<word>[^ \t\r\n\u3000()",=!<>]+)'
)
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r"}
_NUMBER_PATTERN = re.compile(r"-?\d+(\.\d+)?")
_CLAUSE_KEYWORDS = frozenset({"order", "limit", "offset"})


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN_PATTERN.match(text, position)
        if match is None:  # an unterminated string, a raw control character in one, or a stray "!"
            raise _query_error()
        kind = match.lastgroup or ""
        if kind == "string":
            body = match.group()[1:-1]
            tokens.append(("string", re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[1]), body)))
        elif kind != "space":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


class _QueryParser:
    """``condition [and|or condition]... [order by field asc|desc, ...] [limit N] [offset N]``."""

    def __init__(self, text: str) -> None:
        self._tokens = _tokenize(text)
        self._position = 0

    def parse(self) -> ParsedQuery:
        where = None
        if self._peek() is not None and self._keyword() not in _CLAUSE_KEYWORDS:
            where = self._parse_or()
        order_by: tuple[tuple[str, bool], ...] = ()
        limit = offset = None
        while self._peek() is not None:
            keyword = self._keyword()
            self._position += 1
            if keyword == "order" and not order_by:
                self._expect_keyword("by")
                order_by = self._parse_order_items()
            elif keyword == "limit" and limit is None:
                limit = self._parse_count()
            elif keyword == "offset" and offset is None:
                offset = self._parse_count()
            else:
                raise _query_error()
        return ParsedQuery(where, order_by, limit, offset)

    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._position] if self._position < len(self._tokens) else None

    def _next(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise _query_error()
        self._position += 1
        return token

    def _keyword(self) -> str | None:
        token = self._peek()
        return token[1].lower() if token is not None and token[0] == "word" else None

    def _expect_keyword(self, keyword: str) -> None:
        if self._keyword() != keyword:
            raise _query_error()
        self._position += 1

    def _parse_or(self) -> _Condition | _Junction:
        node = self._parse_and()
        while self._keyword() == "or":
            self._position += 1
            node = _Junction("or", node, self._parse_and())
        return node

    def _parse_and(self) -> _Condition | _Junction:
        node = self._parse_group()
        while self._keyword() == "and":
            self._position += 1
            node = _Junction("and", node, self._parse_group())
        return node

    def _parse_group(self) -> _Condition | _Junction:
        if self._peek() == ("open", "("):
            self._position += 1
            node = self._parse_or()
            if self._next() != ("close", ")"):
                raise _query_error()
            return node
        return self._parse_condition()

    def _parse_condition(self) -> _Condition:
        kind, field = self._next()
        if kind != "word":
            raise _query_error()
        token = self._next()
        keyword = token[1].lower() if token[0] == "word" else None
        if token[0] == "operator":
            return _Condition(field, token[1], (self._parse_value(),))
        if keyword == "not":
            keyword = f"not {self._next()[1].lower()}"
        if keyword in ("in", "not in"):
            return _Condition(field, keyword, self._parse_value_list())
        if keyword in ("like", "not like"):
            return _Condition(field, keyword, (self._parse_value(),))
        if keyword == "is":
            negated = self._keyword() == "not"
            self._position += negated
            self._expect_keyword("empty")
            return _Condition(field, "is not empty" if negated else "is empty", ())
        raise _query_error()

    def _parse_value_list(self) -> tuple[_Literal, ...]:
        if self._next() != ("open", "("):
            raise _query_error()
        values = [self._parse_value()]
        while self._peek() == ("comma", ","):
            self._position += 1
            values.append(self._parse_value())
        if self._next() != ("close", ")"):
            raise _query_error()
        return tuple(values)

    def _parse_value(self) -> _Literal:
        kind, text = self._next()
        if kind == "string":
            return _Literal("string", text)
        if kind != "word":
            raise _query_error()
        if _NUMBER_PATTERN.fullmatch(text):
            return _Literal("number", text)
        if self._peek() != ("open", "("):
            raise _query_error()
        self._position += 1
        args: list[str] = []
        while self._peek() != ("close", ")"):
            if args and self._next() != ("comma", ","):
                raise _query_error()
            arg_kind, arg = self._next()
            if arg_kind not in ("word", "string"):
                raise _query_error()
            args.append(arg)
        self._position += 1
        return _Literal("function", text.upper(), tuple(args))

    def _parse_order_items(self) -> tuple[tuple[str, bool], ...]:
        items = []
        while True:
            kind, field = self._next()
            if kind != "word":
                raise _query_error()
            direction = self._keyword()
            if direction in ("asc", "desc"):
                self._position += 1
            items.append((field, direction == "desc"))
            if self._peek() != ("comma", ","):
                return tuple(items)
            self._position += 1

    def _parse_count(self) -> int:
        kind, text = self._next()
        if kind != "word" or not text.isdigit():
            raise _query_error()
        return int(text)


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}
_ORDERED = frozenset(_COMPARISONS)
_MEMBERSHIP = frozenset({"in", "not in"})
# Which operators kintone accepts on which field type; anything else is GAIA_IQ03.
_ALLOWED_OPERATORS: dict[str, frozenset[str]] = {
    "__ID__": _ORDERED | _MEMBERSHIP,
    "RECORD_NUMBER": _ORDERED | _MEMBERSHIP,
    "NUMBER": _ORDERED | _MEMBERSHIP,
    "CREATED_TIME": _ORDERED,
    "UPDATED_TIME": _ORDERED,
    "CREATOR": _MEMBERSHIP,
    "MODIFIER": _MEMBERSHIP,
    "SINGLE_LINE_TEXT": frozenset({"=", "!=", "like", "not like"}) | _MEMBERSHIP,
    "MULTI_LINE_TEXT": frozenset({"like", "not like", "is empty", "is not empty"}),
    "DROP_DOWN": _MEMBERSHIP,
    "CHECK_BOX": _MEMBERSHIP,
    "DATETIME": frozenset(),  # not emulated: queries on it are refused
}
_DATE_PATTERN = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})(?:T(\d{2}):(\d{2})(?::(\d{2}))?(Z|[+-]\d{2}:?\d{2})?)?"
)
_DAY = dt.timedelta(days=1)

Predicate = Callable[[StoredRecord], bool]


@dataclasses.dataclass(frozen=True)
class _CompiledQuery:
    predicate: Predicate
    sort_keys: tuple[tuple[Callable[[StoredRecord], Any], bool], ...]

    def sort(self, records: list[StoredRecord]) -> None:
        # Stable sorts from the last key to the first leave ties in record id order.
        for key, descending in reversed(self.sort_keys):
            records.sort(key=key, reverse=descending)


class _QueryCompiler:
    """Checks a parsed query against the app's fields and turns it into Python predicates."""

    def __init__(self, schema: AppSchema, user: User, now: float) -> None:
        self._schema = schema
        self._user = user
        self._now = _minute_of(now)
        self._system_types = schema.system_field_types()

    def compile(self, query: ParsedQuery) -> _CompiledQuery:
        predicate = self._node(query.where) if query.where is not None else (lambda _record: True)
        sort_keys = tuple((self._sort_key(code), descending) for code, descending in query.order_by)
        return _CompiledQuery(predicate, sort_keys)

    def _node(self, node: _Condition | _Junction) -> Predicate:
        if isinstance(node, _Condition):
            return self._condition(node)
        left, right = self._node(node.left), self._node(node.right)
        if node.operator == "and":
            return lambda record: left(record) and right(record)
        return lambda record: left(record) or right(record)

    def _field_type(self, code: str) -> str:
        if code == "$id":
            return "__ID__"
        if code in self._system_types:
            return self._system_types[code]
        spec = self._schema.field(code)
        if spec is None:
            raise KintoneError(400, "GAIA_IQ11", f"The field ({code}) was not found.")
        return spec.type

    def _getter(self, code: str, field_type: str) -> Callable[[StoredRecord], Any]:
        getters: dict[str, Callable[[StoredRecord], Any]] = {
            "__ID__": lambda record: decimal.Decimal(record.record_id),
            "RECORD_NUMBER": lambda record: decimal.Decimal(record.record_id),
            "CREATED_TIME": lambda record: _minute_of(record.created_at),
            "UPDATED_TIME": lambda record: _minute_of(record.updated_at),
            "CREATOR": lambda record: record.creator.code,
            "MODIFIER": lambda record: record.modifier.code,
            "NUMBER": lambda record: _decimal_or_none(record.values.get(code)),
        }
        return getters.get(field_type, lambda record: record.values.get(code))

    def _condition(self, condition: _Condition) -> Predicate:
        field_type = self._field_type(condition.field)
        if condition.operator not in _ALLOWED_OPERATORS[field_type]:
            raise KintoneError(
                400,
                "GAIA_IQ03",
                f"The operator {condition.operator} cannot be used on the field {condition.field}.",
            )
        getter = self._getter(condition.field, field_type)
        if field_type in ("__ID__", "RECORD_NUMBER", "NUMBER"):
            return self._numeric(condition, getter)
        if field_type in ("CREATED_TIME", "UPDATED_TIME"):
            return self._datetime(condition, getter)
        if field_type == "CHECK_BOX":
            wanted = {self._text(literal) for literal in condition.operands}
            expected = condition.operator == "in"

            def selected(record: StoredRecord) -> bool:
                values = getter(record)
                return bool(wanted.intersection(values)) or (not values and "" in wanted)  # in ("") = none

            return lambda record: selected(record) == expected
        return self._textual(condition, lambda record: _as_text(getter(record)))

    def _numeric(self, condition: _Condition, getter: Callable[[StoredRecord], Any]) -> Predicate:
        if condition.operator in _MEMBERSHIP:
            wanted = {self._number(literal) for literal in condition.operands}
            expected = condition.operator == "in"
            return lambda record: (getter(record) in wanted) == expected
        target = self._number(condition.operands[0])
        compare = _COMPARISONS[condition.operator]
        return lambda record: (value := getter(record)) is not None and compare(value, target)

    def _datetime(self, condition: _Condition, getter: Callable[[StoredRecord], Any]) -> Predicate:
        start, end = self._datetime_range(condition.operands[0])
        tests: dict[str, Callable[[dt.datetime], bool]] = {
            "=": lambda value: start <= value <= end,
            "!=": lambda value: not start <= value <= end,
            ">": lambda value: value > end,
            ">=": lambda value: value >= start,
            "<": lambda value: value < start,
            "<=": lambda value: value <= end,
        }
        test = tests[condition.operator]
        return lambda record: test(getter(record))

    def _textual(self, condition: _Condition, text_of: Callable[[StoredRecord], str]) -> Predicate:
        operands = [self._user_or_text(literal) for literal in condition.operands]
        match condition.operator:
            case "=" | "!=":
                expected = condition.operator == "="
                return lambda record: (text_of(record) == operands[0]) == expected
            case "in" | "not in":
                wanted, expected = set(operands), condition.operator == "in"
                return lambda record: (text_of(record) in wanted) == expected
            case "like" | "not like":
                needle, expected = operands[0].casefold(), condition.operator == "like"
                return lambda record: (needle in text_of(record).casefold()) == expected
            case _:
                expected = condition.operator == "is empty"
                return lambda record: (text_of(record).strip() == "") == expected

    def _sort_key(self, code: str) -> Callable[[StoredRecord], Any]:
        field_type = self._field_type(code)
        if field_type == "CHECK_BOX":
            raise _query_error()
        getter = self._getter(code, field_type)
        return lambda record: _sort_value(getter(record))

    def _text(self, literal: _Literal) -> str:
        if literal.kind == "function":
            raise _query_error()
        return literal.text

    def _user_or_text(self, literal: _Literal) -> str:
        if literal.kind == "function" and literal.text == "LOGINUSER" and not literal.args:
            return self._user.code
        return self._text(literal)

    def _number(self, literal: _Literal) -> decimal.Decimal:
        number = _decimal_or_none(self._text(literal))
        if number is None:
            raise _query_error()
        return number

    def _datetime_range(self, literal: _Literal) -> tuple[dt.datetime, dt.datetime]:
        if literal.kind == "function":
            return self._function_range(literal)
        match = _DATE_PATTERN.fullmatch(literal.text)
        if match is None:
            raise _query_error()
        year, month, day, hour, minute, second, zone = match.groups()
        try:
            if hour is None:
                day_start = dt.datetime(int(year), int(month), int(day), tzinfo=dt.UTC)
                return day_start, day_start + _DAY - dt.timedelta(microseconds=1)
            offset = dt.timedelta(0)
            if zone and zone != "Z":
                sign = -1 if zone[0] == "-" else 1
                digits = zone[1:].replace(":", "")
                offset = sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            moment = dt.datetime(
                int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=dt.UTC
            )
        except ValueError as error:  # a date that does not exist, such as 2026-02-30
            raise _query_error() from error
        return moment - offset, moment - offset

    def _function_range(self, literal: _Literal) -> tuple[dt.datetime, dt.datetime]:
        today = self._now.replace(hour=0, minute=0)
        days = {"TODAY": 0, "YESTERDAY": -1, "TOMORROW": 1}
        if literal.text == "NOW" and not literal.args:
            return self._now, self._now
        if literal.text in days and not literal.args:
            day = today + days[literal.text] * _DAY
        elif literal.text == "FROM_TODAY" and len(literal.args) == 2:
            day = _shift_day(today, literal.args[0], literal.args[1])
        else:
            raise _query_error()
        return day, day + _DAY - dt.timedelta(microseconds=1)


def _shift_day(day: dt.datetime, amount_text: str, unit: str) -> dt.datetime:
    if not re.fullmatch(r"-?\d+", amount_text):
        raise _query_error()
    amount = int(amount_text)
    match unit.upper():
        case "DAYS":
            return day + amount * _DAY
        case "WEEKS":
            return day + 7 * amount * _DAY
        case "MONTHS" | "YEARS":
            months = amount * (12 if unit.upper() == "YEARS" else 1)
            year, month_index = divmod(day.month - 1 + months, 12)
            month = month_index + 1
            last_day = (dt.date(day.year + year + (month == 12), month % 12 + 1, 1) - dt.date.resolution).day
            return day.replace(year=day.year + year, month=month, day=min(day.day, last_day))
        case _:
            raise _query_error()


def _decimal_or_none(value: Any) -> decimal.Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        return None
    return number if number.is_finite() else None


def _sort_value(value: Any) -> tuple[int, Any]:
    # Empty values sort before every other value.
    return (0, 0) if value is None or value == "" else (1, value)


# --------------------------------------------------------------------------------------------------
# Webhooks
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class WebhookNotification:
    notification_id: str
    event_type: str
    record_id: str
    url: str
    payload: dict[str, Any]
    saved_at: float  # time.time() of the save that triggered it
    generation: int
    status: str = "pending"  # then "sent", "failed" or "dropped"
    http_status: int | None = None
    error: str | None = None
    sent_at: float | None = None  # time.time() when the POST began

    def as_json(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "type": self.event_type,
            "record_id": self.record_id,
            "status": self.status,
            "http_status": self.http_status,
            "error": self.error,
            "saved_at": self.saved_at,
            "sent_at": self.sent_at,
            "payload": self.payload,
        }


class WebhookDispatcher:
    """Posts notifications in order from one background thread, as kintone does: no signature, no
    custom headers, no retries, and at most ``rate_per_minute`` in any rolling minute; the rest are
    dropped without a word (the log records them as dropped)."""

    def __init__(self, *, url: str | None, rate_per_minute: int, timeout_seconds: float) -> None:
        self._cond = threading.Condition()
        self._url = _checked_webhook_url(url)
        self._rate_per_minute = _checked_rate(rate_per_minute)
        self._enabled = True
        self._timeout_seconds = timeout_seconds
        self._accepted_at: collections.deque[float] = collections.deque()
        self._log: collections.deque[WebhookNotification] = collections.deque(maxlen=WEBHOOK_LOG_CAPACITY)
        self._finished = 0
        self._generation = 0  # bumped by reset() so that queued notifications of before are not sent
        self._closed = False
        self._pending: queue.SimpleQueue[WebhookNotification | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._deliver_all, name="kintone-emulator-webhooks", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._pending.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def settings(self) -> dict[str, Any]:
        with self._cond:
            return {
                "webhook_url": self._url,
                "webhook_rate_per_minute": self._rate_per_minute,
                "webhook_enabled": self._enabled,
            }

    def configure(self, settings: Mapping[str, Any]) -> None:
        with self._cond:
            if "webhook_url" in settings:
                self._url = _checked_webhook_url(settings["webhook_url"])
            if "webhook_rate_per_minute" in settings:
                self._rate_per_minute = _checked_rate(settings["webhook_rate_per_minute"])
            if "webhook_enabled" in settings:
                if not isinstance(settings["webhook_enabled"], bool):
                    raise ValueError("webhook_enabled must be true or false")
                self._enabled = settings["webhook_enabled"]

    def publish(self, event_type: str, record_id: str, payload: dict[str, Any], saved_at: float) -> None:
        with self._cond:
            if not self._enabled or self._url is None:
                return
            notification_id = str(uuid.uuid4())
            notification = WebhookNotification(
                notification_id,
                event_type,
                record_id,
                self._url,
                {"id": notification_id, **payload},
                saved_at,
                self._generation,
            )
            self._log.append(notification)
            if self._over_rate_limit():
                notification.status = "dropped"
                self._finished += 1
                self._cond.notify_all()
                logger.info(
                    "webhook %s for record %s dropped: over the per-minute cap", event_type, record_id
                )
                return
            self._pending.put(notification)

    def log(self) -> list[dict[str, Any]]:
        with self._cond:
            return [notification.as_json() for notification in self._log]

    def wait_finished(self, count: int, timeout: float) -> tuple[list[dict[str, Any]], bool]:
        """Waits until ``count`` notifications are sent, failed or dropped; returns (log, timed out)."""
        with self._cond:
            done = self._cond.wait_for(lambda: self._finished >= count or self._closed, timeout)
            return [notification.as_json() for notification in self._log], not done or self._finished < count

    def reset(self) -> None:
        with self._cond:
            self._generation += 1
            self._log.clear()
            self._finished = 0
            self._accepted_at.clear()
            self._cond.notify_all()

    def _over_rate_limit(self) -> bool:
        now = time.monotonic()
        while self._accepted_at and now - self._accepted_at[0] >= WEBHOOK_WINDOW_SECONDS:
            self._accepted_at.popleft()
        if len(self._accepted_at) >= self._rate_per_minute:
            return True
        self._accepted_at.append(now)
        return False

    def _deliver_all(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(self._timeout_seconds), trust_env=False) as client:
            while (notification := self._pending.get()) is not None:
                self._deliver(client, notification)

    def _deliver(self, client: httpx.Client, notification: WebhookNotification) -> None:
        with self._cond:
            if self._closed or notification.generation != self._generation:
                return
        body = json.dumps(notification.payload, ensure_ascii=False).encode("utf-8")
        sent_at = time.time()
        status, http_status, error = "sent", None, None
        try:
            response = client.post(
                notification.url, content=body, headers={"Content-Type": "application/json"}
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            status, error = "failed", type(exc).__name__
        else:
            http_status = response.status_code
            if not response.is_success:
                status = "failed"
        with self._cond:
            notification.status, notification.http_status = status, http_status
            notification.error, notification.sent_at = error, sent_at
            if notification.generation == self._generation:
                self._finished += 1
            self._cond.notify_all()
        log_level = logging.DEBUG if status == "sent" else logging.WARNING
        logger.log(
            log_level,
            "webhook %s for record %s %s (HTTP %s%s)",
            notification.event_type,
            notification.record_id,
            status,
            http_status,
            f", {error}" if error else "",
        )


def _checked_webhook_url(url: Any) -> str | None:
    if url is None or url == "":
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError("webhook_url must be an http:// or https:// URL")
    return url


def _checked_rate(rate: Any) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
        raise ValueError("webhook_rate_per_minute must be a whole number, 0 or more")
    return rate


# --------------------------------------------------------------------------------------------------
# Faults and the concurrency limit
# --------------------------------------------------------------------------------------------------

# Codes that kintone answers with these statuses; other injected statuses get EMULATOR_FAULT.
_FAULT_CODES = {401: "CB_AU01", 403: "CB_NO02", 404: "GAIA_RE01", 409: "GAIA_CO02", 429: "GAIA_TO04"}


@dataclasses.dataclass
class FaultRule:
    path_prefix: str
    method: str | None
    status: int | None
    code: str | None
    message: str | None
    remaining: int
    delay_seconds: float

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path_prefix) and self.method in (None, method)

    def error(self) -> KintoneError | None:
        if self.status is None:
            return None
        code = self.code or _FAULT_CODES.get(self.status, "EMULATOR_FAULT")
        return KintoneError(self.status, code, self.message or "Injected by the kintone emulator.")

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> FaultRule:
        unknown = set(body) - {"path_prefix", "method", "status", "code", "message", "count", "delay_seconds"}
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        path_prefix, method, status = body.get("path_prefix"), body.get("method"), body.get("status")
        count, delay = body.get("count", 1), body.get("delay_seconds", 0)
        if not isinstance(path_prefix, str) or not path_prefix.startswith("/k/v1/"):
            raise ValueError("path_prefix must start with /k/v1/")
        if method is not None and method not in ("GET", "POST", "PUT", "DELETE"):
            raise ValueError("method must be GET, POST, PUT or DELETE")
        if status is not None and (
            isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599
        ):
            raise ValueError("status must be an HTTP error status (400-599)")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a whole number, 1 or more")
        if (
            isinstance(delay, bool)
            or not isinstance(delay, (int, float))
            or not 0 <= delay <= MAX_FAULT_DELAY_SECONDS
        ):
            raise ValueError(f"delay_seconds must be between 0 and {MAX_FAULT_DELAY_SECONDS:g}")
        if status is None and delay == 0:
            raise ValueError("give a status, a delay_seconds, or both")
        code, message = body.get("code"), body.get("message")
        if not isinstance(code, str | None) or not isinstance(message, str | None):
            raise TypeError("code and message must be strings")
        return cls(path_prefix, method, status, code, message, count, float(delay))


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._release = threading.Event()

    def add(self, rule: FaultRule) -> list[dict[str, Any]]:
        with self._lock:
            self._rules.append(rule)
            return [existing.as_json() for existing in self._rules]

    def take(self, method: str, path: str) -> tuple[FaultRule, threading.Event] | None:
        """The first rule that matches, used up by one, with the event that ends its delay early."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    return rule, self._release
            return None

    def release(self) -> None:
        """Lets every request held by a delay fault go on now."""
        with self._lock:
            self._release.set()
            self._release = threading.Event()

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
        self.release()


class _ConcurrencyGate:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._cond = threading.Condition()
        self._running = 0

    def try_enter(self) -> int | None:
        with self._cond:
            if self._running >= self.limit:
                return None
            self._running += 1
            self._cond.notify_all()
            return self._running

    def leave(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    @property
    def running(self) -> int:
        with self._cond:
            return self._running

    def wait_until_running(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._running >= count, timeout)


# --------------------------------------------------------------------------------------------------
# Request parameters
# --------------------------------------------------------------------------------------------------

_ARRAY_KEY = re.compile(r"(\w+)\[(\d+)\]")


def _request_params(query: str, body: bytes) -> dict[str, Any]:
    """kintone takes a GET's parameters from the query string or, as well, from a JSON body."""
    if body.strip():
        try:
            params = json.loads(body)
        except ValueError as error:
            raise KintoneError(400, "CB_IJ01", "The request body is not valid JSON.") from error
        if not isinstance(params, dict):
            raise KintoneError(400, "CB_IJ01", "The request body must be a JSON object.")
        return params
    return _query_params(query)


def _query_params(query: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    arrays: dict[str, dict[int, str]] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if match := _ARRAY_KEY.fullmatch(key):  # fields[0]=a&fields[1]=b
            arrays.setdefault(match[1], {})[int(match[2])] = value
        else:
            params[key] = value
    for name, items in arrays.items():
        params[name] = [items[index] for index in sorted(items)]
    return params


def _json_object(body: bytes) -> dict[str, Any]:
    payload = json.loads(body) if body.strip() else {}
    if not isinstance(payload, dict):
        raise TypeError("the body must be a JSON object")
    return payload


def _int_value(value: Any, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise _invalid_param(key, "Must be an integer.")


def _int_param(params: Mapping[str, Any], name: str, key: str | None = None, minimum: int = 1) -> int:
    key = key or name
    value = params.get(name)
    if value is None or value == "":
        raise _invalid_param(key, "Required field.")
    number = _int_value(value, key)
    if number < minimum:
        raise _invalid_param(key, f"Must be {minimum} or more.")
    return number


def _revision_param(value: Any, key: str) -> int | None:
    """The expected revision, or None where none is given or it is -1 (no check)."""
    if value is None or value == "":
        return None
    revision = _int_value(value, key)
    if revision == -1:
        return None
    if revision < 1:
        raise _invalid_param(key, "Must be -1, or 1 or more.")
    return revision


def _id_list(value: Any, key: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise _invalid_param(key, "Required field.")
    return [_int_value(item, f"{key}[{index}]") for index, item in enumerate(value)]


def _user_from(value: Any, default: User) -> User:
    if value is None:
        return default
    if isinstance(value, str) and value:
        return User(value, value)
    if isinstance(value, dict) and isinstance(value.get("code"), str) and value["code"]:
        name = value.get("name")
        return User(value["code"], name if isinstance(name, str) and name else value["code"])
    raise ValueError('user must be a login name or {"code": ..., "name": ...}')


def _wait_seconds(query: Mapping[str, str]) -> float:
    try:
        seconds = float(query.get("timeout", DEFAULT_WAIT_SECONDS))
    except ValueError as error:
        raise ValueError("timeout must be a number of seconds") from error
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise ValueError(f"timeout must be between 0 and {MAX_WAIT_SECONDS:g} seconds")
    return seconds


def _query_int(query: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    text = query.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"-?\d+", text):
        raise ValueError(f"{name} must be a whole number")
    return int(text)


# --------------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


Route = Callable[[dict[str, Any], User], dict[str, Any]]
AdminRoute = Callable[[dict[str, str], dict[str, Any]], Response]


class _EmulatorHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a burst of saves opens many connections at once

    def __init__(self, address: tuple[str, int], emulator: KintoneEmulator) -> None:
        super().__init__(address, _RequestHandler)
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Ends open keep-alive connections so that their threads do not outlive the emulator."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_SECONDS
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK stalls each reply.
    disable_nagle_algorithm = True
    server: _EmulatorHTTPServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        started = time.perf_counter()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BODY_BYTES:
            self.close_connection = True
            response = Response(
                413, {"error": "the request body is missing a valid Content-Length or too large"}
            )
        else:
            body = self.rfile.read(length) if length else b""
            response = self.server.emulator.handle(method, self.path, self.headers, body)
        payload = json.dumps(response.body, ensure_ascii=False).encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        logger.debug(
            "%s %s -> %d in %.1f ms",
            method,
            urllib.parse.urlsplit(self.path).path,
            response.status,
            (time.perf_counter() - started) * 1000,
        )

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http: " + format, *args)


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class KintoneEmulator:
    """One kintone app behind an HTTP server on 127.0.0.1.

    REST API (auth ``X-Cybozu-API-Token``, or the emulator-only ``X-Emulator-User: code`` and
    optional percent-encoded ``X-Emulator-User-Name`` to act as a user saving from the kintone screen):
    ``GET/POST/PUT /k/v1/record.json``, ``GET/POST/PUT/DELETE /k/v1/records.json``,
    ``POST /k/v1/record/comment.json``, ``GET /k/v1/record/comments.json``.

    Admin endpoints (no auth): ``GET /_emulator/health``; ``GET|POST /_emulator/config``
    ``{webhook_url?, webhook_rate_per_minute?, webhook_enabled?, delete_notification_keys?}``;
    ``POST /_emulator/records/save {app, id?, revision?, record, user?}`` and
    ``POST /_emulator/records/delete {app, ids, user?}`` (screen saves and deletes, with webhooks);
    ``GET /_emulator/records/wait?app=&id=&field=&nonempty=true&equals=&revision_gt=&timeout=``;
    ``GET /_emulator/webhooks``, ``GET /_emulator/webhooks/wait?count=&timeout=``;
    ``POST /_emulator/faults {path_prefix, method?, status?, code?, message?, count?, delay_seconds?}``,
    ``POST /_emulator/faults/release``, ``DELETE /_emulator/faults``; ``POST /_emulator/reset``.
    """

    def __init__(
        self,
        app_id: str = "1",
        api_tokens: Iterable[str] = (),
        webhook_url: str | None = None,
        webhook_rate_per_minute: int = WEBHOOKS_PER_MINUTE,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        schema: AppSchema = DEFAULT_SCHEMA,
        max_concurrent_requests: int = CONCURRENT_REQUEST_LIMIT,
        webhook_timeout_seconds: float = 10.0,
        delete_notification_keys: str = "deleteBy",
        reject_unknown_fields: bool = False,
        api_token_user: User = API_TOKEN_USER,
    ) -> None:
        if not re.fullmatch(r"[1-9]\d*", str(app_id)):
            raise ValueError("app_id must be a positive whole number")
        if delete_notification_keys not in DELETE_KEY_STYLES:
            raise ValueError(f"delete_notification_keys must be one of {DELETE_KEY_STYLES}")
        self.app_id = str(app_id)
        self._api_tokens = frozenset(api_tokens)
        self._api_token_user = api_token_user
        self._address = (host, port)
        self._dispatcher = WebhookDispatcher(
            url=webhook_url, rate_per_minute=webhook_rate_per_minute, timeout_seconds=webhook_timeout_seconds
        )
        self._store = RecordStore(
            self.app_id,
            schema,
            publish=self._dispatcher.publish,
            reject_unknown_fields=reject_unknown_fields,
            delete_key_style=delete_notification_keys,
        )
        self._faults = FaultInjector()
        self._gate = _ConcurrencyGate(max_concurrent_requests)
        self._server: _EmulatorHTTPServer | None = None
        self._server_thread: threading.Thread | None = None
        self._base_url: str | None = None
        self._api_routes: dict[tuple[str, str], Route] = {
            ("GET", "/k/v1/record.json"): self._get_record,
            ("POST", "/k/v1/record.json"): self._add_record,
            ("PUT", "/k/v1/record.json"): self._update_record,
            ("GET", "/k/v1/records.json"): self._get_records,
            ("POST", "/k/v1/records.json"): self._add_records,
            ("PUT", "/k/v1/records.json"): self._update_records,
            ("DELETE", "/k/v1/records.json"): self._delete_records,
            ("POST", "/k/v1/record/comment.json"): self._add_comment,
            ("GET", "/k/v1/record/comments.json"): self._get_comments,
        }
        self._admin_routes: dict[tuple[str, str], AdminRoute] = {
            ("GET", "/_emulator/health"): self._admin_health,
            ("GET", "/_emulator/config"): lambda _query, _body: Response(200, self.settings()),
            ("POST", "/_emulator/config"): lambda _query, body: Response(200, self.configure(**body)),
            ("POST", "/_emulator/records/save"): self._admin_save_record,
            ("POST", "/_emulator/records/delete"): self._admin_delete_records,
            ("GET", "/_emulator/records/wait"): self._admin_wait_record,
            ("GET", "/_emulator/webhooks"): lambda _query, _body: Response(
                200, {"notifications": self.webhook_log()}
            ),
            ("GET", "/_emulator/webhooks/wait"): self._admin_wait_webhooks,
            ("POST", "/_emulator/faults"): lambda _query, body: Response(
                200, {"faults": self.add_fault(**body)}
            ),
            ("DELETE", "/_emulator/faults"): lambda _query, _body: self._done(self.clear_faults),
            ("POST", "/_emulator/faults/release"): lambda _query, _body: self._done(
                self.release_delayed_requests
            ),
            ("POST", "/_emulator/reset"): lambda _query, _body: self._done(self.reset),
        }

    # ---- life cycle -------------------------------------------------------------------------------

    def start(self) -> str:
        """Starts listening in a background thread and returns the base URL."""
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        self._server = _EmulatorHTTPServer(self._address, self)
        host, port = self._server.server_address[:2]
        self._base_url = f"http://{_url_host(str(host))}:{port}"
        self._store.base_url = self._base_url
        self._dispatcher.start()
        self._server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="kintone-emulator-http",
            daemon=True,
        )
        self._server_thread.start()
        logger.info("kintone emulator for app %s listening on %s", self.app_id, self._base_url)
        return self._base_url

    def stop(self) -> None:
        """Stops serving and sending webhooks; an emulator is not started again after this."""
        if self._server is None:
            return
        self._store.close()
        self._faults.release()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
        self._dispatcher.stop()
        self._server = None
        logger.info("kintone emulator stopped")

    def __enter__(self) -> KintoneEmulator:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the emulator is not started")
        return self._base_url

    # ---- Python accessors for tests ----------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """Every record, as GET /k/v1/record.json shows it, in record id order."""
        return self._store.all_records()

    def record(self, record_id: int) -> dict[str, Any] | None:
        return self._store.peek(record_id)

    def comments(self, record_id: int) -> list[dict[str, Any]]:
        """The record's comments, oldest first."""
        return self._store.comments_of(record_id)

    def webhook_log(self) -> list[dict[str, Any]]:
        return self._dispatcher.log()

    def wait_for_webhooks(self, count: int, timeout: float = DEFAULT_WAIT_SECONDS) -> list[dict[str, Any]]:
        """The log once ``count`` notifications have been sent, failed or dropped; TimeoutError if not."""
        log, timed_out = self._dispatcher.wait_finished(count, timeout)
        if timed_out:
            raise TimeoutError(f"{count} webhook notifications did not finish within {timeout} s")
        return log

    def wait_for_record(
        self, record_id: int, condition: RecordCondition, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> RecordMatch | None:
        return self._store.wait_for(record_id, condition, timeout)

    def set_record_times(
        self, record_id: int, *, created_at: float | None = None, updated_at: float | None = None
    ) -> None:
        """Moves a record's CREATED_TIME/UPDATED_TIME (epoch seconds), e.g. to age it for a sweep."""
        self._store.set_times(record_id, created_at=created_at, updated_at=updated_at)

    def settings(self) -> dict[str, Any]:
        return {**self._dispatcher.settings(), "delete_notification_keys": self._store.delete_key_style}

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Changes ``webhook_url``, ``webhook_rate_per_minute``, ``webhook_enabled`` or
        ``delete_notification_keys`` ("deleteBy" or "deletedBy"); returns the settings."""
        unknown = set(settings) - {*self._dispatcher.settings(), "delete_notification_keys"}
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        style = settings.get("delete_notification_keys", self._store.delete_key_style)
        if style not in DELETE_KEY_STYLES:
            raise ValueError(f"delete_notification_keys must be one of {DELETE_KEY_STYLES}")
        self._dispatcher.configure(settings)
        self._store.delete_key_style = style
        return self.settings()

    def add_fault(self, **rule: Any) -> list[dict[str, Any]]:
        """The next ``count`` requests whose path starts with ``path_prefix`` (and whose method is
        ``method``, if given) wait ``delay_seconds`` and/or fail with ``status`` and a kintone body."""
        return self._faults.add(FaultRule.from_json(rule))

    def clear_faults(self) -> None:
        self._faults.clear()

    def release_delayed_requests(self) -> None:
        self._faults.release()

    def reset(self) -> None:
        """Forgets records, comments, the webhook log and faults; record ids start at 1 again."""
        self._store.reset()
        self._dispatcher.reset()
        self._faults.clear()

    @property
    def in_flight_requests(self) -> int:
        return self._gate.running

    def wait_for_in_flight(self, count: int, timeout: float = DEFAULT_WAIT_SECONDS) -> bool:
        """Whether ``count`` REST requests were being served at once within ``timeout``."""
        return self._gate.wait_until_running(count, timeout)

    # ---- request handling ---------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        split = urllib.parse.urlsplit(target)
        if split.path.startswith("/_emulator/"):
            return self._handle_admin(method, split.path, split.query, body)
        if split.path.startswith("/k/v1/"):
            return self._handle_api(method, split.path, split.query, headers, body)
        return Response(404, {"error": f"no such path: {split.path}"})

    def _handle_api(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        override = headers.get("X-HTTP-Method-Override")
        if method == "POST" and override:  # kintone's way round long URLs: a GET sent as a POST
            method = override.strip().upper()
        running = self._gate.try_enter()
        if running is None:
            response = self._error_response(
                KintoneError(429, "GAIA_TO04", "Too many concurrent API requests. Try again later.")
            )
            running = self._gate.limit + 1
        else:
            try:
                response = self._serve_api(method, path, query, headers, body)
            finally:
                self._gate.leave()
        response.headers["X-ConcurrencyLimit-Limit"] = str(self._gate.limit)
        response.headers["X-ConcurrencyLimit-Running"] = str(running)
        return response

    def _serve_api(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        try:
            self._apply_fault(method, path)
            user = self._authenticate(headers)
            route = self._api_route(method, path)
            return Response(200, route(_request_params(query, body), user))
        except KintoneError as error:
            return self._error_response(error)

    def _api_route(self, method: str, path: str) -> Route:
        route = self._api_routes.get((method, path))
        if route is None:
            raise KintoneError(404, "EMULATOR_NOT_IMPLEMENTED", f"The emulator has no API {method} {path}.")
        return route

    def _apply_fault(self, method: str, path: str) -> None:
        taken = self._faults.take(method, path)
        if taken is None:
            return
        rule, release = taken
        if rule.delay_seconds:
            release.wait(rule.delay_seconds)
        error = rule.error()
        if error is not None:
            raise error

    def _authenticate(self, headers: Mapping[str, str]) -> User:
        acting_user = headers.get("X-Emulator-User")
        if acting_user:
            name = urllib.parse.unquote(headers.get("X-Emulator-User-Name") or "") or acting_user
            return User(acting_user, name)
        raw_tokens = headers.get("X-Cybozu-API-Token")
        if raw_tokens is None:
            if headers.get("X-Cybozu-Authorization") is not None:
                raise self._auth_failure(
                    401, "CB_WA01", "Password authentication is not available; use an API token."
                )
            raise self._auth_failure(401, "CB_AU01", "Please log in.")
        tokens = [token.strip() for token in raw_tokens.split(",") if token.strip()]
        if len(set(tokens)) != len(tokens):
            raise self._auth_failure(400, "GAIA_DA03", "The same API token is given more than once.")
        if not tokens or any(token not in self._api_tokens for token in tokens):
            raise self._auth_failure(
                400, "GAIA_IA02", "The API token does not match a token generated by the app."
            )
        return self._api_token_user

    @staticmethod
    def _auth_failure(status: int, code: str, message: str) -> KintoneError:
        logger.warning("authentication failed: %s", code)  # never the token itself
        return KintoneError(status, code, message)

    @staticmethod
    def _error_response(error: KintoneError) -> Response:
        return Response(error.status, error.response_body(), {"X-Cybozu-Error": error.code})

    def _check_app(self, params: Mapping[str, Any]) -> None:
        app = _int_param(params, "app")
        if str(app) != self.app_id:
            raise KintoneError(
                404, "GAIA_AP01", f"The app (id: {app}) was not found. It may have been deleted."
            )

    # ---- the REST API ----------------------------------------------------------------------------------

    def _get_record(self, params: dict[str, Any], _user: User) -> dict[str, Any]:
        self._check_app(params)
        return {"record": self._store.get(_int_param(params, "id"))}

    def _add_record(self, params: dict[str, Any], user: User) -> dict[str, Any]:
        self._check_app(params)
        record_id, revision = self._store.add(params.get("record") or {}, user, notify=True)
        return {"id": str(record_id), "revision": str(revision)}

    def _update_record(self, params: dict[str, Any], user: User) -> dict[str, Any]:
        self._check_app(params)
        if "updateKey" in params:
            raise _invalid_param("updateKey", "The emulator supports only updates by id.")
        record_id = _int_param(params, "id")
        expected_revision = _revision_param(params.get("revision"), "revision")
        revision = self._store.update(record_id, expected_revision, params.get("record"), user, notify=True)
        return {"revision": str(revision)}

    def _get_records(self, params: dict[str, Any], user: User) -> dict[str, Any]:
        self._check_app(params)
        query, fields = params.get("query") or "", params.get("fields")
        if not isinstance(query, str):
            raise _invalid_param("query", "Must be a string.")
        if fields is not None and (
            not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)
        ):
            raise _invalid_param("fields", "Must be an array of field codes.")
        with_total = params.get("totalCount") in (True, "true")
        return self._store.search(query, fields, with_total=with_total, user=user)

    def _add_records(self, params: dict[str, Any], user: User) -> dict[str, Any]:
        self._check_app(params)
        records = params.get("records")
        if not isinstance(records, list):
            raise _invalid_param("records", "Required field.")
        if len(records) > MAX_RECORDS_PER_WRITE:
            raise _invalid_param("records", f"Up to {MAX_RECORDS_PER_WRITE} records can be added at a time.")
        added = self._store.add_many(records, user)
        return {"ids": [str(i) for i, _ in added], "revisions": [str(r) for _, r in added]}

    def _update_records(self, params: dict[str, Any], user: User) -> dict[str, Any]:
        self._check_app(params)
        records = params.get("records")
        if params.get("upsert") in (True, "true"):
            raise _invalid_param("upsert", "The emulator does not support upsert.")
        if not isinstance(records, list):
            raise _invalid_param("records", "Required field.")
        if len(records) > MAX_RECORDS_PER_WRITE:
            raise _invalid_param(
                "records", f"Up to {MAX_RECORDS_PER_WRITE} records can be updated at a time."
            )
        entries = []
        for index, entry in enumerate(records):
            if not isinstance(entry, dict) or "updateKey" in entry:
                raise _invalid_param(f"records[{index}]", "Give an object with the record's id.")
            record_id = _int_param(entry, "id", key=f"records[{index}].id")
            expected_revision = _revision_param(entry.get("revision"), f"records[{index}].revision")
            entries.append((record_id, expected_revision, entry.get("record")))
        updated = self._store.update_many(entries, user)
        return {"records": [{"id": str(i), "revision": str(r)} for i, r in updated]}

    def _delete_records(self, params: dict[str, Any], user: User) -> dict[str, Any]:
        self._check_app(params)
        ids = _id_list(params.get("ids"), "ids")
        if len(ids) > MAX_RECORDS_PER_WRITE:
            raise _invalid_param("ids", f"Up to {MAX_RECORDS_PER_WRITE} records can be deleted at a time.")
        raw_revisions = params.get("revisions")
        if raw_revisions is None:
            revisions: list[int | None] = [None] * len(ids)
        elif isinstance(raw_revisions, list) and len(raw_revisions) == len(ids):
            revisions = [_revision_param(value, f"revisions[{i}]") for i, value in enumerate(raw_revisions)]
        else:
            raise _invalid_param("revisions", "Give one revision for each id.")
        self._store.delete_many(ids, revisions, user, notify=False)
        return {}

    def _add_comment(self, params: dict[str, Any], user: User) -> dict[str, Any]:
        self._check_app(params)
        record_id = _int_param(params, "record")
        comment = params.get("comment")
        if not isinstance(comment, dict):
            raise _invalid_param("comment", "Required field.")
        text = comment.get("text")
        if not isinstance(text, str) or not text:
            raise _invalid_param("comment.text", "Required field.")
        if len(text) > MAX_COMMENT_LENGTH:
            raise _invalid_param("comment.text", f"Enter up to {MAX_COMMENT_LENGTH} characters.")
        mentions = comment.get("mentions") or []
        if not isinstance(mentions, list) or len(mentions) > MAX_MENTIONS:
            raise _invalid_param("comment.mentions", f"Give up to {MAX_MENTIONS} mentions.")
        parsed_mentions = []
        for index, mention in enumerate(mentions):
            if (
                not isinstance(mention, dict)
                or not isinstance(mention.get("code"), str)
                or mention.get("type", "USER") not in MENTION_TYPES
            ):
                raise _invalid_param(
                    f"comment.mentions[{index}]", "Give a code and a type (USER, GROUP, ORGANIZATION)."
                )
            parsed_mentions.append((mention["code"], mention.get("type", "USER")))
        return {"id": str(self._store.add_comment(record_id, text, parsed_mentions, user))}

    def _get_comments(self, params: dict[str, Any], _user: User) -> dict[str, Any]:
        self._check_app(params)
        record_id = _int_param(params, "record")
        order = params.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise _invalid_param("order", "Must be asc or desc.")
        offset = _int_param({"offset": params.get("offset") or 0}, "offset", minimum=0)
        limit = _int_param({"limit": params.get("limit") or MAX_COMMENTS_PER_READ}, "limit")
        if limit > MAX_COMMENTS_PER_READ:
            raise _invalid_param("limit", f"Must be {MAX_COMMENTS_PER_READ} or less.")
        return self._store.list_comments(record_id, order, offset, limit)

    # ---- admin endpoints ---------------------------------------------------------------------------------

    def _handle_admin(self, method: str, path: str, query: str, body: bytes) -> Response:
        route = self._admin_routes.get((method, path))
        if route is None:
            return Response(404, {"error": f"no such emulator endpoint: {method} {path}"})
        try:
            return route(dict(urllib.parse.parse_qsl(query)), _json_object(body))
        except KintoneError as error:
            return self._error_response(error)
        except (ValueError, TypeError) as error:  # a bad argument; TypeError for an unknown keyword
            return Response(400, {"error": str(error)})

    @staticmethod
    def _done(action: Callable[[], None]) -> Response:
        action()
        return Response(200, {"ok": True})

    def _admin_health(self, _query: dict[str, str], _body: dict[str, Any]) -> Response:
        return Response(
            200,
            {
                "status": "ok",
                "app_id": self.app_id,
                "records": self._store.count(),
                **self.settings(),
            },
        )

    def _admin_save_record(self, _query: dict[str, str], body: dict[str, Any]) -> Response:
        self._check_app(body)
        user = _user_from(body.get("user"), self._api_token_user)
        record = body.get("record") or {}
        if body.get("id") is None:
            record_id, revision = self._store.add(record, user, notify=True)
        else:
            record_id = _int_param(body, "id")
            expected_revision = _revision_param(body.get("revision"), "revision")
            revision = self._store.update(record_id, expected_revision, record, user, notify=True)
        return Response(200, {"id": str(record_id), "revision": str(revision)})

    def _admin_delete_records(self, _query: dict[str, str], body: dict[str, Any]) -> Response:
        self._check_app(body)
        user = _user_from(body.get("user"), self._api_token_user)
        ids = _id_list(body.get("ids"), "ids")
        # One screen delete after another: each one fires its own DELETE_RECORD.
        self._store.delete_many(ids, [None] * len(ids), user, notify=True)
        return Response(200, {"ok": True})

    def _admin_wait_record(self, query: dict[str, str], _body: dict[str, Any]) -> Response:
        self._check_app(query)
        record_id = _int_param(query, "id")
        field = query.get("field") or None
        if field is not None and self._store.schema.field(field) is None:
            raise ValueError(f"the app has no field {field!r}")
        condition = RecordCondition(
            field=field,
            nonempty=query.get("nonempty") == "true",
            equals=query.get("equals"),
            revision_gt=_query_int(query, "revision_gt"),
        )
        if field is None and condition.revision_gt is None:
            raise ValueError("give a field (with nonempty=true or equals=...) or revision_gt")
        match = self._store.wait_for(record_id, condition, _wait_seconds(query))
        if match is None:
            return Response(408, {"matched": False, "record": self._store.peek(record_id)})
        return Response(
            200,
            {
                "matched": True,
                "record": match.record,
                "revision": str(match.revision),
                "matched_revision": str(match.matched_revision),
                "matched_at": match.matched_at,
            },
        )

    def _admin_wait_webhooks(self, query: dict[str, str], _body: dict[str, Any]) -> Response:
        count = _query_int(query, "count", default=1) or 0
        log, timed_out = self._dispatcher.wait_finished(count, _wait_seconds(query))
        finished = sum(1 for entry in log if entry["status"] != "pending")
        return Response(200, {"notifications": log, "finished": finished, "timed_out": timed_out})


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local.kintone_emulator", description="Emulate one kintone app and its webhooks."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--app-id", default="1")
    parser.add_argument(
        "--api-token", action="append", default=[], help="a token of the app; repeat for more"
    )
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--webhook-rate-per-minute", type=int, default=WEBHOOKS_PER_MINUTE)
    parser.add_argument("--webhook-timeout", type=float, default=10.0, help="seconds per webhook POST")
    parser.add_argument("--schema", default="default", help='"default", or a JSON file describing the app')
    parser.add_argument(
        "--ready-file", default=None, help="where to write KINTONE_BASE_URL=... once listening"
    )
    parser.add_argument("--max-concurrent-requests", type=int, default=CONCURRENT_REQUEST_LIMIT)
    parser.add_argument("--delete-notification-keys", choices=DELETE_KEY_STYLES, default="deleteBy")
    parser.add_argument(
        "--reject-unknown-fields", action="store_true", help="answer CB_VA01 to unknown field codes"
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser.parse_args(argv)


def _write_atomically(path: Path, text: str) -> None:
    # Readers poll for the file; they must never see it half written.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs each request's URL at INFO, and a webhook URL carries its token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    schema = DEFAULT_SCHEMA if args.schema == "default" else AppSchema.from_file(Path(args.schema))
    emulator = KintoneEmulator(
        app_id=args.app_id,
        api_tokens=args.api_token,
        webhook_url=args.webhook_url,
        webhook_rate_per_minute=args.webhook_rate_per_minute,
        host=args.host,
        port=args.port,
        schema=schema,
        max_concurrent_requests=args.max_concurrent_requests,
        webhook_timeout_seconds=args.webhook_timeout,
        delete_notification_keys=args.delete_notification_keys,
        reject_unknown_fields=args.reject_unknown_fields,
    )
    if not args.api_token:
        logger.warning("no --api-token: only requests with X-Emulator-User can use the REST API")
    stop_requested = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop_requested.set())
    ready_line = f"KINTONE_BASE_URL={emulator.start()}"
    try:
        if args.ready_file:
            _write_atomically(Path(args.ready_file), ready_line + "\n")
        print(ready_line, flush=True)
        stop_requested.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
