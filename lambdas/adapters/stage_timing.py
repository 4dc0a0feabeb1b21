"""Where a record's time goes in the worker, stage by stage, for its log line and `make bench`.

The provisioner's ports are wrapped in `TimedPort`, which adds each call's duration to the stage of
the record being converged (a context variable, so each record of a batch keeps its own).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

STAGES = ("kintone_read", "directory", "secret", "litellm", "write_back", "state", "comment")

_current: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("stages", default=None)


@contextmanager
def timing_stages() -> Iterator[dict[str, float]]:
    """Milliseconds per stage of the calls made inside the block."""
    stages: dict[str, float] = {}
    token = _current.set(stages)
    try:
        yield stages
    finally:
        _current.reset(token)


class TimedPort:
    """`port`, with the time of each call added to a stage: `stage`, or `by_method`'s for a method."""

    def __init__(self, port: Any, stage: str, by_method: Mapping[str, str] | None = None) -> None:
        self.port = port
        self._stage = stage
        self._by_method = dict(by_method or {})

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.port, name)
        if not callable(attribute):
            return attribute
        return _timed(attribute, self._by_method.get(name, self._stage))


def _timed(call: Callable[..., Any], stage: str) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            stages = _current.get()
            if stages is not None:
                stages[stage] = stages.get(stage, 0.0) + (time.perf_counter() - started) * 1000

    return timed


def stage_report(stages: Mapping[str, float], *, queue_wait_ms: float, total_ms: float) -> dict[str, float]:
    """The log line's `stages_ms`: the queue wait, each stage, and what the worker spent elsewhere."""
    report = {"queue_wait": round(max(queue_wait_ms, 0.0), 1)}
    report.update({stage: round(stages.get(stage, 0.0), 1) for stage in STAGES})
    report["other"] = round(max(total_ms - sum(stages.values()), 0.0), 1)
    return report
