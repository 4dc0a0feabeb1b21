"""A key's life after issuance on the real local stack: revoke, rotate, and the reconciler's sweeps.

(Editing team or models in place is test_pipeline.py::test_an_edit_updates_the_key_in_place.)
"""

from __future__ import annotations

import hashlib
import time

import pytest

from lambdas.adapters.wiring import state_store
from lambdas.domain.ports import KeyState, KeyStatus, RecordRef
from lambdas.handlers import reconciler as reconciler_handler
from local.kintone_emulator import WEBHOOKS_PER_MINUTE as KINTONE_WEBHOOKS_PER_MINUTE
from tests.integration.conftest import APP_ID, UNCAPPED, LocalStack
from tests.integration.fault_proxy import Fault

pytestmark = pytest.mark.integration

GRACE_SECONDS = 3600  # ROTATION_GRACE_SECONDS of the local stack


def issued(stack: LocalStack, **fields) -> tuple[str, str]:
    record_id = stack.save_record(**fields)
    api_key = stack.wait_for_status(record_id, "Issued")["api_key"]["value"]
    stack.wait_record_handled(record_id, 1)  # the worker goes on after the write-back: state, comment
    return record_id, api_key


def secret_scheduled_for_deletion(stack: LocalStack, record_id: str) -> bool:
    return "DeletedDate" in stack.secrets_client().describe_secret(SecretId=stack.secret_name(record_id))


def state_of(record_id: str) -> KeyState | None:
    return state_store().get(RecordRef(app_id=APP_ID, record_id=record_id))


def comments(stack: LocalStack, record_id: str) -> list[dict]:
    return stack.emulator.comments(int(record_id))


def test_issuing_comments_to_the_requester(local_stack: LocalStack) -> None:
    record_id, _ = issued(local_stack, user="hanako")
    [comment] = comments(local_stack, record_id)
    assert comment["mentions"] == [{"code": "hanako", "type": "USER"}]
    assert "Your key has been issued" in comment["text"]


def test_deleting_a_record_revokes_its_key_at_once(local_stack: LocalStack) -> None:
    record_id, api_key = issued(local_stack)
    handled = local_stack.handled_for(record_id)

    local_stack.delete_from_screen(record_id)
    local_stack.wait_record_handled(record_id, handled + 1)

    assert local_stack.chat_status(api_key) == 401
    assert local_stack.keys_under_alias(record_id) == []
    assert secret_scheduled_for_deletion(local_stack, record_id)
    assert state_of(record_id).status == KeyStatus.REVOKED


def test_a_revoke_request_revokes_and_the_record_stays_revoked(local_stack: LocalStack) -> None:
    record_id, api_key = issued(local_stack)

    local_stack.edit_record(record_id, status="Revoke")
    record = local_stack.wait_for_status(record_id, "Revoked")

    assert record["api_key"]["value"] == ""
    assert "The key has been revoked" in record["message"]["value"]
    assert local_stack.chat_status(api_key) == 401
    assert secret_scheduled_for_deletion(local_stack, record_id)
    assert "Your key has been revoked" in comments(local_stack, record_id)[-1]["text"]
    # Another save and a sweep later it is still revoked, with no key.
    revision = local_stack.edit_record(record_id, key_name="renamed")
    local_stack.wait_record_handled(record_id, local_stack.handled_for(record_id) + 1)
    local_stack.reconcile()
    assert local_stack.record(record_id)["status"]["value"] == "Revoked"
    assert int(local_stack.record(record_id)["$revision"]["value"]) == revision
    assert local_stack.keys_under_alias(record_id) == []


def test_a_delete_while_an_issue_retry_is_queued_leaves_no_key(local_stack: LocalStack) -> None:
    # The first attempt creates the key, then kintone fails the write-back: the retry waits in the
    # queue (same message group) while the user deletes the record.
    # Three 503s: the write-back's own retries (3 tries in the call) all fail, so the delivery does.
    local_stack.emulator.add_fault(path_prefix="/k/v1/records.json", method="PUT", status=503, count=3)
    record_id = local_stack.save_record()
    local_stack.wait_record_handled(record_id, 1)
    assert len(local_stack.keys_under_alias(record_id)) == 1  # the key of the failed attempt
    local_stack.delete_from_screen(record_id)

    local_stack.wait_record_handled(record_id, 3)  # the retry, then the delete

    assert local_stack.keys_under_alias(record_id) == []
    assert secret_scheduled_for_deletion(local_stack, record_id)
    assert state_of(record_id).status == KeyStatus.REVOKED


def test_a_bulk_delete_without_a_webhook_is_revoked_by_the_reconciler(local_stack: LocalStack) -> None:
    record_id, api_key = issued(local_stack)
    handled = local_stack.handled_for(record_id)

    local_stack.bulk_delete(record_id)
    assert local_stack.chat_status(api_key) == 200  # kintone told no one
    report = local_stack.reconcile()
    local_stack.wait_record_handled(record_id, handled + 1)

    assert report["full_sweep"] and report["missing_records"] >= 1
    assert local_stack.chat_status(api_key) == 401
    assert secret_scheduled_for_deletion(local_stack, record_id)


def test_a_rotation_switches_keys_and_the_old_one_ends_after_the_grace(local_stack: LocalStack) -> None:
    record_id, old_key = issued(local_stack)
    rotations = local_stack.runtime.rotations.finished

    local_stack.edit_record(record_id, status="Rotate")
    local_stack.wait_rotations(rotations + 1)

    record = local_stack.record(record_id)
    new_key = record["api_key"]["value"]
    assert new_key != old_key
    assert record["status"]["value"] == "Issued"
    assert "The key was rotated" in record["message"]["value"]
    assert local_stack.stored_key(record_id) == new_key
    [current] = local_stack.keys_under_alias(record_id)
    assert current["token"] == hashlib.sha256(new_key.encode()).hexdigest()
    assert "Your key was rotated" in comments(local_stack, record_id)[-1]["text"]
    assert local_stack.chat_status(new_key) == 200
    assert local_stack.chat_status(old_key) == 200  # through the grace period

    assert local_stack.retire_keys_at(time.time() + GRACE_SECONDS - 60) == 0
    assert local_stack.chat_status(old_key) == 200
    assert local_stack.retire_keys_at(time.time() + GRACE_SECONDS + 60) >= 1

    assert local_stack.chat_status(old_key) == 401
    assert local_stack.chat_status(new_key) == 200


def test_a_failed_rotation_keeps_the_old_key_and_says_why(local_stack: LocalStack) -> None:
    record_id, old_key = issued(local_stack)
    rotations = local_stack.runtime.rotations.finished
    # The new key's test request (testSecret) fails.
    local_stack.litellm_faults.inject(Fault("/chat/completions", count=1, status=500))

    local_stack.edit_record(record_id, status="Rotate")
    local_stack.wait_rotations(rotations + 1)

    record = local_stack.record(record_id)
    assert record["api_key"]["value"] == old_key
    assert record["status"]["value"] == "Issued"
    assert "Key rotation failed" in record["message"]["value"]
    assert local_stack.chat_status(old_key) == 200
    assert local_stack.stored_key(record_id) == old_key


def test_the_mass_revoke_safety_limit_trips_and_an_operator_can_override_it(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    issued_keys = len(state_store().states_with_status(APP_ID, KeyStatus.ISSUED))
    # Enough records that deleting them all is over MAX_REVOKE_SHARE (0.2) and MASS_REVOKE_FLOOR (5).
    count = issued_keys // 4 + 6
    record_ids = local_stack.bulk_save(count)  # no webhooks: the reconciler finds them
    local_stack.reconcile()
    keys = [local_stack.wait_for_status(record_id, "Issued")["api_key"]["value"] for record_id in record_ids]
    handled = {record_id: local_stack.handled_for(record_id) for record_id in record_ids}

    local_stack.bulk_delete(*record_ids)
    # What the handler hands to Powertools (which prints it as EMF for CloudWatch and the alarm).
    emitted: list[tuple[str, float]] = []
    add_metric = reconciler_handler.metrics.add_metric
    monkeypatch.setattr(
        reconciler_handler.metrics,
        "add_metric",
        lambda name, unit, value, **kwargs: (
            emitted.append((name, value)) or add_metric(name, unit, value, **kwargs)
        ),
    )
    report = local_stack.reconcile()

    assert report["mass_revoke_blocked"] is True
    assert report["missing_records"] == count
    assert all(local_stack.chat_status(api_key) == 200 for api_key in keys[:2])
    assert any(
        entry.levelname == "ERROR" and entry.getMessage().startswith("mass revoke blocked")
        for entry in caplog.records
    )
    assert ("MassRevokeBlocked", 1) in emitted

    local_stack.reconcile(allow_mass_revoke=True)
    for record_id in record_ids:
        local_stack.wait_record_handled(record_id, handled[record_id] + 1)
    assert all(local_stack.chat_status(api_key) == 401 for api_key in keys[:2])
    assert all(local_stack.keys_under_alias(record_id) == [] for record_id in record_ids)


def test_a_burst_of_200_with_dropped_webhooks_gets_200_keys_once_each(local_stack: LocalStack) -> None:
    webhooks_before = len(local_stack.emulator.webhook_log())
    local_stack.emulator.configure(webhook_rate_per_minute=KINTONE_WEBHOOKS_PER_MINUTE)
    try:
        record_ids = [local_stack.save_record(key_name=f"burst {number}") for number in range(200)]
        log = local_stack.emulator.wait_for_webhooks(webhooks_before + 200, timeout=30)
        dropped = [entry for entry in log[webhooks_before:] if entry["status"] == "dropped"]
        assert len(dropped) >= 140  # at most 60 a minute get through

        local_stack.reconcile()
        keys = {
            record_id: local_stack.wait_for_status(record_id, "Issued")["api_key"]["value"]
            for record_id in record_ids
        }
    finally:
        local_stack.emulator.configure(webhook_rate_per_minute=UNCAPPED)

    assert len(set(keys.values())) == 200
    for record_id, api_key in keys.items():
        [key] = local_stack.keys_under_alias(record_id)
        assert key["token"] == hashlib.sha256(api_key.encode()).hexdigest()
        assert local_stack.stored_key(record_id) == api_key
    assert local_stack.chat_status(keys[record_ids[-1]]) == 200
