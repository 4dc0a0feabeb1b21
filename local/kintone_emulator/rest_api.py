"""kintone's record REST API: records, bulk records and comments under ``/k/v1/``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .directory import Directory
from .errors import KintoneError, invalid_param
from .params import id_list, int_param, revision_param
from .permissions import Access
from .records import RecordStore

# Limits kintone documents for these APIs.
MAX_RECORDS_PER_WRITE = 100
MAX_COMMENTS_PER_READ = 10
MAX_COMMENT_LENGTH = 65_535
MAX_MENTIONS = 10
MENTION_TYPES = frozenset({"USER", "GROUP", "ORGANIZATION"})
GUEST_PREFIX = "guest/"  # how kintone names a guest user in a mention

Route = Callable[[dict[str, Any], Access], dict[str, Any]]


def check_app(app_id: str, params: Mapping[str, Any]) -> None:
    app = int_param(params, "app")
    if str(app) != app_id:
        raise KintoneError(404, "GAIA_AP01", f"The app (id: {app}) was not found. It may have been deleted.")


class RecordApi:
    """The record, records and comment endpoints of one app, over its record store."""

    def __init__(self, app_id: str, store: RecordStore, directory: Directory) -> None:
        self._app_id = app_id
        self._store = store
        self._directory = directory
        self.routes: dict[tuple[str, str], Route] = {
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

    def _get_record(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        check_app(self._app_id, params)
        access.require_app_right("recordViewable")
        return {"record": self._store.get(int_param(params, "id"), allowed=access.allowed)}

    def _add_record(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        check_app(self._app_id, params)
        access.require_app_right("recordAddable")
        record_id, revision = self._store.add(params.get("record") or {}, access.caller.user, notify=True)
        return {"id": str(record_id), "revision": str(revision)}

    def _update_record(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        check_app(self._app_id, params)
        if "updateKey" in params:
            raise invalid_param("updateKey", "The emulator supports only updates by id.")
        record_id = int_param(params, "id")
        expected_revision = revision_param(params.get("revision"), "revision")
        revision = self._store.update(
            record_id,
            expected_revision,
            params.get("record"),
            access.caller.user,
            notify=True,
            allowed=access.allowed,
        )
        return {"revision": str(revision)}

    def _get_records(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        check_app(self._app_id, params)
        query, fields = params.get("query") or "", params.get("fields")
        if not isinstance(query, str):
            raise invalid_param("query", "Must be a string.")
        if fields is not None and (
            not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)
        ):
            raise invalid_param("fields", "Must be an array of field codes.")
        with_total = params.get("totalCount") in (True, "true")
        access.require_app_right("recordViewable")
        return self._store.search(
            query, fields, with_total=with_total, user=access.caller.user, allowed=access.allowed
        )

    def _add_records(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        check_app(self._app_id, params)
        records = params.get("records")
        if not isinstance(records, list):
            raise invalid_param("records", "Required field.")
        if len(records) > MAX_RECORDS_PER_WRITE:
            raise invalid_param("records", f"Up to {MAX_RECORDS_PER_WRITE} records can be added at a time.")
        access.require_app_right("recordAddable")
        added = self._store.add_many(records, access.caller.user)
        return {"ids": [str(i) for i, _ in added], "revisions": [str(r) for _, r in added]}

    def _update_records(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        check_app(self._app_id, params)
        records = params.get("records")
        if params.get("upsert") in (True, "true"):
            raise invalid_param("upsert", "The emulator does not support upsert.")
        if not isinstance(records, list):
            raise invalid_param("records", "Required field.")
        if len(records) > MAX_RECORDS_PER_WRITE:
            raise invalid_param("records", f"Up to {MAX_RECORDS_PER_WRITE} records can be updated at a time.")
        entries = []
        for index, entry in enumerate(records):
            if not isinstance(entry, dict) or "updateKey" in entry:
                raise invalid_param(f"records[{index}]", "Give an object with the record's id.")
            record_id = int_param(entry, "id", key=f"records[{index}].id")
            expected_revision = revision_param(entry.get("revision"), f"records[{index}].revision")
            entries.append((record_id, expected_revision, entry.get("record")))
        updated = self._store.update_many(entries, access.caller.user, allowed=access.allowed)
        return {"records": [{"id": str(i), "revision": str(r)} for i, r in updated]}

    def _delete_records(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        check_app(self._app_id, params)
        ids = id_list(params.get("ids"), "ids")
        if len(ids) > MAX_RECORDS_PER_WRITE:
            raise invalid_param("ids", f"Up to {MAX_RECORDS_PER_WRITE} records can be deleted at a time.")
        raw_revisions = params.get("revisions")
        if raw_revisions is None:
            revisions: list[int | None] = [None] * len(ids)
        elif isinstance(raw_revisions, list) and len(raw_revisions) == len(ids):
            revisions = [revision_param(value, f"revisions[{i}]") for i, value in enumerate(raw_revisions)]
        else:
            raise invalid_param("revisions", "Give one revision for each id.")
        self._store.delete_many(ids, revisions, access.caller.user, notify=False, allowed=access.allowed)
        return {}

    def _add_comment(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        check_app(self._app_id, params)
        record_id = int_param(params, "record")
        comment = params.get("comment")
        if not isinstance(comment, dict):
            raise invalid_param("comment", "Required field.")
        text = comment.get("text")
        if not isinstance(text, str) or not text:
            raise invalid_param("comment.text", "Required field.")
        if len(text) > MAX_COMMENT_LENGTH:
            raise invalid_param("comment.text", f"Enter up to {MAX_COMMENT_LENGTH} characters.")
        mentions = comment.get("mentions") or []
        if not isinstance(mentions, list) or len(mentions) > MAX_MENTIONS:
            raise invalid_param("comment.mentions", f"Give up to {MAX_MENTIONS} mentions.")
        parsed_mentions = []
        for index, mention in enumerate(mentions):
            if (
                not isinstance(mention, dict)
                or not isinstance(mention.get("code"), str)
                or mention.get("type", "USER") not in MENTION_TYPES
            ):
                raise invalid_param(
                    f"comment.mentions[{index}]", "Give a code and a type (USER, GROUP, ORGANIZATION)."
                )
            parsed_mentions.append((mention["code"], mention.get("type", "USER")))
        comment_id = self._store.add_comment(
            record_id,
            text,
            parsed_mentions,
            access.caller.user,
            notified=self._notified(parsed_mentions),
            allowed=access.allowed,
        )
        return {"id": str(comment_id)}

    def _notified(self, mentions: list[tuple[str, str]]) -> list[str]:
        """Whom kintone notifies: mentioned users who are active. A suspended or deleted user, an
        organization or a group gets nothing, and the comment is posted all the same; a guest user,
        who is not invited to this app (it is in no guest space), is refused."""
        notified = []
        for index, (code, kind) in enumerate(mentions):
            if kind != "USER":
                continue
            user = self._directory.user(code)
            if code.startswith(GUEST_PREFIX) or (user is not None and user.guest):
                raise invalid_param(
                    f"comment.mentions[{index}].code", "The guest user is not a member of this app's space."
                )
            if user is not None and user.valid and code not in notified:
                notified.append(code)
        return notified

    def _get_comments(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        check_app(self._app_id, params)
        record_id = int_param(params, "record")
        order = params.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise invalid_param("order", "Must be asc or desc.")
        offset = int_param({"offset": params.get("offset") or 0}, "offset", minimum=0)
        limit = int_param({"limit": params.get("limit") or MAX_COMMENTS_PER_READ}, "limit")
        if limit > MAX_COMMENTS_PER_READ:
            raise invalid_param("limit", f"Must be {MAX_COMMENTS_PER_READ} or less.")
        return self._store.list_comments(record_id, order, offset, limit, allowed=access.allowed)
