"""Usage back to the requester on the real local stack: spend in the record, budget alerts as comments."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from lambdas.domain.key_request import key_hash
from lambdas.domain.usage import SPEND_DECIMALS
from local.runtime import invoke_spend_sync
from tests.integration.conftest import WAIT_SECONDS, LocalStack

pytestmark = pytest.mark.integration


def wait_until(condition: Callable[[], Any], what: str) -> Any:
    """Checks `condition` until it holds: for state another process changes on its own schedule."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)  # between checks of LiteLLM's database, written by its own batch job
    raise AssertionError(f"{what} did not happen within {WAIT_SECONDS} s")


def litellm_key_info(stack: LocalStack, api_key: str) -> dict[str, Any]:
    response = httpx.get(
        f"{stack.litellm.base_url}/key/info",
        params={"key": key_hash(api_key)},
        headers={"Authorization": f"Bearer {stack.litellm.master_key}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["info"]


def issued_key(stack: LocalStack, **fields: Any) -> tuple[str, str]:
    record_id = stack.save_record(**fields)
    record = stack.wait_for_status(record_id, "Issued")
    return record_id, record["api_key"]["value"]


def test_after_chats_on_the_priced_model_one_sync_shows_the_spend_in_the_record(
    local_stack: LocalStack,
) -> None:
    record_id, api_key = issued_key(local_stack, user="jiro", team="research", models=["priced-gpt"])
    for _ in range(2):
        assert local_stack.chat_status(api_key, model="priced-gpt") == 200
    # LiteLLM writes spend to its database in batches (every 10 s by default).
    spend = wait_until(lambda: litellm_key_info(local_stack, api_key)["spend"], "LiteLLM recording the spend")

    first = invoke_spend_sync()  # one run of the schedule
    second = invoke_spend_sync()

    record = local_stack.record(record_id)
    assert float(record["spend"]["value"]) == pytest.approx(round(spend, SPEND_DECIMALS))
    assert float(record["spend"]["value"]) > 0
    assert first["records_written"] >= 1
    assert second["records_written"] == 0, "an unchanged record is not written again"
    assert second["kintone_requests"] == 0


def litellm_alert(alias: str, token: str, **fields: Any) -> dict[str, Any]:
    """A WebhookEvent as LiteLLM 1.108.7 posts it (SlackAlerting.send_webhook_alert: model_dump_json)."""
    return {
        "spend": 10.25,
        "max_budget": 10.0,
        "soft_budget": None,
        "token": token,
        "customer_id": None,
        "user_id": None,
        "team_id": "platform",
        "team_alias": None,
        "organization_id": None,
        "user_email": None,
        "key_alias": alias,
        "projected_exceeded_date": None,
        "projected_spend": None,
        "event_group": "key",
        "alert_emails": None,
        "max_budget_alert_emails": None,
        "event": "budget_crossed",
        "event_message": "Key Budget: Budget Crossed\n Total Budget:`10.0`",
        **fields,
    }


def test_a_budget_alert_sent_at_once_by_several_gateway_tasks_becomes_exactly_one_comment(
    local_stack: LocalStack,
) -> None:
    record_id, api_key = issued_key(local_stack, user="hanako")
    before = len(local_stack.comments(record_id))
    alert = litellm_alert(local_stack.alias(record_id), key_hash(api_key))

    # Several LiteLLM tasks each remember only their own alerts, so they may all send the same one.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda _: httpx.post(local_stack.alert_url, json=alert, timeout=10), range(4))
        )

    assert sorted(answer.json()["result"] for answer in answers) == ["commented"] + ["duplicate"] * 3
    comments = local_stack.comments(record_id)
    assert len(comments) == before + 1
    assert [mention["code"] for mention in comments[0]["mentions"]] == ["hanako"]
    assert "10.25" in comments[0]["text"]


def test_a_team_budget_alert_finds_the_record_by_the_key_hash_alone(local_stack: LocalStack) -> None:
    record_id, api_key = issued_key(local_stack, user="jiro", team="research")
    before = len(local_stack.comments(record_id))
    alert = litellm_alert(
        "", key_hash(api_key), key_alias=None, event_group="team", team_id="research", max_budget=50.0
    )

    answer = httpx.post(local_stack.alert_url, json=alert, timeout=10)

    assert answer.json()["result"] == "commented"
    comments = local_stack.comments(record_id)
    assert len(comments) == before + 1
    assert "research" in comments[0]["text"]


def test_forged_or_malformed_alerts_are_refused_and_comment_nothing(local_stack: LocalStack) -> None:
    record_id, api_key = issued_key(local_stack)
    before = len(local_stack.comments(record_id))
    alert = litellm_alert(local_stack.alias(record_id), key_hash(api_key))
    forged_url = local_stack.alert_url.rsplit("/", 1)[0] + "/not-the-token"

    assert httpx.post(forged_url, json=alert, timeout=10).status_code == 401
    assert (
        httpx.post(
            local_stack.webhook_url.replace("/webhook/", "/alert/"), json=alert, timeout=10
        ).status_code
        == 401
    )
    assert httpx.post(local_stack.alert_url, content=b"{not json", timeout=10).status_code == 400
    assert httpx.post(local_stack.alert_url, json={"event": "budget_crossed"}, timeout=10).status_code == 400
    assert len(local_stack.comments(record_id)) == before
