"""Request parameters, read the way kintone reads them."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from .errors import KintoneError, invalid_param

MAX_WAIT_SECONDS = 120.0
DEFAULT_WAIT_SECONDS = 10.0


_ARRAY_KEY = re.compile(r"(\w+)\[(\d+)\]")


def request_params(query: str, body: bytes) -> dict[str, Any]:
    """kintone takes a GET's parameters from the query string or, as well, from a JSON body."""
    if body.strip():
        try:
            params = json.loads(body)
        except ValueError as error:
            raise KintoneError(400, "CB_IJ01", "The request body is not valid JSON.") from error
        if not isinstance(params, dict):
            raise KintoneError(400, "CB_IJ01", "The request body must be a JSON object.")
        return params
    return _query_params(query)


def _query_params(query: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    arrays: dict[str, dict[int, str]] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if match := _ARRAY_KEY.fullmatch(key):  # fields[0]=a&fields[1]=b
            arrays.setdefault(match[1], {})[int(match[2])] = value
        else:
            params[key] = value
    for name, items in arrays.items():
        params[name] = [items[index] for index in sorted(items)]
    return params


def json_object(body: bytes) -> dict[str, Any]:
    payload = json.loads(body) if body.strip() else {}
    if not isinstance(payload, dict):
        raise TypeError("the body must be a JSON object")
    return payload


def _int_value(value: Any, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise invalid_param(key, "Must be an integer.")


def int_param(params: Mapping[str, Any], name: str, key: str | None = None, minimum: int = 1) -> int:
    key = key or name
    value = params.get(name)
    if value is None or value == "":
        raise invalid_param(key, "Required field.")
    number = _int_value(value, key)
    if number < minimum:
        raise invalid_param(key, f"Must be {minimum} or more.")
    return number


def revision_param(value: Any, key: str) -> int | None:
    """The expected revision, or None where none is given or it is -1 (no check)."""
    if value is None or value == "":
        return None
    revision = _int_value(value, key)
    if revision == -1:
        return None
    if revision < 1:
        raise invalid_param(key, "Must be -1, or 1 or more.")
    return revision


def id_list(value: Any, key: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise invalid_param(key, "Required field.")
    return [_int_value(item, f"{key}[{index}]") for index, item in enumerate(value)]


def wait_seconds(query: Mapping[str, str]) -> float:
    try:
        seconds = float(query.get("timeout", DEFAULT_WAIT_SECONDS))
    except ValueError as error:
        raise ValueError("timeout must be a number of seconds") from error
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise ValueError(f"timeout must be between 0 and {MAX_WAIT_SECONDS:g} seconds")
    return seconds


def query_int(query: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    text = query.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"-?\d+", text):
        raise ValueError(f"{name} must be a whole number")
    return int(text)
