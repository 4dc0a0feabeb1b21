"""What the kintone app must hold, computed from the code and the team catalog.

Fields: the schema the functions read (`FIELD_CODES`), with the `team` and `models` options taken
from the catalog and the `status` options from the code. Record permissions: one rule per team (a
record naming the team is seen and edited by the team's organizations and groups), the record's
owner and the operators' group; a last rule for every other record leaves only the owner and the
operators. App permissions: everyone may add records; only the operators manage the app.

Models here use kintone's JSON names (camelCase) so the same objects parse what kintone answers and
build what is sent to it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from lambdas.domain.key_request import RecordStatus
from lambdas.domain.settings import FieldCodes

Language = Literal["ja", "en"]

# kintone's built-in group of every user.
EVERYONE = "everyone"


class _KintoneModel(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def as_kintone(self) -> dict[str, object]:
        return self.model_dump(by_alias=True)


class FieldSpec(BaseModel):
    """A field the app must have. Options are in display order."""

    model_config = ConfigDict(frozen=True)

    setting: str  # its FIELD_CODES key
    code: str
    type: str
    label: str
    options: tuple[str, ...] = ()

    def properties(self) -> dict[str, object]:
        """The field's settings as kintone's "add form fields" API takes them."""
        properties: dict[str, object] = {"type": self.type, "code": self.code, "label": self.label}
        if self.type in OPTION_TYPES:
            properties["options"] = options_property(self.options)
        if self.type == "CHECK_BOX":
            properties["align"] = "HORIZONTAL"
        if self.type == "USER_SELECT":
            # The user saving a new record is its owner unless they pick someone else.
            properties["defaultValue"] = [{"type": "FUNCTION", "code": "LOGINUSER()"}]
        return properties


OPTION_TYPES = frozenset({"DROP_DOWN", "CHECK_BOX"})


def options_property(options: tuple[str, ...]) -> dict[str, dict[str, str]]:
    return {label: {"label": label, "index": str(index)} for index, label in enumerate(options)}


class Entity(_KintoneModel):
    type: Literal["USER", "GROUP", "ORGANIZATION", "FIELD_ENTITY", "CREATOR"]
    code: str | None = None


class RecordRightEntity(_KintoneModel):
    entity: Entity
    viewable: bool = False
    editable: bool = False
    deletable: bool = False
    include_subs: bool = False


class RecordRight(_KintoneModel):
    """A record permission rule: for records matching `filter_cond` ("" = all), the first entity a
    user matches decides; a user matching none may do nothing."""

    filter_cond: str = ""
    entities: tuple[RecordRightEntity, ...]


class AppRight(_KintoneModel):
    entity: Entity
    include_subs: bool = False
    app_editable: bool = False
    record_viewable: bool = False
    record_addable: bool = False
    record_editable: bool = False
    record_deletable: bool = False
    record_importable: bool = False
    record_exportable: bool = False


class TeamMembersAccess(BaseModel):
    """Who belongs to a team, as the record permissions name them."""

    model_config = ConfigDict(frozen=True)

    team: str
    organizations: tuple[tuple[str, bool], ...] = ()  # (organization code, with its sub-organizations)
    groups: tuple[str, ...] = ()


class AppSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    fields: tuple[FieldSpec, ...]
    # Built-in fields the functions read (creator, modifier, updated time): FIELD_CODES key →
    # (code, kintone type).
    system_fields: dict[str, tuple[str, str]]
    record_rights: tuple[RecordRight, ...]
    app_rights: tuple[AppRight, ...]


class SpecError(ValueError):
    """The code defines a field code this module cannot give a type."""


# FieldCodes attribute → (kintone type, label in ja, label in en). Only the attributes FieldCodes
# defines are built; a FieldCodes attribute missing here is an error, never a silently absent field.
FIELD_TYPES: dict[str, tuple[str, str, str]] = {
    "key_name": ("SINGLE_LINE_TEXT", "キーの用途", "Key name"),
    "team": ("DROP_DOWN", "チーム", "Team"),
    "models": ("CHECK_BOX", "モデル", "Models"),
    "status": ("DROP_DOWN", "状態", "Status"),
    "api_key": ("SINGLE_LINE_TEXT", "APIキー", "API key"),
    "message": ("MULTI_LINE_TEXT", "メッセージ", "Message"),
    "owner": ("USER_SELECT", "キーの所有者", "Key owner"),
    "spend": ("NUMBER", "利用額", "Spend"),
    "max_budget": ("NUMBER", "予算上限", "Budget limit"),
    "budget_reset_at": ("DATETIME", "予算のリセット日時", "Budget reset at"),
}
SYSTEM_FIELD_TYPES = {"creator": "CREATOR", "modifier": "MODIFIER", "updated_time": "UPDATED_TIME"}
STATUS_OPTIONS = tuple(status.value for status in RecordStatus)


def app_spec(
    field_codes: FieldCodes,
    teams: tuple[TeamMembersAccess, ...],
    models: tuple[str, ...],
    operators_group: str,
    language: Language = "ja",
) -> AppSpec:
    """The desired app. `teams` in the catalog's order of names; `models` every model of the catalog."""
    codes = field_codes.model_dump()
    unknown = sorted(set(codes) - set(FIELD_TYPES) - set(SYSTEM_FIELD_TYPES))
    if unknown:
        raise SpecError(f"FIELD_CODES names {', '.join(unknown)}, which ops/app_spec.py gives no field type")
    options = {
        "team": tuple(team.team for team in teams),
        "models": tuple(sorted(set(models))),
        "status": STATUS_OPTIONS,
    }
    fields = tuple(
        FieldSpec(
            setting=name,
            code=code,
            type=FIELD_TYPES[name][0],
            label=FIELD_TYPES[name][1 if language == "ja" else 2],
            options=options.get(name, ()),
        )
        for name, code in codes.items()
        if name in FIELD_TYPES and code  # an empty code leaves an optional field out
    )
    system_fields = {name: (codes[name], kintone_type) for name, kintone_type in SYSTEM_FIELD_TYPES.items()}
    owner_code = codes.get("owner") or codes["creator"]
    return AppSpec(
        fields=fields,
        system_fields=system_fields,
        record_rights=record_rights(codes["team"], owner_code, teams, operators_group),
        app_rights=app_rights(operators_group),
    )


def record_rights(
    team_code: str, owner_code: str, teams: tuple[TeamMembersAccess, ...], operators_group: str
) -> tuple[RecordRight, ...]:
    # The owner first: within a rule the first entity a user matches decides, and only the owner
    # and the operators may delete (which revokes the key).
    owner = RecordRightEntity(
        entity=Entity(type="FIELD_ENTITY", code=owner_code), viewable=True, editable=True, deletable=True
    )
    operators = RecordRightEntity(
        entity=Entity(type="GROUP", code=operators_group), viewable=True, editable=True, deletable=True
    )
    rules = []
    for team in teams:
        members = [
            RecordRightEntity(
                entity=Entity(type="ORGANIZATION", code=code),
                viewable=True,
                editable=True,
                include_subs=include_subs,
            )
            for code, include_subs in team.organizations
        ]
        members += [
            RecordRightEntity(entity=Entity(type="GROUP", code=code), viewable=True, editable=True)
            for code in team.groups
        ]
        rules.append(
            RecordRight(filter_cond=f'{team_code} in ("{team.team}")', entities=(owner, operators, *members))
        )
    # Every other record (no team, a team no longer in the catalog): its owner and the operators only.
    rules.append(RecordRight(filter_cond="", entities=(owner, operators)))
    return tuple(rules)


def app_rights(operators_group: str) -> tuple[AppRight, ...]:
    """Operators manage the app; everyone else may add records and act on those the record
    permissions let them see (app and record permissions must both allow an action)."""
    operators = AppRight(
        entity=Entity(type="GROUP", code=operators_group),
        app_editable=True,
        record_viewable=True,
        record_addable=True,
        record_editable=True,
        record_deletable=True,
        record_importable=True,
        record_exportable=True,
    )
    # No import (a CSV import sends no webhook) and no export (keys stay on their records).
    everyone = AppRight(
        entity=Entity(type="GROUP", code=EVERYONE),
        record_viewable=True,
        record_addable=True,
        record_editable=True,
        record_deletable=True,
    )
    return operators, everyone
