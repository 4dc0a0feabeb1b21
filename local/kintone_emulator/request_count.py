"""kintone's daily request count per app, as cybozu counts it against the app's budget.

kintone's day starts at 9:00 JST, which is 00:00 UTC, so a day is a UTC date.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Callable


def kintone_day(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date().isoformat()


class RequestCounter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()

    def record(self, app: str) -> None:
        with self._lock:
            self._counts[(app, kintone_day(self._clock()))] += 1

    def count(self, app: str, day: str | None = None) -> int:
        with self._lock:
            return self._counts[(app, day or kintone_day(self._clock()))]

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
