"""The emulator's cybozu.com User API: reads, the administrator's writes, auth, paging and faults."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from local.kintone_emulator import KintoneEmulator
from tests.unit.emulator_directory import (
    DANGEROUS_TOKEN,
    READ_TOKEN,
    WRITE_TOKEN,
    bearer,
    build_directory,
    password_headers,
)

APP_TOKEN = "kintone-app-token"


@pytest.fixture
def emulator() -> Iterator[KintoneEmulator]:
    with KintoneEmulator(app_id="1", api_tokens=[APP_TOKEN], directory=build_directory()) as emulator:
        yield emulator


@pytest.fixture
def client(emulator: KintoneEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.base_url, timeout=10) as client:
        yield client


def codes(users: list[dict]) -> list[str]:
    return [user["code"] for user in users]


def test_users_come_in_id_order_with_cybozu_fields_and_pages(client: httpx.Client) -> None:
    everyone = client.get("/v1/users.json", headers=bearer(READ_TOKEN))
    assert everyone.status_code == 200
    users = everyone.json()["users"]
    assert codes(users) == ["admin", "taro", "hanako", "jiro", "saburo", "shiro"]
    taro = users[1]
    assert taro["name"] == "Taro" and taro["valid"] is True and isinstance(taro["id"], str)
    assert {"ctime", "mtime", "email", "primaryOrganization"} <= set(taro)
    assert "password" not in taro

    page = client.get("/v1/users.json", params={"offset": 2, "size": 2}, headers=bearer(READ_TOKEN))
    assert codes(page.json()["users"]) == ["hanako", "jiro"]

    chosen = client.get(
        "/v1/users.json",
        params={"codes[0]": "jiro", "codes[1]": "taro", "codes[2]": "nobody"},
        headers=bearer(READ_TOKEN),
    )
    assert codes(chosen.json()["users"]) == ["taro", "jiro"]
    by_id = client.get("/v1/users.json", params={"ids[0]": taro["id"]}, headers=bearer(READ_TOKEN))
    assert codes(by_id.json()["users"]) == ["taro"]


@pytest.mark.parametrize(
    "params",
    [
        {"size": 0},
        {"size": 101},
        {"offset": -1},
        {"size": "many"},
        {"codes[0]": "taro", "ids[0]": "1"},
        {f"codes[{i}]": f"user{i}" for i in range(101)},
    ],
)
def test_bad_paging_and_filters_are_refused_like_cybozu(client: httpx.Client, params: dict) -> None:
    response = client.get("/v1/users.json", params=params, headers=bearer(READ_TOKEN))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "CB_VA01" and body["id"] and body["errors"]


def test_a_users_organizations_and_groups(client: httpx.Client) -> None:
    organizations = client.get(
        "/v1/user/organizations.json", params={"code": "taro"}, headers=bearer(READ_TOKEN)
    )
    (entry,) = organizations.json()["organizationTitles"]
    assert entry["organization"]["code"] == "platform" and entry["title"] is None
    assert entry["organization"]["parentCode"] is None

    groups = client.get("/v1/user/groups.json", params={"code": "admin"}, headers=bearer(READ_TOKEN))
    assert [group["code"] for group in groups.json()["groups"]] == ["llm-operators"]
    none = client.get("/v1/user/groups.json", params={"code": "saburo"}, headers=bearer(READ_TOKEN))
    assert none.json() == {"groups": []}

    unknown = client.get("/v1/user/organizations.json", params={"code": "nobody"}, headers=bearer(READ_TOKEN))
    assert unknown.status_code == 400 and unknown.json()["code"] == "CB_VA01"
    missing = client.get("/v1/user/groups.json", headers=bearer(READ_TOKEN))
    assert missing.status_code == 400


def test_an_organizations_and_a_groups_members(client: httpx.Client) -> None:
    members = client.get(
        "/v1/organization/users.json", params={"code": "platform"}, headers=bearer(READ_TOKEN)
    )
    # Direct members only: shiro is in the child organization platform-sre.
    assert [entry["user"]["code"] for entry in members.json()["userTitles"]] == ["taro", "hanako"]
    page = client.get(
        "/v1/organization/users.json",
        params={"code": "platform", "offset": 1, "size": 1},
        headers=bearer(READ_TOKEN),
    )
    assert [entry["user"]["code"] for entry in page.json()["userTitles"]] == ["hanako"]

    group = client.get("/v1/group/users.json", params={"code": "llm-operators"}, headers=bearer(READ_TOKEN))
    assert codes(group.json()["users"]) == ["admin"]

    for path in ("/v1/organization/users.json", "/v1/group/users.json"):
        unknown = client.get(path, params={"code": "nowhere"}, headers=bearer(READ_TOKEN))
        assert unknown.status_code == 400 and unknown.json()["code"] == "CB_VA01"


def test_organizations_carry_their_parent(client: httpx.Client) -> None:
    organizations = client.get("/v1/organizations.json", headers=bearer(READ_TOKEN)).json()["organizations"]
    assert [(org["code"], org["parentCode"]) for org in organizations] == [
        ("platform", None),
        ("platform-sre", "platform"),
        ("research", None),
    ]
    chosen = client.get("/v1/organizations.json", params={"codes[0]": "research"}, headers=bearer(READ_TOKEN))
    assert [org["code"] for org in chosen.json()["organizations"]] == ["research"]


def test_any_valid_user_reads_with_a_password(client: httpx.Client) -> None:
    response = client.get("/v1/users.json", params={"codes[0]": "taro"}, headers=password_headers("jiro"))
    assert response.status_code == 200 and codes(response.json()["users"]) == ["taro"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "CB_AU01"),
        ({"X-Cybozu-API-Token": APP_TOKEN}, "CB_AU01"),  # a kintone app token cannot call the User API
        (bearer(APP_TOKEN), "CB_AU01"),
        (bearer("not-a-token"), "CB_AU01"),
        ({"Authorization": f"Basic {READ_TOKEN}"}, "CB_AU01"),
        (password_headers("taro", "wrong"), "CB_WA01"),
        (password_headers("nobody", "anything"), "CB_WA01"),
        ({"X-Cybozu-Authorization": "not base64!"}, "CB_WA01"),
    ],
)
def test_reads_without_a_valid_credential_are_refused(
    client: httpx.Client, headers: dict[str, str], code: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/v1/users.json", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == code
    assert READ_TOKEN not in caplog.text and APP_TOKEN not in caplog.text


def test_a_suspended_user_cannot_sign_in(client: httpx.Client, emulator: KintoneEmulator) -> None:
    emulator.directory.set_valid("jiro", False)
    response = client.get("/v1/users.json", headers=password_headers("jiro"))
    assert response.status_code == 401 and response.json()["code"] == "CB_WA01"


def test_the_administrator_deactivates_a_user(client: httpx.Client) -> None:
    body = {"users": [{"code": "taro", "valid": False}]}
    assert client.put("/v1/users.json", json=body, headers=password_headers("admin")).json() == {}
    taro = client.get("/v1/users.json", params={"codes[0]": "taro"}, headers=bearer(READ_TOKEN)).json()
    assert taro["users"][0]["valid"] is False
    reactivated = client.put(
        "/v1/users.json", json={"users": [{"code": "taro", "valid": True}]}, headers=bearer(WRITE_TOKEN)
    )
    assert reactivated.status_code == 200
    assert client.get("/v1/users.json", headers=password_headers("taro")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/users.json", {"users": [{"code": "taro", "valid": False}]}),
        ("PUT", "/v1/userOrganizations.json", {"userOrganizations": [{"code": "taro", "organizations": []}]}),
        ("PUT", "/v1/user/groups.json", {"code": "taro", "groups": ["llm-operators"]}),
    ],
)
def test_writes_need_an_administrator_or_a_writing_token(
    client: httpx.Client, emulator: KintoneEmulator, method: str, path: str, body: dict
) -> None:
    for headers in (password_headers("hanako"), bearer(READ_TOKEN)):
        refused = client.request(method, path, json=body, headers=headers)
        assert refused.status_code == 403 and refused.json()["code"] == "CB_NO02"
    taro = emulator.directory
    assert taro.user("taro").valid and taro.in_organization("taro", "platform", include_subs=False)
    assert not taro.in_group("taro", "llm-operators")
    assert client.request(method, path, json=body, headers=password_headers("admin")).status_code == 200


def test_user_groups_need_the_dangerous_zone_scope_with_a_token(client: httpx.Client) -> None:
    body = {"code": "taro", "groups": ["llm-operators"]}
    refused = client.put("/v1/user/groups.json", json=body, headers=bearer(WRITE_TOKEN))
    assert refused.status_code == 403
    assert client.put("/v1/user/groups.json", json=body, headers=bearer(DANGEROUS_TOKEN)).status_code == 200
    groups = client.get("/v1/user/groups.json", params={"code": "taro"}, headers=bearer(READ_TOKEN))
    assert [group["code"] for group in groups.json()["groups"]] == ["llm-operators"]


def test_user_organizations_are_replaced_by_the_full_list(
    client: httpx.Client, emulator: KintoneEmulator
) -> None:
    move = {
        "userOrganizations": [{"code": "taro", "organizations": [{"orgCode": "research", "titleCode": ""}]}]
    }
    assert client.put("/v1/userOrganizations.json", json=move, headers=bearer(WRITE_TOKEN)).json() == {}
    assert not emulator.directory.in_organization("taro", "platform", include_subs=False)
    members = client.get(
        "/v1/organization/users.json", params={"code": "research"}, headers=bearer(READ_TOKEN)
    )
    assert [entry["user"]["code"] for entry in members.json()["userTitles"]] == ["taro", "jiro"]

    leave = {"userOrganizations": [{"code": "taro", "organizations": []}]}
    client.put("/v1/userOrganizations.json", json=leave, headers=bearer(WRITE_TOKEN))
    titles = client.get("/v1/user/organizations.json", params={"code": "taro"}, headers=bearer(READ_TOKEN))
    assert titles.json() == {"organizationTitles": []}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/users.json", {"users": [{"code": "nobody", "valid": False}]}),
        ("/v1/users.json", {"users": [{"code": "taro", "valid": "no"}]}),
        ("/v1/users.json", {"users": []}),
        (
            "/v1/userOrganizations.json",
            {"userOrganizations": [{"code": "taro", "organizations": [{"orgCode": "x"}]}]},
        ),
        ("/v1/userOrganizations.json", {"userOrganizations": [{"code": "taro"}]}),
        ("/v1/user/groups.json", {"code": "taro", "groups": ["no-such-group"]}),
        ("/v1/user/groups.json", {"code": "nobody", "groups": []}),
    ],
)
def test_bad_writes_are_refused_and_change_nothing(
    client: httpx.Client, emulator: KintoneEmulator, path: str, body: dict
) -> None:
    response = client.put(path, json=body, headers=password_headers("admin"))
    assert response.status_code == 400 and response.json()["code"] == "CB_VA01"
    assert emulator.directory.user("taro").valid
    assert emulator.directory.in_organization("taro", "platform", include_subs=False)


def test_a_write_with_one_bad_entry_changes_no_user(client: httpx.Client, emulator: KintoneEmulator) -> None:
    body = {"users": [{"code": "taro", "valid": False}, {"code": "nobody", "valid": False}]}
    assert client.put("/v1/users.json", json=body, headers=password_headers("admin")).status_code == 400
    assert emulator.directory.user("taro").valid


def test_faults_cover_the_user_api(client: httpx.Client, emulator: KintoneEmulator) -> None:
    emulator.add_fault(path_prefix="/v1/organization/users.json", status=503, count=1)
    failed = client.get(
        "/v1/organization/users.json", params={"code": "platform"}, headers=bearer(READ_TOKEN)
    )
    assert failed.status_code == 503 and failed.json()["code"] == "EMULATOR_FAULT"

    emulator.add_fault(path_prefix="/v1/", status=429, method="GET")
    assert client.get("/v1/users.json", headers=bearer(READ_TOKEN)).status_code == 429

    emulator.add_fault(path_prefix="/v1/organization/users.json", truncate_to=1)
    partial = client.get(
        "/v1/organization/users.json", params={"code": "platform"}, headers=bearer(READ_TOKEN)
    )
    assert partial.status_code == 200 and len(partial.json()["userTitles"]) == 1
    whole = client.get("/v1/organization/users.json", params={"code": "platform"}, headers=bearer(READ_TOKEN))
    assert len(whole.json()["userTitles"]) == 2


def test_a_slow_user_api_answer_times_a_client_out_until_released(
    client: httpx.Client, emulator: KintoneEmulator
) -> None:
    emulator.add_fault(path_prefix="/v1/users.json", delay_seconds=30)
    with pytest.raises(httpx.ReadTimeout):
        client.get("/v1/users.json", headers=bearer(READ_TOKEN), timeout=0.2)
    emulator.release_delayed_requests()
    assert client.get("/v1/users.json", headers=bearer(READ_TOKEN)).status_code == 200


@pytest.mark.parametrize(
    "rule",
    [
        {"path_prefix": "/elsewhere", "status": 500},
        {"path_prefix": "/v1/", "truncate_to": -1},
        {"path_prefix": "/v1/", "truncate_to": 1, "status": 500},
    ],
)
def test_bad_fault_rules_are_refused(emulator: KintoneEmulator, rule: dict) -> None:
    with pytest.raises(ValueError):
        emulator.add_fault(**rule)
