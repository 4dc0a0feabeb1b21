"""Time to key by stage, from the workers' logs, against its floor: the same calls made raw.

The worker's "record converged" log line carries `stages_ms`, the milliseconds it spent per stage on
that record. The bench reads the lines the workers wrote after it started, takes the line of each of
its time-to-key records, and sets the p50 of each stage beside the p50 of the raw calls that stage
makes; the floor is the sum of those raw p50s.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

# In the order the worker meets them; `other` is the rest of the worker's time on the record.
STAGES = (
    "queue_wait",
    "kintone_read",
    "directory",
    "secret",
    "litellm",
    "write_back",
    "state",
    "comment",
    "other",
)
CONVERGED_MESSAGE = "record converged"
ISSUED_OUTCOME = "issued"
# What the worker logs do not cover: time to key minus the sum of the stages.
NOT_COVERED = "not_covered"
# Powertools' timestamp: when the worker logged the line, at the end of its work on the record.
LOG_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S,%f%z"

# The raw calls of each stage, named as in `floor_calls_p50_ms`; stages with none have no floor.
FLOOR_CALLS_BY_STAGE: dict[str, tuple[str, ...]] = {
    "queue_wait": ("sqs_send_message", "sqs_receive_message"),
    "kintone_read": ("kintone_get_record",),
    "directory": ("cybozu_users", "cybozu_user_organizations"),
    "secret": ("secretsmanager_create_secret",),
    "litellm": ("litellm_key_generate",),
    "write_back": ("kintone_put_records",),
    "state": ("dynamodb_get_item", "dynamodb_put_item_issuing", "dynamodb_put_item_issued"),
}
FLOOR_CALLS = tuple(call for calls in FLOOR_CALLS_BY_STAGE.values() for call in calls)


@dataclass(frozen=True)
class KeyTiming:
    """One record's time to key, as the kintone emulator saw it (epoch seconds)."""

    sent_at: float  # kintone began sending the record's webhook
    matched_at: float  # the write after which the record held its key

    @property
    def ms(self) -> float:
        return (self.matched_at - self.sent_at) * 1000


class WorkerLogReader:
    """Complete lines appended to the workers' logs (`worker-*.log`) since this reader was made."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._offsets = {path: path.stat().st_size for path in self._logs()}

    def new_lines(self) -> Iterator[str]:
        """Lines written since the last call; a line still being written waits for the next call."""
        for path in self._logs():
            offset = self._offsets.get(path, 0)  # a log that appeared later is new from its start
            with path.open("rb") as log:
                log.seek(offset)
                chunk = log.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offsets[path] = offset + len(complete)
            yield from complete.decode(errors="replace").splitlines()

    def _logs(self) -> list[Path]:
        return sorted(self._log_dir.glob("worker-*.log"))


def converged_lines(lines: Iterable[str], groups: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The first "record converged" line that issued the key of each of `groups` (message group ids,
    "<app>:<record>"), by group. Other lines (other records, a later sweep that found the record
    unchanged, lines that are not JSON) are passed over."""
    wanted = set(groups)
    found: dict[str, dict[str, Any]] = {}
    for line in lines:
        if CONVERGED_MESSAGE not in line:
            continue  # most lines; parsing them all would cost the bench more than it measures
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line the logging library did not write, such as a traceback
        if not isinstance(entry, dict) or entry.get("message") != CONVERGED_MESSAGE:
            continue
        group = entry.get("record")
        if group in wanted and group not in found and entry.get("outcome") == ISSUED_OUTCOME:
            found[group] = entry
    return found


def wait_for_converged(
    reader: WorkerLogReader,
    groups: Iterable[str],
    timeout_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> dict[str, dict[str, Any]]:
    """The converged lines of `groups` as `converged_lines`, read until each group has its line or
    `timeout_seconds` pass (a worker logs the line after its last call, a little after the key)."""
    wanted = set(groups)
    found: dict[str, dict[str, Any]] = {}
    deadline = clock() + timeout_seconds
    while True:
        found.update(converged_lines(reader.new_lines(), wanted - found.keys()))
        if found.keys() >= wanted or clock() >= deadline:
            return found
        pause(0.1)  # between reads of files that have nothing new yet


def stages_of(entry: Mapping[str, Any]) -> dict[str, float] | None:
    """The line's `stages_ms` as stage → milliseconds, or None when the line has none. Absent stages
    are 0; a stage that is not a number of milliseconds is left out."""
    stages = entry.get("stages_ms")
    if not isinstance(stages, dict):
        return None
    return {
        stage: float(value)
        for stage, value in stages.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    }


def logged_at(entry: Mapping[str, Any]) -> float | None:
    """When the line was logged (epoch seconds), or None for a timestamp in another format."""
    try:
        return datetime.strptime(str(entry.get("timestamp")), LOG_TIMESTAMP_FORMAT).timestamp()
    except ValueError:
        return None


def around_the_worker_ms(timing: KeyTiming, stages: Mapping[str, float], logged: float) -> dict[str, float]:
    """What `not_covered` nets out: `delivery`, from kintone sending the webhook until the handler
    received it (the worker's queue wait starts there), and `after_key`, the worker's time after the
    write-back that gave the record its key (the last state write, the comment). The worker logs its
    line at its end, so it received the webhook the sum of the stages before it logged."""
    received_at = logged - sum(stages.values()) / 1000
    return {
        "delivery": (received_at - timing.sent_at) * 1000,
        "after_key": (logged - timing.matched_at) * 1000,
    }


def stage_p50s(per_record: list[dict[str, float]]) -> dict[str, float]:
    """p50 of each stage over the records, a stage a record's line leaves out counting as 0. The
    known stages come first, in the worker's order, then any others the worker reports."""
    reported = {stage for stages in per_record for stage in stages}
    ordered = [stage for stage in STAGES if stage in reported] + sorted(reported - set(STAGES))
    return {stage: statistics.median(stages.get(stage, 0.0) for stages in per_record) for stage in ordered}


def not_covered_ms(time_to_key_ms: float, stages: Mapping[str, float]) -> float:
    """The part of a record's time to key its worker line does not account for: the webhook's
    delivery, the webhook handler and the poller. The comment and the last state write follow the
    write-back that ends the time to key, so this can fall below zero."""
    return time_to_key_ms - sum(stages.values())


def raw_stage_ms(floor_call_p50s: Mapping[str, float]) -> dict[str, float]:
    """Each stage's floor: the sum of the p50s of its raw calls."""
    return {
        stage: sum(floor_call_p50s[call] for call in calls) for stage, calls in FLOOR_CALLS_BY_STAGE.items()
    }


def floor_ms(floor_call_p50s: Mapping[str, float]) -> float:
    """The sum of the p50s of every call on the path to a key, each made raw."""
    missing = [call for call in FLOOR_CALLS if call not in floor_call_p50s]
    if missing:
        raise ValueError(f"the floor lacks the calls {', '.join(missing)}")
    return sum(floor_call_p50s[call] for call in FLOOR_CALLS)


def stage_figures(
    time_to_key: Mapping[str, KeyTiming],
    converged: Mapping[str, Mapping[str, Any]],
    floor_call_p50s: Mapping[str, float] | None,
) -> dict[str, Any]:
    """The figures for the last JSON line. `time_to_key` and `converged` are by message group.

    Stages appear only when the workers' lines carry them; the floor only when it was measured.
    """
    figures: dict[str, Any] = {}
    per_record = {
        group: stages
        for group, entry in converged.items()
        if group in time_to_key and (stages := stages_of(entry)) is not None
    }
    if per_record:
        figures["stages_p50_ms"] = {
            stage: round(value, 1) for stage, value in stage_p50s(list(per_record.values())).items()
        }
        figures["stages_p50_ms"][NOT_COVERED] = round(
            statistics.median(not_covered_ms(time_to_key[group].ms, s) for group, s in per_record.items()),
            1,
        )
        figures["stages_records"] = len(per_record)
        around = [
            around_the_worker_ms(time_to_key[group], stages, logged)
            for group, stages in per_record.items()
            if (logged := logged_at(converged[group])) is not None
        ]
        if around:
            figures["around_worker_p50_ms"] = {
                part: round(statistics.median(parts[part] for parts in around), 1) for part in around[0]
            }
    if floor_call_p50s is not None and time_to_key:
        floor = floor_ms(floor_call_p50s)
        figures["floor_ms"] = round(floor, 1)
        figures["floor_calls_p50_ms"] = {call: round(floor_call_p50s[call], 1) for call in FLOOR_CALLS}
        figures["ttk_to_floor_ratio_p50"] = round(
            statistics.median(timing.ms for timing in time_to_key.values()) / floor, 2
        )
    return figures


def stage_table(figures: Mapping[str, Any], time_to_key_p50_ms: float) -> list[str]:
    """stage, pipeline p50, raw p50: one line each, then the totals; figures as `stage_figures`."""
    stages: Mapping[str, float] = figures.get("stages_p50_ms", {})
    raw = raw_stage_ms(figures["floor_calls_p50_ms"]) if "floor_calls_p50_ms" in figures else {}
    lines = [f"{'stage':<14}{'pipeline p50':>14}{'raw p50':>12}  raw calls"]
    for stage in [*STAGES, *(s for s in stages if s not in STAGES and s != NOT_COVERED), NOT_COVERED]:
        if stage not in stages and stage not in raw:
            continue
        pipeline = f"{stages[stage]:.1f} ms" if stage in stages else "-"
        floor = f"{raw[stage]:.1f} ms" if stage in raw else "-"
        calls = " + ".join(FLOOR_CALLS_BY_STAGE.get(stage, ()))
        lines.append(f"{stage:<14}{pipeline:>14}{floor:>12}  {calls}".rstrip())
    around = figures.get("around_worker_p50_ms", {})
    if around:
        lines.append(
            f"{'':<14}(of which delivery, webhook sent → handler, {around['delivery']:.1f} ms;"
            f" less the worker's time after the key landed, {around['after_key']:.1f} ms)"
        )
    total_floor = f"{figures['floor_ms']:.1f} ms" if "floor_ms" in figures else "-"
    lines.append(f"{'time to key':<14}{time_to_key_p50_ms:>11.1f} ms{total_floor:>12}  (floor)")
    if not stages:
        lines.append('the worker logs have no stages (no `stages_ms` on their "record converged" lines)')
    if "ttk_to_floor_ratio_p50" in figures:
        lines.append(f"time to key / floor, p50: {figures['ttk_to_floor_ratio_p50']} (target ≤ 1.5)")
    return lines
