"""A field's value as a request gives it, checked and turned into what the record store keeps."""

from __future__ import annotations

import decimal
from collections.abc import Callable
from typing import Any

from .errors import add_error
from .schema import FieldSpec
from .values import parse_datetime


def coerce_value(
    spec: FieldSpec,
    value: Any,
    prefix: str,
    errors: dict[str, list[str]],
    user_name: Callable[[str], str | None],
) -> Any:
    key = f"{prefix}.{spec.code}.value"
    if spec.type == "CHECK_BOX":
        return _coerce_check_box(spec, value, prefix, errors)
    if spec.type == "USER_SELECT":
        return _coerce_users(value, key, errors, user_name)
    if value is None or value == "":
        return spec.empty_value()
    if spec.type == "NUMBER":
        return _coerce_number(value, f"{prefix}[{spec.code}].value", errors)
    if spec.type == "DATETIME":
        return _coerce_datetime(value, key, errors)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        add_error(errors, key, "Must be a string.")
        return spec.empty_value()
    text = str(value)
    if spec.type == "DROP_DOWN" and text not in spec.options:
        add_error(errors, key, f'"{text}" is not one of the options.')
    return text


def _coerce_check_box(spec: FieldSpec, value: Any, prefix: str, errors: dict[str, list[str]]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        add_error(errors, f"{prefix}.{spec.code}.value", "Must be an array of option names.")
        return []
    for index, item in enumerate(value):
        if not isinstance(item, str) or item not in spec.options:
            add_error(
                errors, f"{prefix}.{spec.code}.values[{index}].value", f'"{item}" is not one of the options.'
            )
    return [item for item in value if isinstance(item, str)]


def _coerce_users(
    value: Any, key: str, errors: dict[str, list[str]], user_name: Callable[[str], str | None]
) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(item, dict) and isinstance(item.get("code"), str) for item in value
    ):
        add_error(errors, key, 'Must be an array of {"code": login name}.')
        return []
    users = []
    for item in value:
        name = user_name(item["code"])
        if name is None:
            add_error(errors, key, f"The user ({item['code']}) was not found.")
        else:
            users.append({"code": item["code"], "name": name})
    return users


def _coerce_datetime(value: Any, key: str, errors: dict[str, list[str]]) -> str:
    moment = parse_datetime(value) if isinstance(value, str) else None
    if moment is None:
        add_error(errors, key, "Give a date and time such as 2026-11-30T09:00:00Z.")
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M:00Z")  # kintone keeps date-times to the minute


def _coerce_number(value: Any, key: str, errors: dict[str, list[str]]) -> str:
    try:
        number = decimal.Decimal(str(value).strip())
    except decimal.InvalidOperation:
        number = None
    if isinstance(value, bool) or number is None or not number.is_finite():
        add_error(errors, key, "Only numbers are allowed.")
        return ""
    return str(number.normalize()) if number != number.to_integral_value() else str(int(number))
