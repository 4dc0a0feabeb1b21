"""LiteLLM's Prometheus metrics on the real local proxy: a chat with an issued key shows up at /metrics,
labelled with the key's team and model, as the gateway's metrics agent ships them to CloudWatch."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from stacks.constructs.metrics_agent import MODEL_LABEL, REQUESTS, TEAM_LABEL
from tests.integration.conftest import LocalStack

pytestmark = pytest.mark.integration

# LiteLLM records a request in its success callback, after the response; poll until it shows.
METRICS_WAIT_SECONDS = 60
_SERIES = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>.*)\}\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def series(metrics_text: str, name: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for line in metrics_text.splitlines():
        match = _SERIES.match(line)
        if match and match["name"] == name:
            labels = {label["key"]: label["value"] for label in _LABEL.finditer(match["labels"])}
            found.append((labels, float(match["value"])))
    return found


def requests_of_alias(stack: LocalStack, alias: str) -> list[tuple[dict[str, str], float]]:
    response = httpx.get(
        f"{stack.litellm.base_url}/metrics/",
        headers={"Authorization": f"Bearer {stack.litellm.master_key}"},
        timeout=10,
    )
    response.raise_for_status()
    return [
        (labels, value)
        for labels, value in series(response.text, REQUESTS)
        if labels.get("api_key_alias") == alias
    ]


def test_a_chat_with_an_issued_key_is_counted_under_its_team_and_model(local_stack: LocalStack) -> None:
    record_id = local_stack.save_record(team="platform", models=["other-model"])
    api_key = local_stack.wait_for_status(record_id, "Issued")["api_key"]["value"]
    alias = local_stack.alias(record_id)

    assert local_stack.chat_status(api_key, model="other-model") == 200

    deadline = time.monotonic() + METRICS_WAIT_SECONDS
    counted = requests_of_alias(local_stack, alias)
    while not counted and time.monotonic() < deadline:
        time.sleep(0.5)  # polling LiteLLM's exposition until its callback has run
        counted = requests_of_alias(local_stack, alias)
    assert counted, f"no {REQUESTS} series for key alias {alias} within {METRICS_WAIT_SECONDS} s"
    labels, value = counted[0]
    assert labels[TEAM_LABEL] == "platform"
    assert labels[MODEL_LABEL] == "other-model"
    assert value >= 1


def test_metrics_need_the_master_key_locally(local_stack: LocalStack) -> None:
    response = httpx.get(f"{local_stack.litellm.base_url}/metrics/", timeout=10)
    assert response.status_code in (401, 403)
