"""kintone's app and record permissions, applied to a caller.

An API token bypasses them all. For a user who signed in with a password:

* app permissions: the first entry whose entity matches the user gives the rights ("everyone"
  always comes last, whatever its place; CREATOR is the app's creator); no match, no rights;
* record permissions: the first rule whose ``filterCond`` the record matches decides (an empty
  condition matches every record); in it, the first entity that matches the user gives the rights,
  "everyone" last; no entity matches, no rights; a record no rule matches is open to all.

A record right also needs the app right of the same name (viewing, editing, deleting).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .app_settings import Settings
from .auth import Caller
from .directory import EVERYONE_GROUP, Directory
from .errors import KintoneError, no_permission
from .query import QueryCompiler, QueryParser

if TYPE_CHECKING:
    from .records import StoredRecord


@dataclasses.dataclass(frozen=True)
class RecordRights:
    viewable: bool
    editable: bool
    deletable: bool


ALL_RECORD_RIGHTS = RecordRights(True, True, True)
NO_RECORD_RIGHTS = RecordRights(False, False, False)


def _everyone_last(entries: list[dict[str, Any]], entity_of: Callable[[dict[str, Any]], Mapping]) -> list:
    def is_everyone(entry: dict[str, Any]) -> bool:
        entity = entity_of(entry)
        return entity.get("type") == "GROUP" and entity.get("code") == EVERYONE_GROUP

    return [entry for entry in entries if not is_everyone(entry)] + [e for e in entries if is_everyone(e)]


class Access:
    """What one caller may do in the app, given its live settings; made once per request."""

    def __init__(
        self, caller: Caller, settings: Settings, directory: Directory, app_creator: str | None
    ) -> None:
        self.caller = caller
        self._settings = settings
        self._directory = directory
        self._app_creator = app_creator
        self._app_rights = self._rights_in_app()
        self._rules = self._compiled_rules() if not caller.via_token else []

    def app_right(self, name: str) -> bool:
        """``appEditable``, ``recordViewable``, ``recordAddable``, ``recordEditable``, ..."""
        if self.caller.via_token:
            return name != "appEditable" or self.caller.can_manage_app
        return bool(self._app_rights.get(name, False))

    def require_app_right(self, name: str) -> None:
        if not self.app_right(name):
            raise no_permission()

    def record_rights(self, record: StoredRecord) -> RecordRights:
        if self.caller.via_token:
            return ALL_RECORD_RIGHTS
        rights = ALL_RECORD_RIGHTS
        for matches, entities in self._rules:
            if matches(record):
                rights = self._rights_of_entities(entities, record)
                break
        return RecordRights(
            rights.viewable and self.app_right("recordViewable"),
            rights.editable and self.app_right("recordEditable"),
            rights.deletable and self.app_right("recordDeletable"),
        )

    def allowed(self, record: StoredRecord, right: str) -> bool:
        """``right`` is "view", "edit" or "delete", as the record store asks."""
        rights = self.record_rights(record)
        return {"view": rights.viewable, "edit": rights.editable, "delete": rights.deletable}[right]

    # ---- internals ----------------------------------------------------------------------------

    def _rights_in_app(self) -> dict[str, Any]:
        if self.caller.via_token:
            return {}
        for entry in _everyone_last(self._settings.app_acl, lambda entry: entry["entity"]):
            entity = entry["entity"]
            if entity["type"] == "CREATOR":
                if self._app_creator is not None and self.caller.user.code == self._app_creator:
                    return entry
            elif self._matches(entity, entry.get("includeSubs", False), None):
                return entry
        return {}

    def _compiled_rules(self) -> list[tuple[Callable[[StoredRecord], bool], list[dict[str, Any]]]]:
        rules = []
        compiler = QueryCompiler(self._settings.schema, self.caller.user, time.time())
        for rule in self._settings.record_acl:
            condition = rule.get("filterCond") or ""
            if condition.strip():
                try:
                    matches = compiler.compile(QueryParser(condition).parse()).predicate
                except KintoneError:  # a condition on a field the app no longer has matches nothing
                    continue
            else:
                matches = _every_record
            rules.append((matches, _everyone_last(rule["entities"], lambda entry: entry["entity"])))
        return rules

    def _rights_of_entities(self, entities: list[dict[str, Any]], record: StoredRecord) -> RecordRights:
        for entry in entities:
            if self._matches(entry["entity"], entry.get("includeSubs", False), record):
                return RecordRights(entry["viewable"], entry["editable"], entry["deletable"])
        return NO_RECORD_RIGHTS

    def _matches(self, entity: Mapping[str, Any], include_subs: bool, record: StoredRecord | None) -> bool:
        code, login = entity.get("code"), self.caller.user.code
        match entity.get("type"):
            case "USER":
                return code == login
            case "GROUP":
                return self._directory.in_group(login, code)
            case "ORGANIZATION":
                return self._directory.in_organization(login, code, include_subs=include_subs)
            case "FIELD_ENTITY" if record is not None:
                return login in self._users_in_field(code, record)
            case _:
                return False

    def _users_in_field(self, code: str, record: StoredRecord) -> set[str]:
        schema = self._settings.schema
        if code == schema.creator_code:
            return {record.creator.code}
        if code == schema.modifier_code:
            return {record.modifier.code}
        return {user["code"] for user in record.values.get(code) or [] if isinstance(user, dict)}


def _every_record(_record: Any) -> bool:
    return True
