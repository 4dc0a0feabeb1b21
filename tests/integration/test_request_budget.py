"""The pipeline's count of its kintone requests agrees with what kintone (the emulator) counted."""

from __future__ import annotations

import time

import httpx
import pytest

from lambdas.adapters.request_metrics import publish_kintone_requests
from lambdas.adapters.wiring import request_tally
from lambdas.domain.request_budget import kintone_day
from local.runtime import INVOCATION_LOCK, invoke_spend_sync
from tests.integration.conftest import APP_ID, LocalStack

pytestmark = pytest.mark.integration


def emulator_count(stack: LocalStack, day: str) -> int:
    """What kintone (the emulator) counted for the app that day, less the test's own record saves:
    the pipeline never adds a record."""
    counts = httpx.get(f"{stack.kintone_url}/_emulator/requests", timeout=10).json()
    by_api = counts["apps"].get(APP_ID, {}).get(day, {}).get("by_api", {})
    return sum(count for api, count in by_api.items() if api != "POST /k/v1/record.json")


def test_the_pipelines_daily_count_agrees_with_kintones(local_stack: LocalStack) -> None:
    day = kintone_day(time.time())
    with INVOCATION_LOCK:  # no invocation in flight: every request sent so far is in both counts
        publish_kintone_requests()
        pipeline_before, kintone_before = request_tally().total(APP_ID, day), emulator_count(local_stack, day)

    record_ids = [local_stack.save_record(key_name=f"budget {number}") for number in range(5)]
    for record_id in record_ids:
        local_stack.wait_record_handled(record_id, 1)  # the invocation, and its count, are over
    local_stack.reconcile()
    invoke_spend_sync()

    with INVOCATION_LOCK:  # a record the sweep queued may be in a worker: read both once it is done
        publish_kintone_requests()
        pipeline = request_tally().total(APP_ID, day) - pipeline_before
        kintone = emulator_count(local_stack, day) - kintone_before
    assert day == kintone_day(time.time()), "the test ran across 9:00 JST; run it again"
    assert pipeline == kintone
    assert pipeline >= len(record_ids)  # each record was read at least once
