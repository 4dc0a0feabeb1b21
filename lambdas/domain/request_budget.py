"""kintone's daily request budget: 10,000 REST requests per app a day on the Standard course.

Requests past it are not refused, but the store administrator is warned and cybozu may step in, so
the pipeline counts its own requests per app and kintone day (from 9:00 JST, i.e. 00:00 UTC) and an
alarm fires at a share of the budget.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Protocol


def kintone_day(timestamp: float) -> str:
    """kintone's day starts at 9:00 JST, which is 00:00 UTC: the UTC date."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date().isoformat()


class RequestTally(Protocol):
    def add(self, app_id: str, day: str, count: int) -> int:
        """Add `count` requests to the app's day; returns the day's total so far (all processes)."""
        ...


class RequestMeter:
    """This process's kintone requests not yet added to the shared tally."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._pending: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()

    def record(self, app_id: str) -> None:
        with self._lock:
            self._pending[(app_id, kintone_day(self._clock()))] += 1

    def publish(self, tally: RequestTally) -> dict[tuple[str, str], tuple[int, int]]:
        """Add what is pending to the tally; returns (app, day) → (requests added, day's total).

        What the tally could not take stays pending for the next call.
        """
        with self._lock:
            pending, self._pending = self._pending, collections.Counter()
        published: dict[tuple[str, str], tuple[int, int]] = {}
        try:
            for (app_id, day), count in pending.items():
                published[(app_id, day)] = (count, tally.add(app_id, day, count))
        finally:
            unpublished = {key: count for key, count in pending.items() if key not in published}
            with self._lock:
                self._pending.update(unpublished)
        return published
