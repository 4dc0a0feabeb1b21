"""A record whose webhook kintone dropped gets its key from the next reconciler run's incremental query."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from lambdas.adapters.wiring import reset_caches
from tests.integration.conftest import LocalStack

pytestmark = pytest.mark.integration


@pytest.fixture
def hourly_full_sweeps(local_stack: LocalStack) -> Iterator[None]:
    """The deployed cadence: full sweeps once an hour, every other run asks only for recent changes."""
    saved = os.environ.get("RECONCILE_FULL_SWEEP_SECONDS")
    os.environ["RECONCILE_FULL_SWEEP_SECONDS"] = "3600"
    reset_caches()
    try:
        yield
    finally:
        os.environ["RECONCILE_FULL_SWEEP_SECONDS"] = saved or "0"
        reset_caches()


def test_a_record_whose_webhook_was_dropped_is_keyed_by_the_next_incremental_run(
    local_stack: LocalStack, hourly_full_sweeps: None
) -> None:
    local_stack.reconcile()  # the last run before the save
    local_stack.emulator.configure(webhook_enabled=False)  # kintone drops this record's webhook
    try:
        record_id = local_stack.save_record(key_name="dropped webhook")
    finally:
        local_stack.emulator.configure(webhook_enabled=True)

    report = local_stack.reconcile()  # the next scheduled run

    assert report["full_sweep"] is False
    assert report["enqueued"] >= 1
    record = local_stack.wait_for_status(record_id, "Issued")
    assert local_stack.chat_status(record["api_key"]["value"]) == 200
    sent = [e for e in local_stack.webhooks_for(record_id, "ADD_RECORD") if e["status"] == "sent"]
    assert sent == [], "the key came from the reconciler, not from a webhook"
