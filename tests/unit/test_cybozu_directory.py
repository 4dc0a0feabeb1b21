"""The cybozu.com User API client against scripted answers (shapes from cybozu's User API reference)."""

from __future__ import annotations

import base64
import math
from urllib.parse import parse_qs

import httpx
import pytest

from lambdas.adapters.cybozu_directory import (
    PAGE_SIZE,
    CybozuDirectory,
    api_token_headers,
    password_headers,
)
from lambdas.adapters.retries import RetryPolicy
from lambdas.domain.membership import Memberships, owners_who_left
from lambdas.domain.ports import DirectoryError, DirectoryUser, KeyState, KeyStatus, TransientError
from lambdas.domain.redaction import register_secret
from lambdas.domain.teams import TeamCatalog

BASE_URL = "https://example.cybozu.com"
TOKEN = "common-admin-token-0123456789"


def user(code: str, valid: bool = True) -> dict:
    """A User as the API answers it (the fields this client ignores trimmed to a few)."""
    return {"id": "7", "code": code, "valid": valid, "name": code.title(), "email": f"{code}@example.com"}


class StoredSecret:
    """A credential as Secrets Manager holds it: `stored` changes when it is rotated."""

    def __init__(self, value: str) -> None:
        self.stored = self.cached = value

    def current(self) -> str:
        return self.cached

    def refreshed(self) -> str:
        self.cached = self.stored
        return self.cached


def directory(
    handler, credential: StoredSecret | None = None, login: str | None = None
) -> tuple[CybozuDirectory, list[httpx.Request]]:
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return handler(request)

    client = CybozuDirectory(
        BASE_URL,
        credential or StoredSecret(TOKEN),
        5,
        login=login,
        transport=httpx.MockTransport(answer),
        retry_policy=RetryPolicy(base_seconds=0),
    )
    return client, requests


def query(request: httpx.Request) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(request.url.query.decode()).items()}


def members_in_pages(members: dict[str, list[dict]], key: str = "userTitles"):
    """An organization (or group) member list served in cybozu's pages, honouring size and offset."""

    def handler(request: httpx.Request) -> httpx.Response:
        params = query(request)
        size, offset = int(params["size"]), int(params["offset"])
        assert 1 <= size <= 100
        page = members[params["code"]][offset : offset + size]
        entries = [{"user": entry, "title": None} for entry in page] if key == "userTitles" else page
        return httpx.Response(200, json={key: entries})

    return handler


def test_a_token_goes_in_the_bearer_header_and_a_password_in_cybozus_own() -> None:
    assert api_token_headers("t0k") == {"Authorization": "Bearer t0k"}
    header = password_headers("reader", "pa:ss")["X-Cybozu-Authorization"]
    assert base64.b64decode(header).decode() == "reader:pa:ss"


def test_users_are_asked_for_by_login_name_a_hundred_at_a_time() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        codes = [value for name, value in query(request).items() if name.startswith("codes[")]
        return httpx.Response(
            200, json={"users": [user(code, code != "u3") for code in codes if code != "u7"]}
        )

    client, requests = directory(handler)
    codes = [f"u{number}" for number in range(250)]

    found = client.users([*codes, "u1"])  # a repeated name is asked once

    assert len(requests) == 3
    assert all(request.url.path == "/v1/users.json" for request in requests)
    assert requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert len(found) == 249  # u7 has no user
    assert DirectoryUser(code="u3", valid=False) in found


def test_member_lists_are_read_page_by_page_until_a_short_page() -> None:
    members = {"platform": [user(f"p{number}") for number in range(250)]}
    client, requests = directory(members_in_pages(members))

    listed = client.organization_members("platform")

    assert [user.code for user in listed] == [f"p{number}" for number in range(250)]
    assert [query(request)["offset"] for request in requests] == ["0", "100", "200"]
    assert {request.url.path for request in requests} == {"/v1/organization/users.json"}


def test_a_member_list_of_exactly_full_pages_ends_with_an_empty_one() -> None:
    members = {"ops": [user(f"g{number}") for number in range(200)]}
    client, requests = directory(members_in_pages(members, key="users"))

    assert len(client.group_members("ops")) == 200
    assert len(requests) == 3


def test_a_users_organizations_and_groups_and_the_organization_tree() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/user/organizations.json":
            organization = {"id": "2", "code": "platform-sre", "name": "SRE", "parentCode": "platform"}
            return httpx.Response(
                200, json={"organizationTitles": [{"organization": organization, "title": None}]}
            )
        if path == "/v1/user/groups.json":
            return httpx.Response(200, json={"groups": [{"id": "1", "code": "everyone", "name": "Everyone"}]})
        organizations = [
            {"id": "1", "code": "platform", "name": "Platform", "parentCode": None},
            {"id": "2", "code": "platform-sre", "name": "SRE", "parentCode": "platform"},
        ]
        return httpx.Response(200, json={"organizations": organizations})

    client, _ = directory(handler)

    assert client.organizations_of("taro") == ["platform-sre"]
    assert client.groups_of("taro") == ["everyone"]
    assert [(org.code, org.parent_code) for org in client.organizations()] == [
        ("platform", None),
        ("platform-sre", "platform"),
    ]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503, text="unavailable"),
        httpx.Response(502, json={"code": "CB_IJ01", "id": "x", "message": "bad gateway"}),
        httpx.Response(429, json={"code": "CB_TM01", "id": "x", "message": "too many requests"}),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("refused"),
        httpx.Response(200, text='{"userTitles": [{"user": '),  # cut off
        httpx.Response(200, json={"message": "no list"}),
        httpx.Response(200, json={"userTitles": [{"user": {"code": "taro"}}]}),  # no valid flag
    ],
)
def test_faults_and_partial_answers_are_transient(answer: httpx.Response | Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    client, _ = directory(handler)
    with pytest.raises(TransientError):
        client.organization_members("platform")


def test_a_fault_is_retried_within_the_call() -> None:
    answers = [httpx.Response(503, text="busy"), httpx.Response(200, json={"users": [user("taro")]})]
    client, requests = directory(lambda request: answers.pop(0))

    assert client.users(["taro"]) == [DirectoryUser(code="taro", valid=True)]
    assert len(requests) == 2


def test_a_fault_on_a_later_page_fails_the_whole_list() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if query(request)["offset"] == "0":
            return httpx.Response(
                200, json={"userTitles": [{"user": user(f"p{n}")} for n in range(PAGE_SIZE)]}
            )
        return httpx.Response(500, text="oops")

    client, _ = directory(handler)
    with pytest.raises(TransientError, match="answered 500"):
        client.organization_members("platform")


def test_a_password_goes_with_the_login_and_a_rotated_credential_is_read_again() -> None:
    secret = StoredSecret("old-password")
    secret.stored = "new-password"  # changed in Secrets Manager since it was cached
    refusal = {"code": "CB_WA01", "id": "1", "message": "Password authentication failed."}

    def handler(request: httpx.Request) -> httpx.Response:
        sent = base64.b64decode(request.headers["X-Cybozu-Authorization"]).decode()
        if sent != "reader:new-password":
            return httpx.Response(401, json=refusal)
        return httpx.Response(200, json={"groups": []})

    client, requests = directory(handler, credential=secret, login="reader")

    assert client.groups_of("taro") == []
    assert len(requests) == 2
    assert "Authorization" not in requests[-1].headers


def test_refusals_are_permanent_and_name_the_code_without_the_credential() -> None:
    register_secret(TOKEN)  # as the wiring does with every credential it loads
    refusal = {"code": "CB_WA01", "id": "1505999166-897850006", "message": f"bad token {TOKEN}"}
    client, _ = directory(lambda request: httpx.Response(401, json=refusal))

    with pytest.raises(DirectoryError, match="answered 401 CB_WA01") as error:
        client.users(["taro"])
    assert TOKEN not in str(error.value)


def test_a_sweep_of_ten_thousand_keys_costs_a_few_dozen_calls() -> None:
    """Read per team, not per owner: 10,000 keys of 2,400 owners in two teams."""
    members = {
        "platform": [user(f"p{number}", valid=number != 5) for number in range(1500)],
        "research": [user(f"r{number}") for number in range(900)],
    }
    client, requests = directory(members_in_pages(members))
    catalog = TeamCatalog.model_validate(
        {
            "platform": {"models": ["m"], "members": {"organizations": [{"code": "platform"}]}},
            "research": {"models": ["m"], "members": {"organizations": [{"code": "research"}]}},
        }
    )
    states = [
        KeyState(
            app_id="1",
            record_id=str(number),
            status=KeyStatus.ISSUED,
            team="platform" if number % 2 else "research",
            owner=f"p{number % 1500}" if number % 2 else f"r{number % 900}",
        )
        for number in range(10_000)
    ]
    states.append(
        KeyState(app_id="1", record_id="10000", status=KeyStatus.ISSUED, team="platform", owner="gone")
    )

    left = owners_who_left(states, catalog, Memberships(client))

    assert len(requests) == math.ceil(1500 / 100) + 1 + math.ceil(900 / 100) + 1  # each ends on a short page
    # p5 is deactivated (their keys are records 5, 1505, …, 9005); "gone" is in no list.
    assert sorted(state.owner for state in left) == ["gone"] + ["p5"] * 7
