"""The kintone app command's desired state and plan: plain Python, no kintone."""

from __future__ import annotations

import pytest

from lambdas.domain.settings import FieldCodes
from ops.app_plan import AppSettings, CurrentField, describe, plan_changes, settings_changes
from ops.app_spec import (
    EVERYONE,
    STATUS_OPTIONS,
    AppRight,
    AppSpec,
    Entity,
    RecordRight,
    SpecError,
    TeamMembersAccess,
    app_spec,
)

TEAMS = (
    TeamMembersAccess(team="platform", organizations=(("platform", True),)),
    TeamMembersAccess(team="research", organizations=(("research", False),), groups=("lab",)),
)
MODELS = ("other-model", "fake-gpt", "fake-gpt", "priced-gpt")

# What kintone gives a new app: its built-in fields only, the app creator and everyone with all rights.
NEW_APP_FIELDS = {
    "レコード番号": CurrentField(code="レコード番号", type="RECORD_NUMBER"),
    "作成者": CurrentField(code="作成者", type="CREATOR"),
    "作成日時": CurrentField(code="作成日時", type="CREATED_TIME"),
    "更新者": CurrentField(code="更新者", type="MODIFIER"),
    "更新日時": CurrentField(code="更新日時", type="UPDATED_TIME"),
}


def spec(**overrides) -> AppSpec:
    arguments = {
        "field_codes": FieldCodes(),
        "teams": TEAMS,
        "models": MODELS,
        "operators_group": "llm-operators",
        "language": "ja",
    } | overrides
    return app_spec(**arguments)


def new_app() -> AppSettings:
    return AppSettings(
        fields=NEW_APP_FIELDS,
        record_rights=(),
        app_rights=(
            AppRight(entity=Entity(type="CREATOR"), app_editable=True, record_viewable=True),
            AppRight(entity=Entity(type="GROUP", code=EVERYONE), record_viewable=True, record_addable=True),
        ),
        revision="3",
    )


def as_built(wanted: AppSpec) -> AppSettings:
    """The app after the plan was applied: every wanted field, the wanted permissions."""
    fields = dict(NEW_APP_FIELDS)
    for field in wanted.fields:
        fields[field.code] = CurrentField(code=field.code, type=field.type, options=field.options)
    return AppSettings(fields=fields, record_rights=wanted.record_rights, app_rights=wanted.app_rights)


def test_every_field_code_setting_has_a_type() -> None:
    codes = FieldCodes().model_dump()
    wanted = spec()
    built = {field.setting for field in wanted.fields} | set(wanted.system_fields)
    assert built == {name for name, code in codes.items() if code}


def test_fields_and_options_come_from_code_and_catalog() -> None:
    fields = {field.setting: field for field in spec().fields}
    assert fields["key_name"].type == "SINGLE_LINE_TEXT"
    assert fields["message"].type == "MULTI_LINE_TEXT"
    assert fields["api_key"].type == "SINGLE_LINE_TEXT"
    assert (fields["team"].type, fields["team"].options) == ("DROP_DOWN", ("platform", "research"))
    assert (fields["models"].type, fields["models"].options) == (
        "CHECK_BOX",
        ("fake-gpt", "other-model", "priced-gpt"),
    )
    assert (fields["status"].type, fields["status"].options) == ("DROP_DOWN", STATUS_OPTIONS)
    assert {"Pending", "Issued", "Failed", "Revoked", "Revoke", "Rotate"} == set(STATUS_OPTIONS)


def test_field_properties_are_kintones_shape() -> None:
    fields = {field.setting: field for field in spec(language="en").fields}
    assert fields["team"].properties() == {
        "type": "DROP_DOWN",
        "code": "team",
        "label": "Team",
        "options": {
            "platform": {"label": "platform", "index": "0"},
            "research": {"label": "research", "index": "1"},
        },
    }
    assert fields["key_name"].properties() == {
        "type": "SINGLE_LINE_TEXT",
        "code": "key_name",
        "label": "Key name",
    }


def test_custom_field_codes_are_used() -> None:
    wanted = spec(field_codes=FieldCodes(team="チーム名", creator="Created_by"))
    assert "チーム名" in {field.code for field in wanted.fields}
    assert wanted.system_fields["creator"] == ("Created_by", "CREATOR")
    assert wanted.record_rights[0].filter_cond == 'チーム名 in ("platform")'


def test_a_field_code_setting_without_a_type_is_an_error() -> None:
    class MoreCodes(FieldCodes):
        colour: str = "colour"

    with pytest.raises(SpecError, match="colour"):
        spec(field_codes=MoreCodes())


def test_record_rights_one_rule_per_team_then_owner_and_operators_only() -> None:
    rules = spec().record_rights
    assert [rule.filter_cond for rule in rules] == ['team in ("platform")', 'team in ("research")', ""]
    owner_code = FieldCodes().model_dump().get("owner") or FieldCodes().creator
    for rule in rules:
        owner, operators = rule.entities[:2]
        assert (owner.entity.type, owner.entity.code) == ("FIELD_ENTITY", owner_code)
        assert (owner.viewable, owner.editable, owner.deletable) == (True, True, True)
        assert (operators.entity.type, operators.entity.code) == ("GROUP", "llm-operators")
        assert all(item.entity.code != EVERYONE for item in rule.entities)
    platform_members = rules[0].entities[2:]
    assert [(m.entity.type, m.entity.code, m.include_subs) for m in platform_members] == [
        ("ORGANIZATION", "platform", True)
    ]
    research_members = rules[1].entities[2:]
    assert [(m.entity.type, m.entity.code, m.include_subs) for m in research_members] == [
        ("ORGANIZATION", "research", False),
        ("GROUP", "lab", False),
    ]
    assert all(m.viewable and m.editable and not m.deletable for m in (*platform_members, *research_members))
    assert rules[-1].entities == rules[0].entities[:2]


def test_record_rights_serialise_as_kintone_names_them() -> None:
    rule = spec().record_rights[0].as_kintone()
    assert rule["filterCond"] == 'team in ("platform")'
    assert rule["entities"][2] == {
        "entity": {"type": "ORGANIZATION", "code": "platform"},
        "viewable": True,
        "editable": True,
        "deletable": False,
        "includeSubs": True,
    }
    parsed = RecordRight.model_validate(rule)
    assert parsed == spec().record_rights[0]


def test_app_rights_everyone_adds_only_operators_manage() -> None:
    operators, everyone = spec().app_rights
    assert (operators.entity.code, operators.app_editable) == ("llm-operators", True)
    assert everyone.entity.code == EVERYONE
    assert everyone.record_addable and everyone.record_viewable and everyone.record_editable
    assert not everyone.app_editable and not everyone.record_importable and not everyone.record_exportable


def test_empty_app_gets_everything() -> None:
    wanted = spec()
    plan = plan_changes(wanted, new_app(), new_app())
    assert {field.code for field in plan.add_fields} == {field.code for field in wanted.fields}
    assert plan.record_rights == wanted.record_rights
    assert plan.app_rights == wanted.app_rights
    assert plan.deploy and not plan.mismatches and not plan.changes_nothing
    text = "\n".join(describe(plan))
    assert "add field team (DROP_DOWN" in text
    assert "deploy" in text


def test_built_app_changes_nothing() -> None:
    wanted = spec()
    plan = plan_changes(wanted, as_built(wanted), as_built(wanted))
    assert plan.changes_nothing
    assert describe(plan) == ["no change: the app already matches the code and the team catalog"]


def test_preview_right_but_never_deployed_only_deploys() -> None:
    wanted = spec()
    plan = plan_changes(wanted, as_built(wanted), new_app())
    assert not plan.writes_preview and plan.deploy


def test_catalog_change_updates_options_and_rights_only() -> None:
    before = spec()
    after = spec(teams=(*TEAMS, TeamMembersAccess(team="sales", groups=("sales-team",))))
    plan = plan_changes(after, as_built(before), as_built(before))
    assert plan.add_fields == ()
    [update] = plan.option_updates
    assert (update.field.code, update.added, update.removed) == ("team", ("sales",), ())
    assert plan.record_rights == after.record_rights and plan.app_rights is None
    assert "set options of team: platform, research, sales (+sales)" in describe(plan)


def test_removed_team_is_shown_as_removed_option() -> None:
    before = spec()
    after = spec(teams=TEAMS[:1])
    [update] = plan_changes(after, as_built(before), as_built(before)).option_updates
    assert update.removed == ("research",)


def test_wrong_type_is_a_mismatch_never_a_replacement() -> None:
    wanted = spec()
    current = as_built(wanted)
    fields = dict(current.fields)
    fields["team"] = CurrentField(code="team", type="SINGLE_LINE_TEXT")
    plan = settings_changes(wanted, current.model_copy(update={"fields": fields}))
    assert plan.add_fields == () and plan.option_updates == ()
    [mismatch] = plan.mismatches
    assert "'team' is SINGLE_LINE_TEXT" in mismatch and "DROP_DOWN" in mismatch
    assert "change the existing field's code" in mismatch
    assert not plan.changes_nothing
    assert describe(plan)[0].startswith("cannot apply: field 'team'")


def test_missing_system_field_names_the_one_to_use() -> None:
    wanted = spec()
    current = as_built(wanted)
    fields = {code: field for code, field in current.fields.items() if code != "作成者"}
    fields["Created_by"] = CurrentField(code="Created_by", type="CREATOR")
    plan = settings_changes(wanted, current.model_copy(update={"fields": fields}))
    [mismatch] = plan.mismatches
    assert "FIELD_CODES.creator" in mismatch and "'Created_by'" in mismatch


def test_extra_app_permission_is_removed() -> None:
    wanted = spec()
    current = as_built(wanted)
    extra = (*wanted.app_rights, *new_app().app_rights[:1])
    plan = settings_changes(wanted, current.model_copy(update={"app_rights": extra}))
    assert plan.app_rights == wanted.app_rights
