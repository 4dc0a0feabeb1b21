"""The app's settings: form fields, record and app permissions, in a preview and a live version.

Changes go to the preview (``/k/v1/preview/...``) and reach the live app when deployed
(``POST /k/v1/preview/app/deploy.json``), which runs for ``deploy_seconds`` (PROCESSING) and then
ends SUCCESS, or FAIL when the emulator is told to fail the next one. A live ``PUT`` of record or app
permissions applies at once and deploys every pending preview change with it, as kintone documents.
Every preview change bumps the app's settings revision; the live revision is the deployed one.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .directory import API_TOKEN_USER
from .errors import KintoneError, add_error, invalid_input, invalid_param
from .query import QueryCompiler, QueryParser
from .schema import FIELD_TYPES, WITH_OPTIONS, AppSchema, FieldSpec

RECORD_ENTITY_TYPES = ("USER", "GROUP", "ORGANIZATION", "FIELD_ENTITY")
APP_ENTITY_TYPES = ("USER", "GROUP", "ORGANIZATION", "CREATOR")
RECORD_RIGHTS = ("viewable", "editable", "deletable")
APP_RIGHTS = (
    "appEditable",
    "recordViewable",
    "recordAddable",
    "recordEditable",
    "recordDeletable",
    "recordImportable",
    "recordExportable",
)
FIELD_ENTITY_TYPES = frozenset({"CREATOR", "MODIFIER", "USER_SELECT"})
DEFAULT_DEPLOY_SECONDS = 0.1

# A new app: its creator may do everything, every other user may work with records.
DEFAULT_APP_ACL: tuple[dict[str, Any], ...] = (
    {"entity": {"type": "CREATOR", "code": None}, "includeSubs": False, **dict.fromkeys(APP_RIGHTS, True)},
    {
        "entity": {"type": "GROUP", "code": "everyone"},
        "includeSubs": False,
        **dict.fromkeys(APP_RIGHTS, True),
        "appEditable": False,
    },
)


@dataclasses.dataclass
class Settings:
    schema: AppSchema
    record_acl: list[dict[str, Any]]
    app_acl: list[dict[str, Any]]

    def copy(self) -> Settings:
        return Settings(self.schema, copy.deepcopy(self.record_acl), copy.deepcopy(self.app_acl))


def _flag(value: Any, key: str, errors: dict[str, list[str]]) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    add_error(errors, key, "Must be true or false.")
    return False


class AppSettings:
    def __init__(self, schema: AppSchema, *, on_deploy: Callable[[AppSchema], None]) -> None:
        self._lock = threading.Lock()
        self._live = Settings(schema, [], [dict(right) for right in copy.deepcopy(DEFAULT_APP_ACL)])
        self._preview = self._live.copy()
        self._revision = 1
        self._live_revision = 1
        self._on_deploy = on_deploy
        self._deploy_status = "SUCCESS"
        self._deploy_started_at = 0.0
        self._deploying: tuple[Settings, int] | None = None
        self.deploy_seconds = DEFAULT_DEPLOY_SECONDS
        self.fail_next_deploy = False

    # ---- what permission checks and record validation read ---------------------------------------

    def live(self) -> Settings:
        with self._lock:
            self._settle()
            return self._live.copy()

    # ---- form fields ------------------------------------------------------------------------------

    def fields_json(self, *, preview: bool) -> dict[str, Any]:
        with self._lock:
            self._settle()
            settings, revision = self._version(preview)
            return {"properties": settings.schema.properties_json(), "revision": str(revision)}

    def add_fields(self, properties: Any, revision: int | None) -> dict[str, str]:
        with self._lock:
            self._settle()
            self._check_revision(revision)
            specs = self._checked_properties(properties, adding=True)
            schema = self._preview.schema
            self._preview.schema = schema.with_fields(schema.fields + tuple(specs))
            return self._bumped()

    def update_fields(self, properties: Any, revision: int | None) -> dict[str, str]:
        with self._lock:
            self._settle()
            self._check_revision(revision)
            specs = {spec.code: spec for spec in self._checked_properties(properties, adding=False)}
            schema = self._preview.schema
            self._preview.schema = schema.with_fields(tuple(specs.get(s.code, s) for s in schema.fields))
            return self._bumped()

    # ---- permissions ------------------------------------------------------------------------------

    def record_acl_json(self, *, preview: bool) -> dict[str, Any]:
        with self._lock:
            self._settle()
            settings, revision = self._version(preview)
            return {"rights": copy.deepcopy(settings.record_acl), "revision": str(revision)}

    def app_acl_json(self, *, preview: bool) -> dict[str, Any]:
        with self._lock:
            self._settle()
            settings, revision = self._version(preview)
            return {"rights": copy.deepcopy(settings.app_acl), "revision": str(revision)}

    def set_record_acl(self, rights: Any, revision: int | None, *, live: bool) -> dict[str, str]:
        with self._lock:
            self._settle()
            self._check_revision(revision)
            self._preview.record_acl = self._checked_record_rights(rights, self._preview.schema)
            answer = self._bumped()
            if live:
                self._apply(self._preview.copy(), self._revision)
            return answer

    def set_app_acl(self, rights: Any, revision: int | None, *, live: bool) -> dict[str, str]:
        with self._lock:
            self._settle()
            self._check_revision(revision)
            self._preview.app_acl = self._checked_app_rights(rights)
            answer = self._bumped()
            if live:
                self._apply(self._preview.copy(), self._revision)
            return answer

    # ---- deploy -----------------------------------------------------------------------------------

    def deploy(self, revision: int | None, *, revert: bool) -> None:
        with self._lock:
            self._settle()
            if self._deploying is not None:
                raise KintoneError(
                    409, "EMULATOR_DEPLOY_RUNNING", "A deploy of this app is still running; wait for it."
                )
            self._check_revision(revision)
            if revert:  # kintone's "discard changes": the preview goes back to the live settings
                self._preview = self._live.copy()
                self._revision = self._live_revision
                return
            self._deploying = (self._preview.copy(), self._revision)
            self._deploy_status = "PROCESSING"
            self._deploy_started_at = time.monotonic()
            self._settle()

    def deploy_status(self) -> str:
        with self._lock:
            self._settle()
            return self._deploy_status

    # ---- internals (the caller holds the lock) ------------------------------------------------------

    def _settle(self) -> None:
        if self._deploying is None or time.monotonic() - self._deploy_started_at < self.deploy_seconds:
            return
        settings, revision = self._deploying
        self._deploying = None
        if self.fail_next_deploy:
            self.fail_next_deploy = False
            self._deploy_status = "FAIL"
            return
        self._apply(settings, revision)
        self._deploy_status = "SUCCESS"

    def _apply(self, settings: Settings, revision: int) -> None:
        self._live = settings
        self._live_revision = revision
        self._on_deploy(settings.schema)

    def _version(self, preview: bool) -> tuple[Settings, int]:
        return (self._preview, self._revision) if preview else (self._live, self._live_revision)

    def _bumped(self) -> dict[str, str]:
        self._revision += 1
        return {"revision": str(self._revision)}

    def _check_revision(self, revision: int | None) -> None:
        if revision is not None and revision != self._revision:
            raise KintoneError(
                409, "GAIA_CO02", "The revision is not the latest; someone else changed the app."
            )

    def _checked_properties(self, properties: Any, *, adding: bool) -> list[FieldSpec]:
        if not isinstance(properties, dict) or not properties:
            raise invalid_param("properties", "Required field.")
        schema = self._preview.schema
        system_codes = set(schema.system_field_types())
        errors: dict[str, list[str]] = {}
        specs = []
        for code, given in properties.items():
            key = f"properties[{code}]"
            if not isinstance(given, dict):
                add_error(errors, key, "Must be an object.")
                continue
            existing = schema.field(code)
            if adding and (existing is not None or code in system_codes):
                add_error(errors, f"{key}.code", "The field code is already in use.")
                continue
            if not adding and existing is None:
                add_error(errors, f"{key}.code", "The app has no field with this code.")
                continue
            field_type = given.get("type", existing.type if existing else None)
            if existing is not None and field_type != existing.type:
                add_error(errors, f"{key}.type", "The type of an existing field cannot be changed.")
                continue
            if field_type not in FIELD_TYPES:
                add_error(
                    errors, f"{key}.type", f"The emulator supports only {', '.join(sorted(FIELD_TYPES))}."
                )
                continue
            if given.get("code", code) != code:
                add_error(errors, f"{key}.code", "Must equal the property's key.")
                continue
            merged = {
                **(existing.properties_json() if existing else {}),
                **given,
                "type": field_type,
                "code": code,
            }
            if field_type in WITH_OPTIONS:
                options = merged.get("options")
                if (
                    not isinstance(options, dict)
                    or not options
                    or not all(isinstance(option, dict) for option in options.values())
                ):
                    add_error(errors, f"{key}.options", "Give at least one option.")
                    continue
            specs.append(FieldSpec.from_properties(merged))
        if errors:
            raise invalid_input(errors)
        return specs

    def _checked_record_rights(self, rights: Any, schema: AppSchema) -> list[dict[str, Any]]:
        if not isinstance(rights, list):
            raise invalid_param("rights", "Required field.")
        errors: dict[str, list[str]] = {}
        checked = []
        for index, right in enumerate(rights):
            key = f"rights[{index}]"
            if not isinstance(right, dict) or not isinstance(right.get("entities"), list):
                add_error(errors, f"{key}.entities", "Required field.")
                continue
            filter_cond = right.get("filterCond") or ""
            if not isinstance(filter_cond, str) or not _valid_filter(filter_cond, schema):
                add_error(
                    errors, f"{key}.filterCond", "The condition is not a valid query of the app's fields."
                )
            entities = []
            for entity_index, entry in enumerate(right["entities"]):
                entity_key = f"{key}.entities[{entity_index}]"
                entity = self._checked_entity(entry, entity_key, RECORD_ENTITY_TYPES, errors)
                if entity is None:
                    continue
                if entity["type"] == "FIELD_ENTITY":
                    spec_type = _field_type(schema, entity["code"])
                    if spec_type not in FIELD_ENTITY_TYPES:
                        add_error(errors, f"{entity_key}.entity.code", "Give a user field of the app.")
                flags = {
                    name: _flag(entry.get(name), f"{entity_key}.{name}", errors) for name in RECORD_RIGHTS
                }
                if (flags["editable"] or flags["deletable"]) and not flags["viewable"]:
                    add_error(errors, f"{entity_key}.viewable", "Editing or deleting needs viewing too.")
                include_subs = _flag(entry.get("includeSubs"), f"{entity_key}.includeSubs", errors)
                entities.append({"entity": entity, **flags, "includeSubs": include_subs})
            checked.append({"filterCond": filter_cond, "entities": entities})
        if errors:
            raise invalid_input(errors)
        return checked

    def _checked_app_rights(self, rights: Any) -> list[dict[str, Any]]:
        if not isinstance(rights, list):
            raise invalid_param("rights", "Required field.")
        errors: dict[str, list[str]] = {}
        checked = []
        for index, entry in enumerate(rights):
            key = f"rights[{index}]"
            entity = self._checked_entity(entry, key, APP_ENTITY_TYPES, errors)
            if entity is None:
                continue
            flags = {name: _flag(entry.get(name), f"{key}.{name}", errors) for name in APP_RIGHTS}
            if (flags["recordEditable"] or flags["recordDeletable"]) and not flags["recordViewable"]:
                add_error(errors, f"{key}.recordViewable", "Editing or deleting records needs viewing too.")
            if flags["recordImportable"] and not flags["recordAddable"]:
                add_error(errors, f"{key}.recordAddable", "Importing needs adding too.")
            include_subs = _flag(entry.get("includeSubs"), f"{key}.includeSubs", errors)
            checked.append({"entity": entity, "includeSubs": include_subs, **flags})
        if errors:
            raise invalid_input(errors)
        return checked

    @staticmethod
    def _checked_entity(
        entry: Any, key: str, types: Sequence[str], errors: dict[str, list[str]]
    ) -> dict[str, Any] | None:
        entity = entry.get("entity") if isinstance(entry, Mapping) else None
        if not isinstance(entity, Mapping) or entity.get("type") not in types:
            add_error(errors, f"{key}.entity.type", f"Must be one of {', '.join(types)}.")
            return None
        code = entity.get("code")
        if entity["type"] == "CREATOR":
            return {"type": "CREATOR", "code": None}
        if not isinstance(code, str) or not code:
            add_error(errors, f"{key}.entity.code", "Required field.")
            return None
        return {"type": entity["type"], "code": code}


def _field_type(schema: AppSchema, code: str) -> str | None:
    spec = schema.field(code)
    return spec.type if spec is not None else schema.system_field_types().get(code)


def _valid_filter(filter_cond: str, schema: AppSchema) -> bool:
    if not filter_cond.strip():
        return True
    try:
        query = QueryParser(filter_cond).parse()
        if query.order_by or query.limit is not None or query.offset is not None:
            return False
        QueryCompiler(schema, API_TOKEN_USER, time.time()).compile(query)
    except KintoneError:  # the parser's and compiler's way of saying the query is not valid
        return False
    return True
