"""The kintone emulator answers like kintone: shapes, codes, revisions, queries and webhooks."""

from __future__ import annotations

import calendar
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.kintone_emulator import KintoneEmulator, RecordCondition
from tests.unit.emulator_directory import build_directory, password_headers

TOKEN = "token-for-app-1"
OTHER_TOKEN = "second-token-for-app-1"
TOKEN_HEADERS = {"X-Cybozu-API-Token": TOKEN}
REPO_ROOT = Path(__file__).resolve().parents[2]
MINUTE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:00Z")
SECOND_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


class WebhookReceiver:
    """Records the webhook requests it gets and answers them with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self._deliveries: list[tuple[dict[str, str], dict[str, Any]]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver._deliveries.append((dict(self.headers), json.loads(body)))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/kintone"

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [body for _, body in self._deliveries]

    def headers(self) -> list[dict[str, str]]:
        with self._lock:
            return [headers for headers, _ in self._deliveries]

    def clear(self) -> None:
        with self._lock:
            self._deliveries.clear()
        self.status = 200

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# One emulator, receiver and pair of clients serve the module (an httpx.Client takes ~70 ms to make);
# every test starts from a reset emulator.


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def emulator(receiver: WebhookReceiver) -> Iterator[KintoneEmulator]:
    with KintoneEmulator(
        app_id="1", api_tokens=[TOKEN, OTHER_TOKEN], webhook_url=receiver.url, directory=build_directory()
    ) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def api(emulator: KintoneEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.base_url, headers=TOKEN_HEADERS, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def admin(emulator: KintoneEmulator) -> Iterator[httpx.Client]:
    """Sends no credentials; an absolute URL reaches another emulator."""
    with httpx.Client(base_url=emulator.base_url, timeout=10) as client:
        yield client


@pytest.fixture(autouse=True)
def _fresh_emulator(emulator: KintoneEmulator, receiver: WebhookReceiver) -> None:
    # The last test's notifications land before the receiver is cleared, so none leak into this one.
    emulator.wait_for_webhooks(len(emulator.webhook_log()), timeout=10)
    emulator.reset()
    emulator.configure(
        webhook_url=receiver.url,
        webhook_rate_per_minute=60,
        webhook_enabled=True,
        delete_notification_keys="deleteBy",
    )
    receiver.clear()


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    return {code: {"value": value} for code, value in values.items()}


def add_bulk(api: httpx.Client, *records: dict[str, Any]) -> list[int]:
    response = api.post("/k/v1/records.json", json={"app": 1, "records": [fields(**r) for r in records]})
    assert response.status_code == 200, response.text
    return [int(record_id) for record_id in response.json()["ids"]]


def wait_webhooks(admin: httpx.Client, count: int) -> list[dict[str, Any]]:
    response = admin.get("/_emulator/webhooks/wait", params={"count": count, "timeout": 5})
    assert response.status_code == 200
    assert not response.json()["timed_out"], response.json()
    return response.json()["notifications"]


def assert_kintone_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["id"], str) and body["id"]
    assert isinstance(body["message"], str) and body["message"]
    assert response.headers["X-Cybozu-Error"] == code
    return body


# ---- records -------------------------------------------------------------------------------------


def test_add_get_and_update_a_record(api: httpx.Client) -> None:
    added = api.post("/k/v1/record.json", json={"app": 1, "record": fields(key_name="ci", team="red")})
    assert added.json() == {"id": "1", "revision": "1"}

    updated = api.put(
        "/k/v1/record.json", json={"app": "1", "id": "1", "revision": "1", "record": fields(status="Issued")}
    )
    assert updated.json() == {"revision": "2"}

    record = api.get("/k/v1/record.json", params={"app": 1, "id": 1}).json()["record"]
    assert record["key_name"]["value"] == "ci"
    assert record["status"]["value"] == "Issued"
    assert record["$revision"] == {"type": "__REVISION__", "value": "2"}


def test_a_record_has_kintone_field_shapes_and_system_fields(api: httpx.Client) -> None:
    api.post("/k/v1/record.json", json={"app": 1, "record": fields(key_name="k", models=["fake-gpt"])})

    record = api.get("/k/v1/record.json", params={"app": 1, "id": 1}).json()["record"]

    assert record["key_name"] == {"type": "SINGLE_LINE_TEXT", "value": "k"}
    assert record["models"] == {"type": "CHECK_BOX", "value": ["fake-gpt"]}
    assert record["status"] == {"type": "DROP_DOWN", "value": None}  # an unselected drop-down is null
    assert record["message"] == {"type": "MULTI_LINE_TEXT", "value": ""}
    assert record["$id"] == {"type": "__ID__", "value": "1"}
    assert record["レコード番号"] == {"type": "RECORD_NUMBER", "value": "1"}
    administrator = {"code": "Administrator", "name": "Administrator"}  # what API-token saves show
    assert record["作成者"] == {"type": "CREATOR", "value": administrator}
    assert record["更新者"] == {"type": "MODIFIER", "value": administrator}
    assert record["作成日時"]["type"] == "CREATED_TIME"
    assert MINUTE_TIME.fullmatch(record["作成日時"]["value"])
    assert MINUTE_TIME.fullmatch(record["更新日時"]["value"])


def test_get_record_takes_its_parameters_from_a_json_body_too(api: httpx.Client) -> None:
    add_bulk(api, {"key_name": "k"})

    response = api.request("GET", "/k/v1/record.json", json={"app": 1, "id": 1})

    assert response.json()["record"]["key_name"]["value"] == "k"


def test_unknown_records_apps_and_missing_parameters(api: httpx.Client) -> None:
    assert_kintone_error(api.get("/k/v1/record.json", params={"app": 1, "id": 9}), 404, "GAIA_RE01")
    assert_kintone_error(api.get("/k/v1/record.json", params={"app": 2, "id": 1}), 404, "GAIA_AP01")
    body = assert_kintone_error(api.get("/k/v1/record.json", params={"app": 1}), 400, "CB_VA01")
    assert body["errors"] == {"id": {"messages": ["Required field."]}}


def test_a_stale_revision_is_refused_with_409(api: httpx.Client) -> None:
    add_bulk(api, {"key_name": "k"})
    api.put("/k/v1/record.json", json={"app": 1, "id": 1, "record": fields(team="a")})

    stale = api.put("/k/v1/record.json", json={"app": 1, "id": 1, "revision": 1, "record": fields(team="b")})
    unchecked = api.put(
        "/k/v1/record.json", json={"app": 1, "id": 1, "revision": -1, "record": fields(team="c")}
    )

    assert_kintone_error(stale, 409, "GAIA_CO02")
    assert unchecked.json() == {"revision": "3"}


def test_bulk_update_is_all_or_nothing(api: httpx.Client, emulator: KintoneEmulator) -> None:
    add_bulk(api, {"team": "a"}, {"team": "b"})
    conflicting = api.put(
        "/k/v1/records.json",
        json={
            "app": 1,
            "records": [
                {"id": 1, "revision": 1, "record": fields(team="new")},
                {"id": 2, "revision": 7, "record": fields(team="new")},
            ],
        },
    )
    invalid = api.put(
        "/k/v1/records.json",
        json={
            "app": 1,
            "records": [{"id": 1, "record": fields(team="x")}, {"id": 2, "record": fields(status="?")}],
        },
    )

    assert_kintone_error(conflicting, 409, "GAIA_CO02")
    assert assert_kintone_error(invalid, 400, "CB_VA01")["errors"].keys() == {"records[1].status.value"}
    assert [record["team"]["value"] for record in emulator.records()] == ["a", "b"]
    assert [record["$revision"]["value"] for record in emulator.records()] == ["1", "1"]


def test_bulk_update_and_delete_answer_like_kintone(api: httpx.Client, emulator: KintoneEmulator) -> None:
    add_bulk(api, {"team": "a"}, {"team": "b"}, {"team": "c"})

    updated = api.put(
        "/k/v1/records.json",
        json={"app": 1, "records": [{"id": "2", "revision": "1", "record": fields(api_key="sk-1")}]},
    )
    stale_delete = api.delete("/k/v1/records.json", params={"app": 1, "ids[0]": 1, "revisions[0]": 5})
    deleted = api.delete("/k/v1/records.json", params={"app": 1, "ids[0]": 1, "ids[1]": 3})

    assert updated.json() == {"records": [{"id": "2", "revision": "2"}]}
    assert_kintone_error(stale_delete, 409, "GAIA_CO02")
    assert deleted.json() == {}
    assert [record["$id"]["value"] for record in emulator.records()] == ["2"]


def test_bulk_writes_are_limited_to_100_records(api: httpx.Client) -> None:
    too_many = api.post("/k/v1/records.json", json={"app": 1, "records": [{}] * 101})
    no_ids = api.request("DELETE", "/k/v1/records.json", json={"app": 1})

    assert assert_kintone_error(too_many, 400, "CB_VA01")["errors"].keys() == {"records"}
    assert assert_kintone_error(no_ids, 400, "CB_VA01")["errors"].keys() == {"ids"}


@pytest.mark.parametrize(
    ("record", "status", "code", "error_key"),
    [
        ({"status": {"value": "Nope"}}, 400, "CB_VA01", "record.status.value"),
        ({"models": {"value": "fake-gpt"}}, 400, "CB_VA01", "record.models.value"),
        ({"models": {"value": ["fake-gpt", "gpt-9"]}}, 400, "CB_VA01", "record.models.values[1].value"),
        ({"key_name": {"value": ["a list"]}}, 400, "CB_VA01", "record.key_name.value"),
        ({"レコード番号": {"value": "5"}}, 400, "GAIA_UN10", None),
        ({"作成者": {"value": {"code": "someone"}}}, 403, "CB_NO02", None),
        ({"更新日時": {"value": "2026-01-01T00:00:00Z"}}, 403, "CB_NO02", None),
    ],
)
def test_invalid_values_are_refused_and_nothing_is_saved(
    api: httpx.Client,
    emulator: KintoneEmulator,
    record: dict[str, Any],
    status: int,
    code: str,
    error_key: str | None,
) -> None:
    response = api.post("/k/v1/record.json", json={"app": 1, "record": record})

    body = assert_kintone_error(response, status, code)
    if error_key is not None:
        assert list(body["errors"]) == [error_key]
    assert emulator.records() == []


def test_unknown_field_codes_are_ignored_like_kintone_unless_asked_to_reject(
    api: httpx.Client, admin: httpx.Client
) -> None:
    accepted = api.post("/k/v1/record.json", json={"app": 1, "record": fields(key_name="k", apikey="typo")})
    record = api.get("/k/v1/record.json", params={"app": 1, "id": 1}).json()["record"]
    with KintoneEmulator(api_tokens=[TOKEN], reject_unknown_fields=True) as strict:
        refused = admin.post(
            f"{strict.base_url}/k/v1/record.json",
            json={"app": 1, "record": fields(apikey="typo")},
            headers=TOKEN_HEADERS,
        )

    assert accepted.status_code == 200
    assert "apikey" not in record
    assert list(assert_kintone_error(refused, 400, "CB_VA01")["errors"]) == ["record.apikey"]


# ---- authentication --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "CB_AU01"),
        ({"X-Cybozu-API-Token": "wrong-secret"}, 400, "GAIA_IA02"),
        ({"X-Cybozu-API-Token": f"{TOKEN},wrong-secret"}, 400, "GAIA_IA02"),
        ({"X-Cybozu-API-Token": f"{TOKEN},{TOKEN}"}, 400, "GAIA_DA03"),
        ({"X-Cybozu-Authorization": "dXNlcjpwYXNz"}, 401, "CB_WA01"),
    ],
)
def test_requests_without_a_valid_token_are_refused_and_the_token_is_not_logged(
    admin: httpx.Client,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    response = admin.get("/k/v1/records.json", params={"app": 1}, headers=headers)

    body = assert_kintone_error(response, status, code)
    assert set(body) == {"code", "id", "message"}
    assert code in caplog.text
    assert "wrong-secret" not in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("tokens", [OTHER_TOKEN, f"{TOKEN}, {OTHER_TOKEN}"])
def test_any_token_of_the_app_grants_access(admin: httpx.Client, tokens: str) -> None:
    response = admin.get("/k/v1/records.json", params={"app": 1}, headers={"X-Cybozu-API-Token": tokens})

    assert response.status_code == 200
    assert response.headers["X-ConcurrencyLimit-Limit"] == "100"


# ---- webhooks --------------------------------------------------------------------------------------


def test_single_record_writes_fire_webhooks_and_bulk_writes_do_not(
    api: httpx.Client, admin: httpx.Client, emulator: KintoneEmulator, receiver: WebhookReceiver
) -> None:
    add_bulk(api, {"key_name": "bulk-1"}, {"key_name": "bulk-2"})
    api.put("/k/v1/records.json", json={"app": 1, "records": [{"id": 1, "record": fields(team="t")}]})
    api.delete("/k/v1/records.json", params={"app": 1, "ids[0]": 2})
    saved_from = time.time()
    api.post("/k/v1/record.json", json={"app": 1, "record": fields(key_name="single")})
    api.put("/k/v1/record.json", json={"app": 1, "id": 3, "record": fields(team="red")})

    log = wait_webhooks(admin, 2)

    assert [(entry["type"], entry["record_id"], entry["status"]) for entry in log] == [
        ("ADD_RECORD", "3", "sent"),
        ("UPDATE_RECORD", "3", "sent"),
    ]
    assert all(saved_from <= entry["saved_at"] <= entry["sent_at"] for entry in log)
    added, updated = receiver.bodies()
    assert list(added) == ["id", "type", "app", "record", "recordTitle", "url"]
    assert uuid.UUID(added["id"]) and added["id"] != updated["id"]
    assert added["type"] == "ADD_RECORD"
    assert added["app"] == {"id": "1", "name": "LiteLLM API keys"}
    assert added["recordTitle"] == "single"
    assert added["url"] == f"{emulator.base_url}/k/1/show#record=3"
    assert added["record"]["$id"]["value"] == "3"
    assert updated["record"]["$revision"]["value"] == "2"
    assert updated["record"]["team"]["value"] == "red"
    headers = receiver.headers()[0]
    assert headers["Content-Type"] == "application/json"
    assert not [name for name in headers if name.lower().startswith("x-")]


def test_webhooks_over_the_per_minute_cap_are_dropped(admin: httpx.Client, receiver: WebhookReceiver) -> None:
    with KintoneEmulator(
        api_tokens=[TOKEN], webhook_url=receiver.url, webhook_rate_per_minute=3
    ) as capped_app:

        def save(title: str) -> None:
            url = f"{capped_app.base_url}/k/v1/record.json"
            admin.post(url, json={"app": 1, "record": fields(key_name=title)}, headers=TOKEN_HEADERS)

        for index in range(4):
            save(f"k{index}")
        capped = capped_app.wait_for_webhooks(4, timeout=5)
        admin.post(f"{capped_app.base_url}/_emulator/config", json={"webhook_rate_per_minute": 5})
        save("after raising the cap")
        raised = capped_app.wait_for_webhooks(5, timeout=5)

    assert [entry["status"] for entry in capped] == ["sent", "sent", "sent", "dropped"]
    assert capped[3]["sent_at"] is None and capped[3]["http_status"] is None
    assert raised[4]["status"] == "sent"
    assert [body["recordTitle"] for body in receiver.bodies()] == ["k0", "k1", "k2", "after raising the cap"]


def test_failed_deliveries_are_logged_and_not_retried(
    api: httpx.Client, emulator: KintoneEmulator, receiver: WebhookReceiver
) -> None:
    receiver.status = 500
    api.post("/k/v1/record.json", json={"app": 1, "record": fields(key_name="first")})
    api.post("/k/v1/record.json", json={"app": 1, "record": fields(key_name="second")})

    log = emulator.wait_for_webhooks(2, timeout=5)

    assert [(entry["status"], entry["http_status"]) for entry in log] == [("failed", 500), ("failed", 500)]
    assert [body["recordTitle"] for body in receiver.bodies()] == ["first", "second"]


def test_an_unreachable_webhook_url_is_a_failed_delivery(
    api: httpx.Client, emulator: KintoneEmulator
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    emulator.configure(webhook_url=f"http://127.0.0.1:{closed_port}/nobody")
    api.post("/k/v1/record.json", json={"app": 1, "record": fields(key_name="k")})

    (entry,) = emulator.wait_for_webhooks(1, timeout=5)

    assert entry["status"] == "failed"
    assert entry["error"] == "ConnectError"


def test_the_webhook_url_can_be_set_after_start(admin: httpx.Client, receiver: WebhookReceiver) -> None:
    with KintoneEmulator(api_tokens=[TOKEN]) as late_app:

        def save(title: str) -> None:
            url = f"{late_app.base_url}/k/v1/record.json"
            admin.post(url, json={"app": 1, "record": fields(key_name=title)}, headers=TOKEN_HEADERS)

        def configure(**settings: Any) -> httpx.Response:
            return admin.post(f"{late_app.base_url}/_emulator/config", json=settings)

        save("before")
        log_before = late_app.webhook_log()
        settings = configure(webhook_url=receiver.url).json()
        save("after")
        log_after = late_app.wait_for_webhooks(1, timeout=5)
        configure(webhook_enabled=False)
        save("disabled")
        log_disabled = late_app.webhook_log()
        refused = configure(webhook_url="ftp://example")

    assert log_before == []
    assert settings["webhook_url"] == receiver.url
    assert [entry["record_id"] for entry in log_after] == ["2"]
    assert len(log_disabled) == 1
    assert refused.status_code == 400


def test_screen_deletes_fire_delete_record_for_each_record(
    api: httpx.Client, admin: httpx.Client, emulator: KintoneEmulator, receiver: WebhookReceiver
) -> None:
    add_bulk(api, {"key_name": "a"}, {"key_name": "b"})

    deleted = admin.post(
        "/_emulator/records/delete", json={"app": 1, "ids": [1, 2]}, headers=password_headers("taro")
    )
    first_two = wait_webhooks(admin, 2)
    emulator.configure(delete_notification_keys="deletedBy")
    add_bulk(api, {"key_name": "c"})
    admin.post("/_emulator/records/delete", json={"app": 1, "ids": [3]}, headers=password_headers("hanako"))
    wait_webhooks(admin, 3)

    assert deleted.status_code == 200
    assert [entry["type"] for entry in first_two] == ["DELETE_RECORD", "DELETE_RECORD"]
    one, two, three = receiver.bodies()
    assert list(one) == ["id", "type", "app", "recordId", "deleteBy", "deleteAt"]
    assert (one["recordId"], two["recordId"], one["deleteBy"]) == ("1", "2", {"code": "taro", "name": "Taro"})
    assert SECOND_TIME.fullmatch(one["deleteAt"])
    assert three["deletedBy"] == {"code": "hanako", "name": "hanako"} and "deletedAt" in three
    assert_kintone_error(api.get("/k/v1/record.json", params={"app": 1, "id": 1}), 404, "GAIA_RE01")
    assert emulator.records() == []


def test_a_screen_delete_needs_the_users_credentials(api: httpx.Client, admin: httpx.Client) -> None:
    add_bulk(api, {"key_name": "a"})
    anonymous = admin.post("/_emulator/records/delete", json={"app": 1, "ids": [1]})
    wrong = admin.post(
        "/_emulator/records/delete", json={"app": 1, "ids": [1]}, headers=password_headers("taro", "wrong")
    )
    assert_kintone_error(anonymous, 401, "CB_AU01")
    assert_kintone_error(wrong, 401, "CB_WA01")
    assert api.get("/k/v1/record.json", params={"app": 1, "id": 1}).status_code == 200


def test_a_record_saved_with_a_password_is_by_that_user(
    api: httpx.Client, admin: httpx.Client, receiver: WebhookReceiver
) -> None:
    saved = api.post(
        "/k/v1/record.json",
        json={"app": 1, "record": fields(key_name="mine", team="red")},
        headers=password_headers("taro"),
    )
    api.put(
        "/k/v1/record.json",
        json={"app": 1, "id": 1, "record": fields(team="blue")},
        headers=password_headers("hanako"),
    )
    api.put("/k/v1/record.json", json={"app": 1, "id": 1, "revision": 2, "record": fields(team="green")})
    wait_webhooks(admin, 3)

    added, by_hanako, by_token = receiver.bodies()
    taro = {"code": "taro", "name": "Taro"}
    assert saved.json() == {"id": "1", "revision": "1"}
    assert (added["type"], added["record"]["作成者"]["value"]) == ("ADD_RECORD", taro)
    assert by_hanako["record"]["更新者"]["value"] == {"code": "hanako", "name": "hanako"}
    assert by_hanako["record"]["作成者"]["value"] == taro
    assert by_token["record"]["更新者"]["value"]["code"] == "Administrator"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Emulator-User": "taro"},  # the emulator once let anyone act as anyone with this; no longer
        password_headers("taro", "wrong"),
        password_headers("nobody", "anything"),
    ],
)
def test_acting_as_a_user_takes_their_password(admin: httpx.Client, headers: dict[str, str]) -> None:
    response = admin.post(
        "/k/v1/record.json", json={"app": 1, "record": fields(key_name="x")}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["code"] in ("CB_AU01", "CB_WA01")


# ---- comments --------------------------------------------------------------------------------------


def test_comments_are_added_listed_and_notified(
    api: httpx.Client, admin: httpx.Client, emulator: KintoneEmulator, receiver: WebhookReceiver
) -> None:
    add_bulk(api, {"key_name": "k"})
    first = api.post(
        "/k/v1/record/comment.json",
        json={
            "app": 1,
            "record": 1,
            "comment": {"text": "issued", "mentions": [{"code": "sato", "type": "USER"}]},
        },
    )
    wait_webhooks(admin, 1)
    for index in range(2, 13):
        api.post("/k/v1/record/comment.json", json={"app": 1, "record": 1, "comment": {"text": f"c{index}"}})

    newest = api.get("/k/v1/record/comments.json", params={"app": 1, "record": 1}).json()
    oldest = api.get("/k/v1/record/comments.json", params={"app": 1, "record": 1, "offset": 10}).json()
    ascending = api.get(
        "/k/v1/record/comments.json", params={"app": 1, "record": 1, "order": "asc", "limit": 2}
    )

    assert first.json() == {"id": "1"}
    notification = receiver.bodies()[0]
    assert list(notification) == ["id", "type", "app", "comment", "recordId", "url"]
    assert notification["type"] == "ADD_RECORD_COMMENT"
    assert notification["recordId"] == "1"
    assert notification["url"] == f"{emulator.base_url}/k/1/show#record=1"
    comment = notification["comment"]
    assert (comment["id"], comment["text"], comment["mentions"]) == (
        "1",
        "issued",
        [{"code": "sato", "type": "USER"}],
    )
    assert comment["creator"] == {"code": "Administrator", "name": "Administrator"}
    assert SECOND_TIME.fullmatch(comment["createdAt"])
    assert [c["id"] for c in newest["comments"]] == [str(i) for i in range(12, 2, -1)]
    assert (newest["older"], newest["newer"]) == (True, False)
    assert [c["id"] for c in oldest["comments"]] == ["2", "1"]
    assert (oldest["older"], oldest["newer"]) == (False, True)
    assert [c["id"] for c in ascending.json()["comments"]] == ["1", "2"]
    assert len(emulator.comments(1)) == 12


def test_comment_errors(api: httpx.Client) -> None:
    add_bulk(api, {"key_name": "k"})

    on_missing_record = api.post(
        "/k/v1/record/comment.json", json={"app": 1, "record": 5, "comment": {"text": "x"}}
    )
    without_text = api.post("/k/v1/record/comment.json", json={"app": 1, "record": 1, "comment": {}})
    too_many = api.get("/k/v1/record/comments.json", params={"app": 1, "record": 1, "limit": 11})

    assert_kintone_error(on_missing_record, 404, "GAIA_RE01")
    assert list(assert_kintone_error(without_text, 400, "CB_VA01")["errors"]) == ["comment.text"]
    assert list(assert_kintone_error(too_many, 400, "CB_VA01")["errors"]) == ["limit"]


# ---- the query language ------------------------------------------------------------------------------

QUERY_DATA = [
    {"key_name": "Alpha key", "team": "red", "models": ["fake-gpt"], "status": "Issued"},
    {"key_name": "beta", "team": "blue", "models": ["other-model", "priced-gpt"], "status": "Pending"},
    {"key_name": "gamma ALPHA", "team": "red"},
    {
        "key_name": "delta",
        "team": "green",
        "models": ["priced-gpt"],
        "status": "Failed",
        "message": "quota hit",
    },
]


@pytest.mark.parametrize(
    ("query", "expected_ids"),
    [
        ("", [4, 3, 2, 1]),
        ('team = "red"', [3, 1]),
        ('team != "red"', [4, 2]),
        ('team in ("red", "green") and status in ("Issued", "Failed")', [4, 1]),
        ('(team = "blue" or team = "green") and models in ("priced-gpt")', [4, 2]),
        ('team = "blue" or team = "green" and models in ("fake-gpt")', [2]),
        ('models not in ("priced-gpt")', [3, 1]),
        ('models in ("")', [3]),
        ('status in ("")', [3]),
        ('status not in ("Issued", "")', [4, 2]),
        ('key_name like "alpha"', [3, 1]),
        ('key_name not like "ALPHA"', [4, 2]),
        ('message like "quota"', [4]),
        ("message is empty", [3, 2, 1]),
        ("$id >= 2 and $id <= 3", [3, 2]),
        ('レコード番号 in (1, "4")', [4, 1]),
        ('key_name = "say \\"hi\\""', []),
        ("作成者 in (LOGINUSER())", [4, 3, 2, 1]),
        ('更新者 not in ("Administrator")', []),
        ("order by $id asc", [1, 2, 3, 4]),
        ("order by team asc, $id asc", [2, 4, 1, 3]),
        ('team = "red" order by $id asc', [1, 3]),
        ("order by $id asc limit 2 offset 1", [2, 3]),
        ("ORDER BY $id DESC LIMIT 1", [4]),
    ],
)
def test_queries_select_and_order_like_kintone(
    api: httpx.Client, query: str, expected_ids: list[int]
) -> None:
    add_bulk(api, *QUERY_DATA)

    response = api.get("/k/v1/records.json", params={"app": 1, "query": query, "totalCount": "true"})

    assert response.status_code == 200, response.text
    assert [int(record["$id"]["value"]) for record in response.json()["records"]] == expected_ids


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ('team = "red" and', "CB_VA01"),
        ("team == 'red'", "CB_VA01"),
        ('team = "unterminated', "CB_VA01"),
        ('更新日時 > "not a date"', "CB_VA01"),
        ("order by models asc", "CB_VA01"),
        ('nosuch = "x"', "GAIA_IQ11"),
        ('status = "Issued"', "GAIA_IQ03"),
        ('message = "x"', "GAIA_IQ03"),
        ("limit 501", "GAIA_QU01"),
        ("offset 10001", "GAIA_QU02"),
    ],
)
def test_bad_queries_get_kintone_errors(api: httpx.Client, query: str, code: str) -> None:
    response = api.get("/k/v1/records.json", params={"app": 1, "query": query})

    body = assert_kintone_error(response, 400, code)
    if code == "CB_VA01":
        assert list(body["errors"]) == ["query"]


def test_records_answer_total_count_only_on_request_and_only_the_asked_fields(api: httpx.Client) -> None:
    add_bulk(api, *QUERY_DATA)

    plain = api.get("/k/v1/records.json", params={"app": 1, "query": "limit 1"}).json()
    counted = api.get(
        "/k/v1/records.json",
        params={
            "app": 1,
            "query": 'team = "red" limit 1',
            "totalCount": "true",
            "fields[0]": "$id",
            "fields[1]": "team",
        },
    ).json()

    assert plain["totalCount"] is None
    assert counted["totalCount"] == "2"
    assert counted["records"] == [
        {"$id": {"type": "__ID__", "value": "3"}, "team": {"type": "SINGLE_LINE_TEXT", "value": "red"}}
    ]


def test_a_get_can_be_sent_as_a_post_with_method_override(api: httpx.Client) -> None:
    add_bulk(api, *QUERY_DATA)

    response = api.post(
        "/k/v1/records.json",
        json={"app": 1, "query": 'team = "green"', "fields": ["key_name"]},
        headers={"X-HTTP-Method-Override": "GET"},
    )

    assert response.json()["records"] == [{"key_name": {"type": "SINGLE_LINE_TEXT", "value": "delta"}}]


def test_datetime_queries_compare_minute_precision_record_times(
    api: httpx.Client, emulator: KintoneEmulator
) -> None:
    add_bulk(api, {"key_name": "old"}, {"key_name": "midnight"}, {"key_name": "now"})
    emulator.set_record_times(
        1, created_at=utc(2026, 1, 10, 8, 30, 45), updated_at=utc(2026, 1, 10, 8, 30, 45)
    )
    emulator.set_record_times(2, created_at=utc(2026, 1, 11), updated_at=utc(2026, 1, 11))

    def ids(query: str) -> list[int]:
        records = api.get("/k/v1/records.json", params={"app": 1, "query": query}).json()["records"]
        return [int(record["$id"]["value"]) for record in records]

    assert emulator.records()[0]["更新日時"]["value"] == "2026-01-10T08:30:00Z"
    assert ids('更新日時 < "2026-01-11T00:00:00Z"') == [1]
    assert ids('更新日時 >= "2026-01-11T09:00:00+09:00"') == [3, 2]
    assert ids('更新日時 = "2026-01-10"') == [1]
    assert ids('更新日時 > "2026-01-10T08:30:00Z"') == [3, 2]  # 08:30:45 was kept as 08:30
    assert ids('作成日時 = "2026-01-10T08:30:00Z"') == [1]
    assert ids("作成日時 > FROM_TODAY(-30, DAYS)") == [3]
    assert ids("作成日時 < FROM_TODAY(-30, DAYS) order by 作成日時 asc") == [1, 2]
    assert ids("更新日時 <= NOW()") == [3, 2, 1]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return float(calendar.timegm((year, month, day, hour, minute, second)))


# ---- faults, concurrency and the wait endpoints --------------------------------------------------------


def test_injected_faults_answer_kintone_errors_then_stop(api: httpx.Client, admin: httpx.Client) -> None:
    add_bulk(api, {"key_name": "k"})
    admin.post(
        "/_emulator/faults",
        json={"path_prefix": "/k/v1/record.json", "method": "GET", "status": 429, "count": 2},
    )
    admin.post(
        "/_emulator/faults", json={"path_prefix": "/k/v1/records.json", "status": 503, "code": "GAIA_UN03"}
    )

    throttled = [api.get("/k/v1/record.json", params={"app": 1, "id": 1}) for _ in range(2)]
    recovered = api.get("/k/v1/record.json", params={"app": 1, "id": 1})
    unavailable = api.get("/k/v1/records.json", params={"app": 1})
    admin.post("/_emulator/faults", json={"path_prefix": "/k/v1/records.json", "status": 500})
    admin.delete("/_emulator/faults")
    cleared = api.get("/k/v1/records.json", params={"app": 1})
    refused = admin.post("/_emulator/faults", json={"path_prefix": "/elsewhere", "status": 500})

    for response in throttled:
        assert_kintone_error(response, 429, "GAIA_TO04")
    assert recovered.status_code == 200
    assert_kintone_error(unavailable, 503, "GAIA_UN03")
    assert cleared.status_code == 200
    assert refused.status_code == 400


def test_more_concurrent_requests_than_the_limit_get_429(admin: httpx.Client) -> None:
    with KintoneEmulator(api_tokens=[TOKEN], max_concurrent_requests=1) as small_app:
        admin.post(f"{small_app.base_url}/k/v1/record.json", json={"app": 1}, headers=TOKEN_HEADERS)
        small_app.add_fault(path_prefix="/k/v1/record.json", delay_seconds=30)
        held: list[httpx.Response] = []
        holder = threading.Thread(
            target=lambda: held.append(
                admin.get(
                    f"{small_app.base_url}/k/v1/record.json",
                    params={"app": 1, "id": 1},
                    headers=TOKEN_HEADERS,
                )
            )
        )
        holder.start()
        assert small_app.wait_for_in_flight(1, timeout=5)
        rejected = admin.get(
            f"{small_app.base_url}/k/v1/records.json", params={"app": 1}, headers=TOKEN_HEADERS
        )
        small_app.release_delayed_requests()
        holder.join(timeout=10)

    assert_kintone_error(rejected, 429, "GAIA_TO04")
    assert rejected.headers["X-ConcurrencyLimit-Limit"] == "1"
    assert rejected.headers["X-ConcurrencyLimit-Running"] == "2"  # the refused request counts
    assert held[0].status_code == 200


def test_record_wait_returns_the_time_of_the_write_that_matched(
    api: httpx.Client, admin: httpx.Client, emulator: KintoneEmulator
) -> None:
    add_bulk(api, {"key_name": "k"})
    results: list[httpx.Response] = []
    waiter = threading.Thread(
        target=lambda: results.append(
            admin.get(
                "/_emulator/records/wait",
                params={"app": 1, "id": 1, "field": "api_key", "nonempty": "true", "timeout": 5},
            )
        )
    )
    waiter.start()
    before = time.time()
    api.put("/k/v1/records.json", json={"app": 1, "records": [{"id": 1, "record": fields(api_key="sk-1")}]})
    after = time.time()
    api.put("/k/v1/records.json", json={"app": 1, "records": [{"id": 1, "record": fields(message="done")}]})
    waiter.join(timeout=10)

    match = results[0].json()
    assert results[0].status_code == 200
    assert match["matched"] is True
    assert match["matched_revision"] == "2"
    assert before <= match["matched_at"] <= after
    assert match["record"]["api_key"]["value"] == "sk-1"
    later = emulator.wait_for_record(1, RecordCondition(revision_gt=2), timeout=1)
    assert later is not None and later.matched_revision == 3


def test_waits_time_out_without_a_match(api: httpx.Client, admin: httpx.Client) -> None:
    add_bulk(api, {"key_name": "k"})

    record_wait = admin.get(
        "/_emulator/records/wait",
        params={"app": 1, "id": 1, "field": "api_key", "equals": "never", "timeout": 0.1},
    )
    webhook_wait = admin.get("/_emulator/webhooks/wait", params={"count": 1, "timeout": 0.1})
    bad_wait = admin.get("/_emulator/records/wait", params={"app": 1, "id": 1, "timeout": 0.1})

    assert record_wait.status_code == 408
    assert record_wait.json()["matched"] is False
    assert record_wait.json()["record"]["$id"]["value"] == "1"
    assert webhook_wait.json()["timed_out"] is True
    assert bad_wait.status_code == 400


def test_reset_forgets_everything(api: httpx.Client, admin: httpx.Client, emulator: KintoneEmulator) -> None:
    api.post("/k/v1/record.json", json={"app": 1, "record": fields(key_name="k")})
    wait_webhooks(admin, 1)

    admin.post("/_emulator/reset")
    added = api.post("/k/v1/record.json", json={"app": 1, "record": fields(key_name="again")})

    assert added.json()["id"] == "1"
    assert len(emulator.records()) == 1
    assert [entry["record_id"] for entry in wait_webhooks(admin, 1)] == ["1"]
    assert admin.get("/_emulator/health").json()["records"] == 1


def test_the_command_line_prints_the_base_url_and_writes_the_ready_file(
    admin: httpx.Client, tmp_path: Path
) -> None:
    ready_file = tmp_path / "kintone.url"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.kintone_emulator",
            "--port",
            "0",
            "--api-token",
            TOKEN,
            "--ready-file",
            str(ready_file),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=10), "the emulator printed nothing within 10 s"
        line = process.stdout.readline().strip()
        base_url = line.removeprefix("KINTONE_BASE_URL=")
        health = admin.get(f"{base_url}/_emulator/health")
        records = admin.get(f"{base_url}/k/v1/records.json", params={"app": 1}, headers=TOKEN_HEADERS)
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=10)

    assert re.fullmatch(r"KINTONE_BASE_URL=http://127\.0\.0\.1:\d+", line)
    assert ready_file.read_text().strip() == line
    assert health.json()["status"] == "ok"
    assert records.json() == {"records": [], "totalCount": None}
    assert exit_code == 0
