"""How many REST requests the emulator received, per app and per kintone day.

kintone's daily limit (10,000 requests per app on the Standard course) counts from 09:00 JST, which
is 00:00 UTC: a kintone day is a UTC date. Every ``/k/v1/`` request that names an app is counted,
whatever its answer (an error or an injected fault too), except those refused by the concurrency
limit; kintone's list of uncounted APIs is not applied. User API requests are counted on their own.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Mapping
from typing import Any

JST = dt.timezone(dt.timedelta(hours=9))


def kintone_day(timestamp: float) -> str:
    """The kintone day a moment falls in, named by its first date: 09:00 JST to 09:00 JST."""
    return (dt.datetime.fromtimestamp(timestamp, JST) - dt.timedelta(hours=9)).date().isoformat()


def app_of(params: Mapping[str, Any]) -> str | None:
    """The app a kintone request names: ``app``, ``id`` (the permission APIs) or ``apps[0]`` (deploy)."""
    for value in (params.get("app"), params.get("id")):
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    apps = params.get("apps")
    if isinstance(apps, list) and apps:
        first = apps[0].get("app") if isinstance(apps[0], dict) else apps[0]
        return str(first) if isinstance(first, str | int) and not isinstance(first, bool) else None
    return None


def requests_by_api(counts: Mapping[str, Any], app_id: str, day: str) -> dict[str, int]:
    """From `RequestCounter.as_json()` (or `GET /_emulator/requests`): one app's requests on one
    kintone day, per API."""
    return dict(counts["apps"].get(app_id, {}).get(day, {}).get("by_api", {}))


class RequestCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._apps: dict[tuple[str, str], collections.Counter[str]] = {}  # (app, day) -> API -> count
        self._user_api: collections.Counter[str] = collections.Counter()  # day -> count

    def count_kintone(self, app: str, api: str, now: float | None = None) -> None:
        day = kintone_day(time.time() if now is None else now)
        with self._lock:
            self._apps.setdefault((app, day), collections.Counter())[api] += 1

    def count_user_api(self, now: float | None = None) -> None:
        with self._lock:
            self._user_api[kintone_day(time.time() if now is None else now)] += 1

    def as_json(self) -> dict[str, Any]:
        """``{"apps": {app: {day: {"total", "by_api": {"GET /k/v1/record.json": n}}}},
        "user_api": {day: n}}``; a day is named by its date in JST."""
        with self._lock:
            apps: dict[str, dict[str, Any]] = {}
            for (app, day), by_api in sorted(self._apps.items()):
                apps.setdefault(app, {})[day] = {"total": sum(by_api.values()), "by_api": dict(by_api)}
            return {"apps": apps, "user_api": dict(sorted(self._user_api.items()))}

    def reset(self) -> None:
        with self._lock:
            self._apps.clear()
            self._user_api.clear()
