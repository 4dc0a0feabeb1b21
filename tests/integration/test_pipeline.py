"""The whole flow on the real local stack: kintone emulator → webhook → SQS → worker → LiteLLM,
Secrets Manager, DynamoDB → write-back."""

from __future__ import annotations

import copy

import pytest

from tests.integration.conftest import APP_ID, LocalStack

pytestmark = pytest.mark.integration


def record_webhooks(stack: LocalStack, record_id: str) -> list[str]:
    return [entry["type"] for entry in stack.webhooks_for(record_id) if entry["type"] != "ADD_RECORD_COMMENT"]


def issued(stack: LocalStack, **fields) -> tuple[str, dict]:
    record_id = stack.save_record(**fields)
    return record_id, stack.wait_for_status(record_id, "Issued")


def test_a_saved_record_gets_a_working_key_for_its_team(local_stack: LocalStack) -> None:
    record_id, record = issued(local_stack, key_name="notebook 検証 🚀")

    api_key = record["api_key"]["value"]
    assert local_stack.chat_status(api_key) == 200
    assert local_stack.stored_key(record_id) == api_key
    [key] = local_stack.keys_under_alias(record_id)
    assert key["team_id"] == "platform"
    assert key["metadata"]["requested_by"] == "taro"
    assert key["metadata"]["key_name"] == "notebook 検証 🚀"
    assert "Issued a key for team 'platform'" in record["message"]["value"]


def test_the_key_is_scoped_to_the_team_models(local_stack: LocalStack) -> None:
    _, record = issued(local_stack, user="jiro", team="research", models=["priced-gpt"])
    api_key = record["api_key"]["value"]
    assert local_stack.chat_status(api_key, model="priced-gpt") == 200
    assert local_stack.chat_status(api_key, model="other-model") in (401, 403)


def test_an_unknown_team_fails_with_a_message_and_no_key(local_stack: LocalStack) -> None:
    record_id = local_stack.save_record(team="no-such-team")

    record = local_stack.wait_for_status(record_id, "Failed")

    assert "team 'no-such-team' is not a known team" in record["message"]["value"]
    assert record["api_key"]["value"] == ""
    assert local_stack.keys_under_alias(record_id) == []
    assert local_stack.stored_key(record_id) is None


def test_the_same_webhook_delivered_twice_gives_one_key(local_stack: LocalStack) -> None:
    record_id, record = issued(local_stack)
    [original] = local_stack.webhooks_for(record_id, "ADD_RECORD")

    # The same notification again: SQS drops it as a duplicate of the first.
    assert local_stack.deliver(original["payload"]).status_code == 202
    # A replay under a new notification id passes deduplication and reaches the worker.
    replay = {**copy.deepcopy(original["payload"]), "id": original["payload"]["id"] + "-replayed"}
    assert local_stack.deliver(replay).status_code == 202

    assert len(local_stack.keys_under_alias(record_id)) == 1
    after = local_stack.record(record_id)
    assert after["api_key"]["value"] == record["api_key"]["value"]
    assert after["$revision"]["value"] == record["$revision"]["value"]


def test_the_write_back_causes_no_second_key_and_no_loop(local_stack: LocalStack) -> None:
    record_id, record = issued(local_stack)

    # The write-back goes through the bulk API, which fires no webhook. (The comment that tells the
    # requester fires ADD_RECORD_COMMENT, which the webhook acknowledges and ignores.)
    assert record_webhooks(local_stack, record_id) == ["ADD_RECORD"]
    # Had it fired one (a single-record PUT does), its echo would change nothing.
    echo = copy.deepcopy(local_stack.webhooks_for(record_id, "ADD_RECORD")[0]["payload"])
    echo.update({"id": echo["id"] + "-echo", "type": "UPDATE_RECORD", "record": record})
    assert local_stack.deliver(echo).status_code == 202

    after = local_stack.record(record_id)
    assert after["$revision"]["value"] == record["$revision"]["value"]  # nothing written
    assert len(local_stack.keys_under_alias(record_id)) == 1
    assert record_webhooks(local_stack, record_id) == ["ADD_RECORD"]


def test_a_forged_webhook_for_a_missing_record_mints_nothing(local_stack: LocalStack) -> None:
    forged = {
        "id": "forged-1",
        "type": "ADD_RECORD",
        "app": {"id": APP_ID, "name": "LiteLLM API keys"},
        "record": {
            "$id": {"type": "__ID__", "value": "987654"},
            "$revision": {"type": "__REVISION__", "value": "1"},
            "team": {"type": "SINGLE_LINE_TEXT", "value": "platform"},
        },
        "recordTitle": "forged",
        "url": "https://evil.example/k/1/show#record=987654",
    }
    assert local_stack.deliver(forged).status_code == 202

    assert local_stack.keys_under_alias("987654") == []
    assert local_stack.stored_key("987654") is None


def test_a_forged_webhook_cannot_choose_the_team(local_stack: LocalStack) -> None:
    record_id = local_stack.save_record(team="no-such-team")
    local_stack.wait_for_status(record_id, "Failed")
    [original] = local_stack.webhooks_for(record_id, "ADD_RECORD")
    forged = copy.deepcopy(original["payload"])
    forged["id"] += "-forged"
    forged["record"]["team"]["value"] = "platform"  # the payload lies; kintone's record does not

    local_stack.deliver(forged)

    assert local_stack.keys_under_alias(record_id) == []


def test_a_wrong_token_or_app_is_refused(local_stack: LocalStack) -> None:
    import httpx  # noqa: PLC0415

    base = local_stack.webhook_url.rsplit("/", 1)[0]
    assert httpx.post(f"{base}/not-the-token", json={}, timeout=10).status_code == 401
    other_app = {"id": "x", "type": "ADD_RECORD", "app": {"id": "2"}, "record": {"$id": {"value": "1"}}}
    assert local_stack.deliver(other_app).status_code == 403


def test_an_edit_updates_the_key_in_place(local_stack: LocalStack) -> None:
    record_id, record = issued(local_stack)
    api_key = record["api_key"]["value"]

    local_stack.move_user("taro", "platform", "research")  # a key moves only to its owner's team
    try:
        revision = local_stack.edit_record(record_id, team="research", models=["priced-gpt"])
        record = local_stack.wait_for_write_after(record_id, revision)
    finally:
        local_stack.move_user("taro", "platform")

    assert record["status"]["value"] == "Issued"
    assert "team: platform → research" in record["message"]["value"]
    [key] = local_stack.keys_under_alias(record_id)
    assert (key["team_id"], key["models"]) == ("research", ["priced-gpt"])
    assert record["api_key"]["value"] == api_key
    assert local_stack.chat_status(api_key, model="priced-gpt") == 200
