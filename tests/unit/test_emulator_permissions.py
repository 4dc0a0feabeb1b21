"""Record and app permissions bind users who sign in with a password; API tokens see everything."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from local.kintone_emulator import KintoneEmulator
from tests.unit.emulator_directory import build_directory, password_headers

TOKEN = "record-token"
MANAGE_TOKEN = "manage-token"
TOKEN_HEADERS = {"X-Cybozu-API-Token": TOKEN}
MANAGE = {"X-Cybozu-API-Token": MANAGE_TOKEN}


def entity(kind: str, code: str, *rights: str, include_subs: bool = False) -> dict[str, Any]:
    return {
        "entity": {"type": kind, "code": code},
        **{right: right in rights for right in ("viewable", "editable", "deletable")},
        "includeSubs": include_subs,
    }


RULES = [
    {
        "filterCond": 'team in ("platform")',
        "entities": [
            # Listed first, "everyone" still comes last: members of platform are not shut out by it.
            entity("GROUP", "everyone"),
            entity("ORGANIZATION", "platform", "viewable", "editable", include_subs=True),
            entity("FIELD_ENTITY", "owner", "viewable", "editable"),
            entity("FIELD_ENTITY", "作成者", "viewable"),
            entity("GROUP", "llm-operators", "viewable", "editable", "deletable"),
        ],
    },
    {"filterCond": 'team in ("research")', "entities": [entity("ORGANIZATION", "research", "viewable")]},
]


@pytest.fixture
def emulator() -> Iterator[KintoneEmulator]:
    with KintoneEmulator(
        app_id="1",
        api_tokens=[TOKEN],
        app_management_tokens=[MANAGE_TOKEN],
        directory=build_directory(),
        app_creator="admin",
    ) as emulator:
        yield emulator


@pytest.fixture
def client(emulator: KintoneEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.base_url, timeout=10) as client:
        acl = client.put("/k/v1/record/acl.json", json={"app": 1, "rights": RULES}, headers=MANAGE)
        assert acl.status_code == 200, acl.text
        yield client


def save(client: httpx.Client, headers: dict[str, str], **values: Any) -> str:
    record = {code: {"value": value} for code, value in values.items()}
    response = client.post("/k/v1/record.json", json={"app": 1, "record": record}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def read(client: httpx.Client, login: str, record_id: str) -> httpx.Response:
    return client.get(
        "/k/v1/record.json", params={"app": 1, "id": record_id}, headers=password_headers(login)
    )


def visible_ids(client: httpx.Client, login: str, query: str = "") -> tuple[list[str], str]:
    response = client.get(
        "/k/v1/records.json",
        params={"app": 1, "query": query, "totalCount": "true"},
        headers=password_headers(login),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return [record["$id"]["value"] for record in body["records"]], body["totalCount"]


def test_a_team_record_is_seen_by_its_team_its_owner_and_operators_only(client: httpx.Client) -> None:
    record_id = save(client, TOKEN_HEADERS, key_name="k", team="platform", owner=[{"code": "saburo"}])
    for login in ("taro", "hanako", "shiro", "saburo", "admin"):  # shiro: platform-sre, a sub-organization
        assert read(client, login, record_id).status_code == 200, login
    refused = read(client, "jiro", record_id)
    assert refused.status_code == 403 and refused.json()["code"] == "CB_NO02"
    assert (
        client.get("/k/v1/record.json", params={"app": 1, "id": record_id}, headers=TOKEN_HEADERS).status_code
        == 200
    )


def test_a_user_who_may_not_view_a_record_does_not_find_it_nor_count_it(client: httpx.Client) -> None:
    platform = save(client, TOKEN_HEADERS, key_name="p", team="platform")
    research = save(client, TOKEN_HEADERS, key_name="r", team="research")
    open_to_all = save(client, TOKEN_HEADERS, key_name="o", team="elsewhere")  # no rule matches it
    assert visible_ids(client, "jiro") == ([open_to_all, research], "2")
    assert visible_ids(client, "taro") == ([open_to_all, platform], "2")
    assert visible_ids(client, "saburo") == ([open_to_all], "1")
    assert visible_ids(client, "jiro", 'key_name = "p"') == ([], "0")
    assert visible_ids(client, "admin", "limit 1") == ([open_to_all], "2")


def test_the_creator_field_entity_lets_the_creator_view_but_not_edit(client: httpx.Client) -> None:
    record_id = save(client, password_headers("jiro"), key_name="mine", team="platform")
    assert read(client, "jiro", record_id).json()["record"]["作成者"]["value"]["code"] == "jiro"
    edit = client.put(
        "/k/v1/record.json",
        json={"app": 1, "id": record_id, "record": {"key_name": {"value": "changed"}}},
        headers=password_headers("jiro"),
    )
    assert edit.status_code == 403 and edit.json()["code"] == "CB_NO02"
    by_member = client.put(
        "/k/v1/record.json",
        json={"app": 1, "id": record_id, "record": {"key_name": {"value": "changed"}}},
        headers=password_headers("taro"),
    )
    assert by_member.status_code == 200
    assert read(client, "jiro", record_id).json()["record"]["更新者"]["value"]["code"] == "taro"


def test_a_bulk_update_with_one_forbidden_record_changes_none(
    client: httpx.Client, emulator: KintoneEmulator
) -> None:
    mine = save(client, TOKEN_HEADERS, key_name="a", team="research")
    theirs = save(client, TOKEN_HEADERS, key_name="b", team="platform")
    body = {
        "app": 1,
        "records": [
            {"id": record_id, "record": {"key_name": {"value": "x"}}} for record_id in (mine, theirs)
        ],
    }
    response = client.put("/k/v1/records.json", json=body, headers=password_headers("taro"))
    assert response.status_code == 403
    assert [record["key_name"]["value"] for record in emulator.records()] == ["a", "b"]


def test_deleting_needs_the_delete_right(client: httpx.Client, emulator: KintoneEmulator) -> None:
    record_id = save(client, TOKEN_HEADERS, key_name="k", team="platform")
    body = {"app": 1, "ids": [record_id]}
    refused = client.request("DELETE", "/k/v1/records.json", json=body, headers=password_headers("taro"))
    assert refused.status_code == 403
    screen = client.post("/_emulator/records/delete", json=body, headers=password_headers("hanako"))
    assert screen.status_code == 403
    assert (
        client.request(
            "DELETE", "/k/v1/records.json", json=body, headers=password_headers("admin")
        ).status_code
        == 200
    )
    assert emulator.records() == []


def test_comments_need_the_view_right(client: httpx.Client) -> None:
    record_id = save(client, TOKEN_HEADERS, key_name="k", team="platform")
    comment = {"app": 1, "record": record_id, "comment": {"text": "hello"}}
    assert (
        client.post("/k/v1/record/comment.json", json=comment, headers=password_headers("jiro")).status_code
        == 403
    )
    listed = client.get(
        "/k/v1/record/comments.json", params={"app": 1, "record": record_id}, headers=password_headers("jiro")
    )
    assert listed.status_code == 403
    assert (
        client.post("/k/v1/record/comment.json", json=comment, headers=password_headers("taro")).status_code
        == 200
    )


def test_record_permissions_follow_the_directory(client: httpx.Client, emulator: KintoneEmulator) -> None:
    record_id = save(client, TOKEN_HEADERS, key_name="k", team="platform")
    emulator.directory.set_user_organizations("taro", [("research", None)])
    assert read(client, "taro", record_id).status_code == 403
    emulator.directory.set_user_organizations("jiro", [("platform", None)])
    assert read(client, "jiro", record_id).status_code == 200
    emulator.directory.set_valid("jiro", False)
    assert read(client, "jiro", record_id).status_code == 401


def test_the_app_permissions_bind_users_but_not_tokens(client: httpx.Client) -> None:
    rights = [
        {"entity": {"type": "CREATOR"}, "appEditable": True, "recordViewable": True, "recordAddable": True},
        {"entity": {"type": "GROUP", "code": "everyone"}, "recordViewable": True},
    ]
    assert (
        client.put("/k/v1/app/acl.json", json={"app": 1, "rights": rights}, headers=MANAGE).status_code == 200
    )
    record = {"app": 1, "record": {"key_name": {"value": "x"}, "team": {"value": "elsewhere"}}}
    refused = client.post("/k/v1/record.json", json=record, headers=password_headers("taro"))
    assert refused.status_code == 403 and refused.json()["code"] == "CB_NO02"
    assert client.post("/k/v1/record.json", json=record, headers=password_headers("admin")).status_code == 200
    assert client.post("/k/v1/record.json", json=record, headers=TOKEN_HEADERS).status_code == 200
    # Viewing a record no rule restricts, the app right is enough; editing it is not allowed.
    edit = {"app": 1, "id": 1, "record": {"key_name": {"value": "y"}}}
    assert client.put("/k/v1/record.json", json=edit, headers=password_headers("taro")).status_code == 403


def test_a_user_with_no_app_right_to_view_sees_nothing(client: httpx.Client) -> None:
    save(client, TOKEN_HEADERS, key_name="o", team="elsewhere")
    rights = [{"entity": {"type": "USER", "code": "admin"}, "appEditable": True, "recordViewable": True}]
    client.put("/k/v1/app/acl.json", json={"app": 1, "rights": rights}, headers=MANAGE)
    response = client.get("/k/v1/records.json", params={"app": 1}, headers=password_headers("taro"))
    assert response.status_code == 403
    assert visible_ids(client, "admin") == (["1"], "1")


def test_a_rule_with_login_user_in_its_condition(client: httpx.Client) -> None:
    rules = [
        {"filterCond": "owner in (LOGINUSER())", "entities": [entity("GROUP", "everyone", "viewable")]},
        {"filterCond": "", "entities": [entity("GROUP", "llm-operators", "viewable")]},
    ]
    client.put("/k/v1/record/acl.json", json={"app": 1, "rights": rules}, headers=MANAGE)
    owned = save(client, TOKEN_HEADERS, key_name="k", owner=[{"code": "hanako"}])
    assert read(client, "hanako", owned).status_code == 200
    assert read(client, "taro", owned).status_code == 403
    assert read(client, "admin", owned).status_code == 200
