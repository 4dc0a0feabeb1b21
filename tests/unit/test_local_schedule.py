"""The local EventBridge stand-in fires its function on its interval and stops when asked."""

from __future__ import annotations

import threading

from local.runtime import Schedule


def test_a_schedule_fires_then_stops() -> None:
    fired = threading.Event()
    schedule = Schedule(0.01, fired.set, "probe")

    schedule.start()
    assert fired.wait(10), "the schedule never fired"
    schedule.stop()

    assert not schedule._thread.is_alive()
