"""Comments follow kintone's documented rules: mentions, notifications, guests, and who posts."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from local.kintone_emulator import KintoneEmulator
from tests.unit.emulator_directory import build_directory, password_headers

TOKEN = "comment-token"
TOKEN_HEADERS = {"X-Cybozu-API-Token": TOKEN}


@pytest.fixture
def emulator() -> Iterator[KintoneEmulator]:
    directory = build_directory()
    directory.add_user("guest/visitor@example.com", guest=True)
    with KintoneEmulator(app_id="1", api_tokens=[TOKEN], directory=directory) as emulator:
        yield emulator


@pytest.fixture
def client(emulator: KintoneEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.base_url, timeout=10) as client:
        record = {"app": 1, "record": {"key_name": {"value": "k"}}}
        assert client.post("/k/v1/record.json", json=record, headers=TOKEN_HEADERS).status_code == 200
        yield client


def post(
    client: httpx.Client, mentions: list[dict], headers: dict[str, str] = TOKEN_HEADERS
) -> httpx.Response:
    body = {"app": 1, "record": 1, "comment": {"text": "about your key", "mentions": mentions}}
    return client.post("/k/v1/record/comment.json", json=body, headers=headers)


def test_active_users_mentioned_are_notified_and_others_are_not(
    client: httpx.Client, emulator: KintoneEmulator
) -> None:
    emulator.directory.set_valid("jiro", False)
    emulator.directory.add_user("gone")
    emulator.directory.delete_user("gone")
    mentions = [
        {"code": "taro", "type": "USER"},
        {"code": "jiro", "type": "USER"},  # suspended
        {"code": "gone", "type": "USER"},  # deleted
        {"code": "platform", "type": "ORGANIZATION"},
        {"code": "llm-operators", "type": "GROUP"},
        {"code": "hanako"},  # type defaults to USER
    ]
    response = post(client, mentions)
    assert response.status_code == 200
    (comment,) = emulator.comments(1)
    assert comment["notified"] == ["taro", "hanako"]
    assert [mention["code"] for mention in comment["mentions"]] == [m["code"] for m in mentions]


def test_more_than_ten_mentions_are_refused(client: httpx.Client, emulator: KintoneEmulator) -> None:
    eleven = [{"code": "taro", "type": "USER"}] * 11
    response = post(client, eleven)
    assert response.status_code == 400 and "comment.mentions" in response.json()["errors"]
    assert post(client, eleven[:10]).status_code == 200
    assert emulator.comments(1)[0]["notified"] == ["taro"]


@pytest.mark.parametrize("code", ["guest/visitor@example.com", "guest/stranger@example.com"])
def test_a_guest_not_invited_is_refused(client: httpx.Client, emulator: KintoneEmulator, code: str) -> None:
    response = post(client, [{"code": code, "type": "USER"}])
    assert response.status_code == 400 and response.json()["code"] == "CB_VA01"
    assert emulator.comments(1) == []


def test_a_comment_is_by_who_posts_it(client: httpx.Client, emulator: KintoneEmulator) -> None:
    post(client, [])
    post(client, [], headers=password_headers("taro"))
    by_token, by_taro = emulator.comments(1)
    assert by_token["creator"] == {"code": "Administrator", "name": "Administrator"}
    assert by_taro["creator"] == {"code": "taro", "name": "Taro"}


def test_the_webhook_cap_counts_every_kind_of_notification_together(
    client: httpx.Client, emulator: KintoneEmulator
) -> None:
    emulator.configure(webhook_url="http://127.0.0.1:9/unreachable", webhook_rate_per_minute=3)
    record = {"app": 1, "record": {"key_name": {"value": "k"}}}
    client.post("/k/v1/record.json", json=record, headers=TOKEN_HEADERS)  # ADD_RECORD
    post(client, [])  # ADD_RECORD_COMMENT
    client.put("/k/v1/record.json", json={**record, "id": 1}, headers=TOKEN_HEADERS)  # UPDATE_RECORD
    post(client, [])
    log = emulator.wait_for_webhooks(4, timeout=10)
    assert [entry["status"] == "dropped" for entry in log] == [False, False, False, True]
