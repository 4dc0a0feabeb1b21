"""The app's schema: its fields and the codes of its system fields."""

from __future__ import annotations

import dataclasses
from typing import Any

FIELD_TYPES = frozenset({"SINGLE_LINE_TEXT", "MULTI_LINE_TEXT", "NUMBER", "DROP_DOWN", "CHECK_BOX"})


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
    ),
)
