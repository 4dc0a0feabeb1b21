"""The app's schema: its fields and the codes of its system fields, and their form-field JSON."""

from __future__ import annotations

import dataclasses
from typing import Any

FIELD_TYPES = frozenset(
    {"SINGLE_LINE_TEXT", "MULTI_LINE_TEXT", "NUMBER", "DROP_DOWN", "CHECK_BOX", "USER_SELECT", "DATETIME"}
)
LIST_TYPES = frozenset({"CHECK_BOX", "USER_SELECT"})  # fields whose value is an array
WITH_OPTIONS = frozenset({"DROP_DOWN", "CHECK_BOX"})
# What kintone's form-field API shows for each type beyond type, code, label, noLabel and required.
_TYPE_PROPERTIES: dict[str, dict[str, Any]] = {
    "SINGLE_LINE_TEXT": {
        "unique": False,
        "maxLength": "",
        "minLength": "",
        "defaultValue": "",
        "expression": "",
        "hideExpression": False,
    },
    "MULTI_LINE_TEXT": {"defaultValue": ""},
    "NUMBER": {
        "unique": False,
        "maxValue": "",
        "minValue": "",
        "defaultValue": "",
        "digit": False,
        "displayScale": "",
        "unit": "",
        "unitPosition": "BEFORE",
    },
    "DROP_DOWN": {"defaultValue": ""},
    "CHECK_BOX": {"defaultValue": [], "align": "HORIZONTAL"},
    "USER_SELECT": {"defaultValue": [], "entities": []},
    "DATETIME": {"unique": False, "defaultValue": "", "defaultNowValue": False},
}


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    code: str
    type: str
    options: tuple[str, ...] = ()
    required: bool = False
    default: str | tuple[str, ...] | None = None  # the value of a new record that does not set the field
    label: str = ""

    def empty_value(self) -> Any:
        if self.type in LIST_TYPES:
            return []
        if self.type == "DROP_DOWN":
            return None  # an unselected drop-down reads as null, not ""
        return ""

    def initial_value(self) -> Any:
        if self.default is None:
            return self.empty_value()
        return list(self.default) if self.type == "CHECK_BOX" else self.default

    def properties_json(self) -> dict[str, Any]:
        """The field as ``GET /k/v1/app/form/fields.json`` shows it."""
        properties: dict[str, Any] = {
            "type": self.type,
            "code": self.code,
            "label": self.label or self.code,
            "noLabel": False,
            "required": self.required,
            **_TYPE_PROPERTIES[self.type],
        }
        if self.default is not None:
            properties["defaultValue"] = list(self.default) if self.type == "CHECK_BOX" else self.default
        if self.type in WITH_OPTIONS:
            properties["options"] = {
                option: {"label": option, "index": str(index)} for index, option in enumerate(self.options)
            }
        return properties

    @classmethod
    def from_properties(cls, properties: dict[str, Any]) -> FieldSpec:
        """A field from its form-field JSON (already checked by the settings API)."""
        options = properties.get("options") or {}
        ordered = sorted(options.items(), key=lambda item: int(item[1].get("index", 0)))
        default = properties.get("defaultValue")
        if isinstance(default, list):
            default = tuple(default) if default else None
        elif default == "":
            default = None
        return cls(
            code=properties["code"],
            type=properties["type"],
            options=tuple(name for name, _ in ordered),
            required=properties.get("required") in (True, "true"),
            default=default if properties["type"] != "USER_SELECT" else None,
            label=properties.get("label") or "",
        )


@dataclasses.dataclass(frozen=True)
class AppSchema:
    name: str
    title_field: str | None  # the field a record's title comes from; None: the first text field
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
        if self.title_field is not None and self.field(self.title_field) is None:
            raise ValueError(f"title field {self.title_field!r} is not a field of the app")

    def field(self, code: str) -> FieldSpec | None:
        return next((spec for spec in self.fields if spec.code == code), None)

    def title_code(self) -> str | None:
        if self.title_field is not None and self.field(self.title_field) is not None:
            return self.title_field
        return next((spec.code for spec in self.fields if spec.type == "SINGLE_LINE_TEXT"), None)

    def with_fields(self, fields: tuple[FieldSpec, ...]) -> AppSchema:
        return dataclasses.replace(self, fields=fields)

    def properties_json(self) -> dict[str, dict[str, Any]]:
        """Every field, the system fields too, as the form-field API shows them."""
        properties = {
            code: {"type": field_type, "code": code, "label": code, "noLabel": False}
            for code, field_type in self.system_field_types().items()
        }
        properties.update({spec.code: spec.properties_json() for spec in self.fields})
        return properties

    def system_field_types(self) -> dict[str, str]:
        return {
            self.record_number_code: "RECORD_NUMBER",
            self.creator_code: "CREATOR",
            self.modifier_code: "MODIFIER",
            self.created_time_code: "CREATED_TIME",
            self.updated_time_code: "UPDATED_TIME",
        }


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
        FieldSpec("owner", "USER_SELECT"),
        FieldSpec("spend", "NUMBER"),
        FieldSpec("max_budget", "NUMBER"),
        FieldSpec("budget_reset_at", "DATETIME"),
    ),
)
# An app with no fields of its own yet, for the app command to set up.
EMPTY_SCHEMA = AppSchema(name="LiteLLM API keys", title_field=None, fields=())
