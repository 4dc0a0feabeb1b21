"""Record times and field values, as kintone shows them."""

from __future__ import annotations

import datetime as dt
from typing import Any


def utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def minute_of(timestamp: float) -> dt.datetime:
    # kintone keeps record times to the minute: the API always answers ...:00Z.
    return utc(timestamp).replace(second=0, microsecond=0)


def format_minute(timestamp: float) -> str:
    return minute_of(timestamp).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_second(timestamp: float) -> str:
    return utc(timestamp).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_empty(value: Any) -> bool:
    return value is None or value in ("", [])


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


def copy_value(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value
