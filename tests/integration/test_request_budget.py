"""The pipeline's count of its kintone requests agrees with what kintone (the emulator) counted."""

from __future__ import annotations

import time

import pytest

from lambdas.adapters.request_metrics import publish_kintone_requests
from lambdas.adapters.wiring import request_tally
from lambdas.domain.request_budget import kintone_day
from local.runtime import INVOCATION_LOCK, invoke_spend_sync
from tests.integration.conftest import APP_ID, LocalStack

pytestmark = pytest.mark.integration


SAVE = "POST /k/v1/record.json"
COMMENT = "POST /k/v1/record/comment.json"


def emulator_count(stack: LocalStack, day: str) -> int:
    """What kintone counted for the app that day, less the test's own record saves: the pipeline
    never adds a record."""
    return sum(count for api, count in stack.kintone_requests_by_api(day).items() if api != SAVE)


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


def test_a_burst_of_records_costs_at_most_half_a_kintone_request_per_key(local_stack: LocalStack) -> None:
    """Records arriving faster than the workers take them: each batch is read with one query and
    written back with one bulk update, so a burst costs far less than a read and a write per key."""
    burst = 30
    day = kintone_day(time.time())
    before = local_stack.kintone_requests_by_api(day)
    record_ids = local_stack.save_while_the_worker_waits(burst)
    for record_id in record_ids:
        record = local_stack.wait_for_status(record_id, "Issued")
        assert len(local_stack.keys_under_alias(record_id)) == 1
        assert local_stack.chat_status(record["api_key"]["value"]) == 200
    after = local_stack.kintone_requests_by_api(day)

    sent = {api: count - before.get(api, 0) for api, count in after.items() if count != before.get(api, 0)}
    # The test's own saves, and the comments telling each requester (kintone has no bulk comments).
    pipeline = sum(count for api, count in sent.items() if api not in (SAVE, COMMENT))
    assert pipeline / burst <= 0.5, sent
    assert sent.get("PUT /k/v1/records.json", 0) < burst / 2, sent
