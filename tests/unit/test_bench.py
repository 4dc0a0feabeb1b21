"""The bench's plain logic: worker log lines by stage, the floor, percentiles and the figures' keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambdas.adapters import request_metrics, wiring
from lambdas.adapters.observability import metrics
from local.bench import collect_figures, kintone_requests_of, percentile
from local.bench_stages import (
    FLOOR_CALLS,
    NOT_COVERED,
    KeyTiming,
    WorkerLogReader,
    around_the_worker_ms,
    converged_lines,
    floor_ms,
    logged_at,
    not_covered_ms,
    raw_stage_ms,
    stage_figures,
    stage_p50s,
    stage_table,
    stages_of,
    wait_for_converged,
)

STAGES_MS = {
    "queue_wait": 12.5,
    "kintone_read": 3.0,
    "directory": 4.0,
    "secret": 9.0,
    "litellm": 40.0,
    "write_back": 3.5,
    "state": 15.0,
    "comment": 2.0,
    "other": 1.0,
}


def converged_line(group: str, outcome: str = "issued", trigger: str = "ADD_RECORD", **extra) -> str:
    """A "record converged" line as the worker's Powertools logger writes it."""
    return json.dumps(
        {
            "level": "INFO",
            "location": "converge_record:121",
            "message": "record converged",
            "timestamp": LOGGED,
            "service": "kintone-llm-keys",
            "cold_start": False,
            "function_name": "worker",
            "record": group,
            "trigger": trigger,
            "outcome": outcome,
            "team": "platform",
            "requested_by": "taro",
            "receive_count": 1,
            "attempt": 1,
            **extra,
        },
        separators=(",", ":"),
    )


def floor_calls(value: float = 1.0) -> dict[str, float]:
    return dict.fromkeys(FLOOR_CALLS, value)


LOGGED = "2026-11-30 09:10:55,840+0000"
LOGGED_AT = 1_796_029_855.84  # the same instant, in epoch seconds


def timings(**ms_by_record: float) -> dict[str, KeyTiming]:
    """Times to key by group ("1:<record>"), the keys landing 10 ms before the lines' timestamp."""
    return {
        f"1:{record.removeprefix('r')}": KeyTiming(
            sent_at=LOGGED_AT - 0.010 - ms / 1000, matched_at=LOGGED_AT - 0.010
        )
        for record, ms in ms_by_record.items()
    }


# -- reading the worker logs -------------------------------------------------------------------


def test_the_reader_returns_only_lines_written_after_it_was_made(tmp_path: Path) -> None:
    log = tmp_path / "worker-0.log"
    log.write_text(converged_line("1:1") + "\n")
    reader = WorkerLogReader(tmp_path)
    with log.open("a") as appending:
        appending.write(converged_line("1:2") + "\n")

    assert [json.loads(line)["record"] for line in reader.new_lines()] == ["1:2"]
    assert list(reader.new_lines()) == []


def test_a_line_still_being_written_waits_for_its_end(tmp_path: Path) -> None:
    log = tmp_path / "worker-0.log"
    log.write_text("")
    reader = WorkerLogReader(tmp_path)
    line = converged_line("1:7")
    with log.open("a") as appending:
        appending.write(line[:40])
        appending.flush()
        assert list(reader.new_lines()) == []
        appending.write(line[40:] + "\n")

    assert list(reader.new_lines()) == [line]


def test_a_worker_log_that_appears_later_is_read_from_its_start(tmp_path: Path) -> None:
    (tmp_path / "worker-0.log").write_text("")
    reader = WorkerLogReader(tmp_path)
    (tmp_path / "worker-1.log").write_text(converged_line("1:3") + "\n")
    (tmp_path / "reconciler.log").write_text(converged_line("1:4") + "\n")  # not a worker's

    assert [json.loads(line)["record"] for line in reader.new_lines()] == ["1:3"]


# -- matching a record's line ------------------------------------------------------------------


def test_each_record_gets_the_line_that_issued_its_key() -> None:
    lines = [
        "Traceback (most recent call last): record converged",  # not JSON
        json.dumps({"message": "webhook queued", "record": "1:5"}),
        converged_line("1:5", stages_ms={"litellm": 40.0}),
        converged_line("1:5", outcome="unchanged", trigger="RECONCILE", stages_ms={"litellm": 0}),
        converged_line("1:6", outcome="failed"),
        converged_line("1:50", stages_ms={"litellm": 99.0}),  # another record, "1:5" as a prefix
        converged_line("2:5"),  # the same record id in another app
    ]

    found = converged_lines(lines, ["1:5", "1:6"])

    assert list(found) == ["1:5"]
    assert found["1:5"]["outcome"] == "issued"
    assert stages_of(found["1:5"]) == {"litellm": 40.0}


def test_a_key_issued_by_a_sweep_is_matched_too() -> None:
    found = converged_lines([converged_line("1:8", trigger="RECONCILE")], ["1:8"])

    assert found["1:8"]["trigger"] == "RECONCILE"


def test_waiting_for_lines_ends_when_every_record_has_its_line(tmp_path: Path) -> None:
    log = tmp_path / "worker-0.log"
    log.write_text("")
    reader = WorkerLogReader(tmp_path)
    pending = [converged_line("1:1"), converged_line("1:2")]
    reads = []

    def pause(_seconds: float) -> None:  # a worker writes the next line meanwhile
        reads.append(1)
        with log.open("a") as appending:
            appending.write(pending.pop(0) + "\n")

    found = wait_for_converged(reader, ["1:1", "1:2"], 10, clock=lambda: 0.0, pause=pause)

    assert sorted(found) == ["1:1", "1:2"]
    assert len(reads) == 2


def test_waiting_for_lines_gives_up_at_the_timeout_with_what_it_found(tmp_path: Path) -> None:
    (tmp_path / "worker-0.log").write_text("")
    reader = WorkerLogReader(tmp_path)
    (tmp_path / "worker-0.log").write_text(converged_line("1:1") + "\n")
    now = [0.0]

    def pause(seconds: float) -> None:
        now[0] += seconds

    found = wait_for_converged(reader, ["1:1", "1:2"], 1.0, clock=lambda: now[0], pause=pause)

    assert list(found) == ["1:1"]
    assert 1.0 <= now[0] < 1.2  # gave up at the first read past the timeout


# -- stages ------------------------------------------------------------------------------------


def test_a_line_without_stages_has_none() -> None:
    assert stages_of(json.loads(converged_line("1:1"))) is None
    assert stages_of(json.loads(converged_line("1:1", stages_ms="12 ms"))) is None


def test_stages_keep_numbers_of_milliseconds_only() -> None:
    entry = json.loads(
        converged_line(
            "1:1", stages_ms={"litellm": 40, "secret": 8.5, "state": True, "comment": -1, "other": "3"}
        )
    )

    assert stages_of(entry) == {"litellm": 40.0, "secret": 8.5}


def test_a_stage_a_line_leaves_out_counts_as_zero_in_its_p50() -> None:
    per_record = [{"litellm": 40.0, "comment": 2.0}, {"litellm": 50.0}, {"litellm": 60.0, "comment": 4.0}]

    assert stage_p50s(per_record) == {"litellm": 50.0, "comment": 2.0}


def test_stages_come_in_the_workers_order_then_any_new_ones() -> None:
    p50s = stage_p50s([{"other": 1.0, "retry_wait": 5.0, "queue_wait": 2.0, "litellm": 3.0}])

    assert list(p50s) == ["queue_wait", "litellm", "other", "retry_wait"]


def test_what_the_stages_do_not_cover_is_time_to_key_less_their_sum() -> None:
    assert not_covered_ms(100.0, STAGES_MS) == pytest.approx(100.0 - 90.0)
    assert not_covered_ms(80.0, STAGES_MS) == pytest.approx(-10.0)


# -- the floor ---------------------------------------------------------------------------------


def test_the_floor_is_the_sum_of_the_raw_calls_p50s() -> None:
    calls = {call: float(index + 1) for index, call in enumerate(FLOOR_CALLS)}

    assert floor_ms(calls) == sum(range(1, len(FLOOR_CALLS) + 1))
    assert sum(raw_stage_ms(calls).values()) == floor_ms(calls)


def test_the_state_stage_reads_once_and_writes_twice_and_the_queue_sends_and_receives() -> None:
    raw = raw_stage_ms(floor_calls(2.0))

    assert raw["state"] == 6.0
    assert raw["queue_wait"] == 4.0
    assert raw["directory"] == 4.0  # users.json, then user/organizations.json
    assert raw["litellm"] == 2.0
    assert "comment" not in raw and "other" not in raw


def test_a_floor_without_every_call_is_refused() -> None:
    calls = floor_calls()
    del calls["kintone_put_records"]

    with pytest.raises(ValueError, match="kintone_put_records"):
        floor_ms(calls)


# -- figures -----------------------------------------------------------------------------------


def test_the_figures_by_stage_and_against_the_floor() -> None:
    to_key = timings(r1=100.0, r2=120.0, r3=140.0)
    converged = {group: json.loads(converged_line(group, stages_ms=STAGES_MS)) for group in to_key}

    figures = stage_figures(to_key, converged, floor_calls(8.0))

    assert figures["stages_p50_ms"] == pytest.approx({**STAGES_MS, NOT_COVERED: 30.0})
    assert figures["stages_records"] == 3
    assert figures["floor_ms"] == 8.0 * len(FLOOR_CALLS)
    assert set(figures["floor_calls_p50_ms"]) == set(FLOOR_CALLS)
    assert figures["ttk_to_floor_ratio_p50"] == round(120.0 / (8.0 * len(FLOOR_CALLS)), 2)


def test_without_stages_in_the_logs_the_floor_and_ratio_remain() -> None:
    to_key = timings(r1=100.0, r2=120.0)
    converged = {group: json.loads(converged_line(group)) for group in to_key}

    figures = stage_figures(to_key, converged, floor_calls(10.0))

    assert set(figures) == {"floor_ms", "floor_calls_p50_ms", "ttk_to_floor_ratio_p50"}
    assert any("no stages" in line for line in stage_table(figures, 110.0))


def test_stages_count_only_the_time_to_key_records() -> None:
    converged = {
        "1:1": json.loads(converged_line("1:1", stages_ms={"litellm": 40.0})),
        "1:9": json.loads(converged_line("1:9", stages_ms={"litellm": 400.0})),  # a cold record
    }

    figures = stage_figures(timings(r1=100.0), converged, None)

    assert figures["stages_p50_ms"] == pytest.approx({"litellm": 40.0, NOT_COVERED: 60.0})
    assert figures["stages_records"] == 1
    assert set(figures) == {"stages_p50_ms", "stages_records", "around_worker_p50_ms"}


def test_the_lines_timestamp_is_read_as_powertools_writes_it() -> None:
    assert logged_at({"timestamp": LOGGED}) == pytest.approx(LOGGED_AT)
    assert logged_at({"timestamp": "2026-11-30T09:10:55.840Z"}) is None
    assert logged_at({}) is None


def test_what_is_not_covered_splits_into_delivery_and_the_workers_time_after_the_key() -> None:
    # Sent at 0; the handler received it at 12 ms; the worker's stages took 90 ms from there and the
    # key landed at 80 ms, so the worker logged at 102 ms: 22 ms after the key.
    timing = KeyTiming(sent_at=1000.0, matched_at=1000.080)

    around = around_the_worker_ms(timing, STAGES_MS, logged=1000.102)

    assert around == pytest.approx({"delivery": 12.0, "after_key": 22.0})
    assert around["delivery"] - around["after_key"] == pytest.approx(not_covered_ms(timing.ms, STAGES_MS))


def test_the_figures_split_what_is_not_covered_when_the_lines_timestamps_read() -> None:
    # timings(): every key lands 10 ms before its line is logged.
    converged = {"1:1": json.loads(converged_line("1:1", stages_ms=STAGES_MS))}

    figures = stage_figures(timings(r1=100.0), converged, None)

    assert figures["around_worker_p50_ms"] == pytest.approx({"delivery": 20.0, "after_key": 10.0}, abs=0.1)
    assert figures["stages_p50_ms"][NOT_COVERED] == pytest.approx(10.0, abs=0.1)
    no_timestamp = {"1:1": {**converged["1:1"], "timestamp": "yesterday"}}
    assert "around_worker_p50_ms" not in stage_figures(timings(r1=100.0), no_timestamp, None)


def test_the_table_sets_each_stage_beside_its_raw_calls() -> None:
    converged = {"1:1": json.loads(converged_line("1:1", stages_ms=STAGES_MS))}
    figures = stage_figures(timings(r1=100.0), converged, floor_calls(5.0))

    table = stage_table(figures, 100.0)

    rows = {line.split()[0]: line for line in table[1:]}
    assert rows["state"].split()[1:5] == ["15.0", "ms", "15.0", "ms"]
    assert rows["comment"].split()[1:4] == ["2.0", "ms", "-"]
    assert rows[NOT_COVERED].split()[1:4] == ["10.0", "ms", "-"]
    assert table[-1] == f"time to key / floor, p50: {figures['ttk_to_floor_ratio_p50']} (target ≤ 1.5)"


def test_percentile_is_the_nearest_rank() -> None:
    samples = [float(value) for value in range(100, 0, -1)]

    assert percentile(samples, 0.99) == 99.0
    assert percentile(samples, 0.5) == 51.0  # round(49.5) = 50, the 51st smallest
    assert percentile([7.0], 0.99) == 7.0


def test_the_last_json_line_holds_every_figure_of_the_parts_that_ran() -> None:
    stages = stage_figures(
        timings(r1=100.0), {"1:1": json.loads(converged_line("1:1", stages_ms=STAGES_MS))}, floor_calls()
    )
    figures = collect_figures(
        raw=[40.0, 42.0],
        to_key=[100.0],
        stages=stages,
        webhook=[5.0, 6.0],
        idle={"per_day": 1464, "full_sweep": 2, "incremental": 1},
        catch_up=[61.0, 70.0],
        burst_figures={
            "records": 1000,
            "injected_faults": 50,
            "keys_per_second": 10.0,
            "kintone_requests_per_key": 0.4,
        },
        raw_throughput=40.0,
        queue_ceiling=12.0,
    )

    assert {
        "ttk_to_floor_ratio_p50",
        "floor_ms",
        "stages_p50_ms",
        "floor_calls_p50_ms",
        "kintone_requests_per_key_burst",
        "kintone_requests_per_day_idle",
        "catch_up_p99_s",
        "time_to_key_p50_ms",
        "time_to_key_p99_ms",
        "webhook_p99_ms",
    } <= set(figures)
    json.dumps(figures)  # the figures are one JSON object


def test_parts_switched_off_leave_their_figures_out() -> None:
    figures = collect_figures(
        raw=[40.0],
        to_key=[100.0],
        stages={},
        webhook=[],
        idle={},
        catch_up=[],
        burst_figures={},
        raw_throughput=0.0,
        queue_ceiling=0.0,
    )

    assert set(figures) == {
        "time_to_key_p50_ms",
        "time_to_key_p99_ms",
        "raw_generate_p50_ms",
        "ratio_p50",
        "records",
    }


# -- the idle day's kintone requests -----------------------------------------------------------


def test_a_runs_kintone_requests_are_counted_though_its_handler_publishes_them() -> None:
    wiring.REQUEST_METER.record("1")  # before the run: not the run's
    stack_tally = request_metrics.request_tally

    def handler_run() -> None:
        for _ in range(3):
            wiring.REQUEST_METER.record("1")
        request_metrics.publish_kintone_requests()  # as counts_kintone_requests does at the end
        wiring.REQUEST_METER.record("1")  # after its publish: still the run's

    try:
        assert kintone_requests_of(handler_run) == 4
        assert request_metrics.request_tally is stack_tally
    finally:
        metrics.clear_metrics()  # the publish's metrics belong to no handler's invocation
