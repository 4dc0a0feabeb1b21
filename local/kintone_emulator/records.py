"""The app's records and comments, with kintone's validation, revisions and webhook triggers."""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .directory import User
from .errors import KintoneError, add_error, invalid_input, no_permission, record_not_found, revision_conflict
from .field_values import coerce_value
from .query import QueryCompiler, QueryParser
from .schema import AppSchema
from .values import as_text, copy_value, format_minute, format_second, is_empty

# Limits kintone documents for record queries.
DEFAULT_QUERY_LIMIT = 100
MAX_QUERY_LIMIT = 500
MAX_QUERY_OFFSET = 10_000
RECORD_HISTORY_DEPTH = 20  # revisions a wait can look back over
DELETE_KEY_STYLES = ("deleteBy", "deletedBy")


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
    notified: tuple[str, ...] = ()  # the users kintone would notify; not part of the API's answer

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.comment_id),
            "text": self.text,
            "createdAt": format_second(self.created_at),
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
        if self.nonempty and is_empty(value):
            return False
        return self.equals is None or as_text(value) == self.equals


@dataclasses.dataclass(frozen=True)
class RecordMatch:
    record: dict[str, Any]
    revision: int
    matched_revision: int
    matched_at: float  # time.time() of the write after which the condition has held


Publish = Callable[[str, str, dict[str, Any], float], None]
Allowed = Callable[["StoredRecord", str], bool]  # may the caller "view", "edit" or "delete" the record


def allow_all(_record: StoredRecord, _right: str) -> bool:
    return True


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
        user_name: Callable[[str], str | None],
    ) -> None:
        self.app_id = app_id
        self.schema = schema  # replaced whole when the app's settings are deployed
        self._user_name = user_name  # a user's display name, None for no such user
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
            raise invalid_input(errors)
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
            raise invalid_input(errors)
        with self._cond:
            now = time.time()
            added = [self._insert(values, user, now) for values in all_values]
            self._cond.notify_all()
            return [(record.record_id, record.revision) for record in added]

    def update(
        self,
        record_id: int,
        expected_revision: int | None,
        record_input: Any,
        user: User,
        *,
        notify: bool,
        allowed: Allowed = allow_all,
    ) -> int:
        with self._cond:
            record = self._existing(record_id, allowed, "edit")
            _check_revision(record, expected_revision)
            if record_input is None:  # kintone leaves a record alone when the request has no `record`
                return record.revision
            errors: dict[str, list[str]] = {}
            values = self._updated_values(record, record_input, "record", errors)
            if errors:
                raise invalid_input(errors)
            self._apply(record, values, user, time.time())
            if notify:
                self._publish_record("UPDATE_RECORD", record)
            self._cond.notify_all()
            return record.revision

    def update_many(
        self, entries: Sequence[tuple[int, int | None, Any]], user: User, *, allowed: Allowed = allow_all
    ) -> list[tuple[int, int]]:
        """All or nothing, like kintone: one conflict or invalid value and no record changes."""
        with self._cond:
            records = [self._existing(record_id, allowed, "edit") for record_id, _, _ in entries]
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
                raise invalid_input(errors)
            now = time.time()
            for record, values in zip(records, new_values, strict=True):
                if values is not None:
                    self._apply(record, values, user, now)
            self._cond.notify_all()
            return [(record.record_id, record.revision) for record in records]

    def delete_many(
        self,
        record_ids: Sequence[int],
        revisions: Sequence[int | None],
        user: User,
        *,
        notify: bool,
        allowed: Allowed = allow_all,
    ) -> None:
        with self._cond:
            for record_id, expected_revision in zip(record_ids, revisions, strict=True):
                _check_revision(self._existing(record_id, allowed, "delete"), expected_revision)
            for record_id in record_ids:
                if self._records.pop(record_id, None) is None:
                    continue  # the same id twice in one request
                self._comments.pop(record_id, None)
                if notify:
                    self._publish_delete(record_id, user, time.time())
            self._cond.notify_all()

    def add_comment(
        self,
        record_id: int,
        text: str,
        mentions: Sequence[tuple[str, str]],
        user: User,
        *,
        notified: Sequence[str] = (),
        allowed: Allowed = allow_all,
    ) -> int:
        with self._cond:
            self._existing(record_id, allowed, "view")
            comments = self._comments.setdefault(record_id, [])
            comment = StoredComment(
                len(comments) + 1, text, time.time(), user, tuple(mentions), tuple(notified)
            )
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

    def set_schema(self, schema: AppSchema) -> None:
        """The app's fields once its settings are deployed; stored values of removed fields stay."""
        with self._cond:
            self.schema = schema

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

    def get(self, record_id: int, *, allowed: Allowed = allow_all) -> dict[str, Any]:
        with self._cond:
            return self._api_record(self._existing(record_id, allowed, "view"))

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
        """The record's comments, each with ``notified``: whom kintone would have notified."""
        with self._cond:
            return [
                {**comment.as_json(), "notified": list(comment.notified)}
                for comment in self._comments.get(record_id, [])
            ]

    def list_comments(
        self, record_id: int, order: str, offset: int, limit: int, *, allowed: Allowed = allow_all
    ) -> dict[str, Any]:
        with self._cond:
            self._existing(record_id, allowed, "view")
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
        self,
        query_text: str,
        fields: Sequence[str] | None,
        *,
        with_total: bool,
        user: User,
        allowed: Allowed = allow_all,
    ) -> dict[str, Any]:
        """A page of the records ``user`` may view that match; totalCount counts only those too."""
        query = QueryParser(query_text).parse()
        limit = DEFAULT_QUERY_LIMIT if query.limit is None else query.limit
        offset = query.offset or 0
        if limit > MAX_QUERY_LIMIT:
            raise KintoneError(400, "GAIA_QU01", f"limit must be {MAX_QUERY_LIMIT} or less.")
        if offset > MAX_QUERY_OFFSET:
            raise KintoneError(400, "GAIA_QU02", f"offset must be {MAX_QUERY_OFFSET:,} or less.")
        compiled = QueryCompiler(self.schema, user, time.time()).compile(query)
        with self._cond:
            # With no `order by`, kintone answers in descending record id order.
            candidates = sorted(self._records.values(), key=lambda record: record.record_id, reverse=True)
            matched = [r for r in candidates if allowed(r, "view") and compiled.predicate(r)]
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

    def _existing(self, record_id: int, allowed: Allowed = allow_all, right: str = "view") -> StoredRecord:
        record = self._records.get(record_id)
        if record is None:
            raise record_not_found(record_id)
        if not allowed(record, right):
            raise no_permission()
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
            if spec.required and is_empty(values.get(spec.code)):
                suffix = "values" if spec.type == "CHECK_BOX" else "value"
                add_error(errors, f"{prefix}.{spec.code}.{suffix}", "Required.")

    def _coerce(self, record_input: Any, prefix: str, errors: dict[str, list[str]]) -> dict[str, Any]:
        if not isinstance(record_input, dict):
            add_error(errors, prefix, "Must be an object of field codes.")
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
                    add_error(errors, f"{prefix}.{code}", "The app has no field with this code.")
                continue
            if not isinstance(cell, dict):
                add_error(errors, f"{prefix}.{code}", "Must be an object with a value.")
                continue
            coerced[code] = coerce_value(spec, cell.get("value"), prefix, errors, self._user_name)
        return coerced

    # ---- JSON shapes ------------------------------------------------------------------------------

    def _app_json(self) -> dict[str, str]:
        return {"id": self.app_id, "name": self.schema.name}

    def _record_url(self, record_id: int) -> str:
        return f"{self.base_url}/k/{self.app_id}/show#record={record_id}"

    def _api_record(self, record: StoredRecord, fields: Sequence[str] | None = None) -> dict[str, Any]:
        schema = self.schema
        result: dict[str, Any] = {
            spec.code: {
                "type": spec.type,
                "value": copy_value(record.values.get(spec.code, spec.empty_value())),
            }
            for spec in schema.fields
        }
        result[schema.record_number_code] = {"type": "RECORD_NUMBER", "value": str(record.record_id)}
        result[schema.creator_code] = {"type": "CREATOR", "value": record.creator.as_json()}
        result[schema.modifier_code] = {"type": "MODIFIER", "value": record.modifier.as_json()}
        result[schema.created_time_code] = {
            "type": "CREATED_TIME",
            "value": format_minute(record.created_at),
        }
        result[schema.updated_time_code] = {
            "type": "UPDATED_TIME",
            "value": format_minute(record.updated_at),
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
            "recordTitle": self._title(record),
            "url": self._record_url(record.record_id),
        }
        self._publish(event_type, str(record.record_id), payload, record.updated_at)

    def _title(self, record: StoredRecord) -> str:
        title_code = self.schema.title_code()
        return "" if title_code is None else as_text(record.values.get(title_code))

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
            at_key: format_second(now),
        }
        self._publish("DELETE_RECORD", str(record_id), payload, now)


def _check_revision(record: StoredRecord, expected_revision: int | None) -> None:
    if expected_revision is not None and expected_revision != record.revision:
        raise revision_conflict()
