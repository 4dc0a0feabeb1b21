"""The difference between the app kintone holds and the app the code wants, as a plan of changes.

Plain Python on parsed settings: no HTTP here. The plan adds missing fields, sets the options of
option fields, replaces the record and app permissions where they differ, and says whether a deploy
is needed. It never deletes or retypes a field: a field of the wrong type is a mismatch, reported
with what to do, and a plan with mismatches is not applied.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ops.app_spec import OPTION_TYPES, AppRight, AppSpec, FieldSpec, RecordRight


class CurrentField(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    type: str
    options: tuple[str, ...] = ()  # in display order


class AppSettings(BaseModel):
    """What kintone answered for one side of the app (preview or live)."""

    model_config = ConfigDict(frozen=True)

    fields: dict[str, CurrentField]
    record_rights: tuple[RecordRight, ...]
    app_rights: tuple[AppRight, ...]
    revision: str = "-1"


class OptionUpdate(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: FieldSpec
    added: tuple[str, ...]
    removed: tuple[str, ...]

    def keeping_removed(self) -> FieldSpec:
        """The field with the new options and, for now, the removed ones: record permission rules
        name options, so the old rules must never name a missing option, nor the new rules one not
        yet there. Removed options go once the permissions are replaced."""
        return self.field.model_copy(update={"options": self.field.options + self.removed})


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)

    add_fields: tuple[FieldSpec, ...] = ()
    option_updates: tuple[OptionUpdate, ...] = ()
    record_rights: tuple[RecordRight, ...] | None = None  # None: already as wanted
    app_rights: tuple[AppRight, ...] | None = None
    mismatches: tuple[str, ...] = ()
    # The live app differs from what is wanted (changes waiting in the preview, or made by this plan).
    deploy: bool = False

    @property
    def writes_preview(self) -> bool:
        return bool(self.add_fields or self.option_updates) or (
            self.record_rights is not None or self.app_rights is not None
        )

    @property
    def changes_nothing(self) -> bool:
        return not self.writes_preview and not self.deploy and not self.mismatches


def settings_changes(spec: AppSpec, current: AppSettings) -> Plan:
    """What to write so that `current` becomes `spec` (deploy not decided here)."""
    additions: list[FieldSpec] = []
    updates: list[OptionUpdate] = []
    mismatches: list[str] = []
    for wanted in spec.fields:
        existing = current.fields.get(wanted.code)
        if existing is None:
            additions.append(wanted)
        elif existing.type != wanted.type:
            mismatches.append(_wrong_type(wanted, existing))
        elif wanted.type in OPTION_TYPES and existing.options != wanted.options:
            updates.append(
                OptionUpdate(
                    field=wanted,
                    added=tuple(option for option in wanted.options if option not in existing.options),
                    removed=tuple(option for option in existing.options if option not in wanted.options),
                )
            )
    for setting, (code, kintone_type) in spec.system_fields.items():
        existing = current.fields.get(code)
        if existing is None or existing.type != kintone_type:
            mismatches.append(_missing_system_field(setting, code, kintone_type, current))
    return Plan(
        add_fields=tuple(additions),
        option_updates=tuple(updates),
        record_rights=None if current.record_rights == spec.record_rights else spec.record_rights,
        app_rights=None if current.app_rights == spec.app_rights else spec.app_rights,
        mismatches=tuple(mismatches),
    )


def plan_changes(spec: AppSpec, preview: AppSettings, live: AppSettings) -> Plan:
    """Changes to the preview, and whether to deploy: when the plan writes anything, or when the
    live app still differs from what is wanted (a preview already right but never deployed)."""
    plan = settings_changes(spec, preview)
    live_differs = settings_changes(spec, live).writes_preview
    return plan.model_copy(update={"deploy": plan.writes_preview or live_differs})


def describe(plan: Plan) -> list[str]:
    """The plan in lines a person reads before (dry run) or while it is applied."""
    if plan.changes_nothing:
        return ["no change: the app already matches the code and the team catalog"]
    lines = [f"cannot apply: {mismatch}" for mismatch in plan.mismatches]
    lines += [f"add field {field.code} ({field.type}, label {field.label!r})" for field in plan.add_fields]
    for update in plan.option_updates:
        change = [f"+{option}" for option in update.added] + [f"-{option}" for option in update.removed]
        lines.append(
            f"set options of {update.field.code}: {', '.join(update.field.options)}"
            + (f" ({' '.join(change)})" if change else " (new order)")
        )
    if plan.record_rights is not None:
        lines.append("set record permissions:")
        lines += [f"  {line}" for line in _describe_record_rights(plan.record_rights)]
    if plan.app_rights is not None:
        lines.append("set app permissions:")
        lines += [f"  {line}" for line in _describe_app_rights(plan.app_rights)]
    if plan.deploy:
        lines.append(
            "deploy the app settings (this also deploys any other change waiting in the app's preview)"
        )
    return lines


def _describe_record_rights(rights: tuple[RecordRight, ...]) -> list[str]:
    lines = []
    for right in rights:
        who = []
        for item in right.entities:
            can = "".join(
                letter
                for letter, allowed in (("v", item.viewable), ("e", item.editable), ("d", item.deletable))
                if allowed
            )
            subs = "+subs" if item.include_subs else ""
            who.append(f"{item.entity.type.lower()}:{item.entity.code}{subs}={can or '-'}")
        lines.append(f"{right.filter_cond or 'every other record'}: {', '.join(who)}; nobody else")
    return lines


def _describe_app_rights(rights: tuple[AppRight, ...]) -> list[str]:
    lines = []
    for right in rights:
        allowed = [
            name
            for name, value in (
                ("manage app", right.app_editable),
                ("view", right.record_viewable),
                ("add", right.record_addable),
                ("edit", right.record_editable),
                ("delete", right.record_deletable),
                ("import", right.record_importable),
                ("export", right.record_exportable),
            )
            if value
        ]
        lines.append(f"{right.entity.type.lower()}:{right.entity.code}: {', '.join(allowed) or 'nothing'}")
    lines.append("nobody else")
    return lines


def _wrong_type(wanted: FieldSpec, existing: CurrentField) -> str:
    return (
        f"field {wanted.code!r} is {existing.type}, but FIELD_CODES.{wanted.setting} needs {wanted.type}. "
        "kintone cannot change a field's type and this command never deletes a field: in the app's form "
        f"settings change the existing field's code (for example to '{wanted.code}_old'), run this command "
        f"again to add {wanted.code!r} as {wanted.type} and copy the values over; or set "
        f"FIELD_CODES.{wanted.setting} to the code of a {wanted.type} field"
    )


def _missing_system_field(setting: str, code: str, kintone_type: str, current: AppSettings) -> str:
    found = sorted(field.code for field in current.fields.values() if field.type == kintone_type)
    where = f"the app's {kintone_type} field is {', '.join(map(repr, found))}" if found else "none found"
    return (
        f"FIELD_CODES.{setting} is {code!r}, which is not the app's {kintone_type} field ({where}): "
        f"set FIELD_CODES.{setting} to the code of the app's {kintone_type} field"
    )
