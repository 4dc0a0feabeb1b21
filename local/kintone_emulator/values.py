"""Record times and field values, as kintone shows them."""

from __future__ import annotations

import datetime as dt
import re
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
    if isinstance(value, list):
        return [dict(item) if isinstance(item, dict) else item for item in value]
    return value


_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})")


def parse_datetime(text: str) -> dt.datetime | None:
    """An ISO 8601 date-time with a zone (``Z`` or ``+09:00``), in UTC; None if it is not one."""
    match = _DATETIME.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    offset = dt.timedelta(0)
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    try:
        moment = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=dt.UTC
        )
    except ValueError:  # a date that does not exist
        return None
    return moment - offset
