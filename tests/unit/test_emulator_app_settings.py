"""The emulator's app settings: form fields, record and app permissions, deploy, and who may change them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from local.kintone_emulator import KintoneEmulator
from local.kintone_emulator.schema import EMPTY_SCHEMA
from tests.unit.emulator_directory import build_directory, password_headers

RECORD_TOKEN = "token-without-app-management"
MANAGE_TOKEN = "token-with-app-management"
MANAGE = {"X-Cybozu-API-Token": MANAGE_TOKEN}
RECORDS = {"X-Cybozu-API-Token": RECORD_TOKEN}

KEY_FIELDS = {
    "key_name": {"type": "SINGLE_LINE_TEXT", "code": "key_name", "label": "Key name"},
    "team": {
        "type": "DROP_DOWN",
        "code": "team",
        "label": "Team",
        "options": {
            "platform": {"label": "platform", "index": "0"},
            "research": {"label": "research", "index": "1"},
        },
    },
    "owner": {"type": "USER_SELECT", "code": "owner", "label": "Owner"},
}
TEAM_RULES = [
    {
        "filterCond": 'team in ("platform")',
        "entities": [
            {
                "entity": {"type": "ORGANIZATION", "code": "platform"},
                "viewable": True,
                "editable": True,
                "includeSubs": True,
            },
            {"entity": {"type": "FIELD_ENTITY", "code": "owner"}, "viewable": True, "editable": True},
            {
                "entity": {"type": "GROUP", "code": "llm-operators"},
                "viewable": True,
                "editable": True,
                "deletable": True,
            },
        ],
    }
]


@pytest.fixture
def emulator() -> Iterator[KintoneEmulator]:
    with KintoneEmulator(
        app_id="1",
        api_tokens=[RECORD_TOKEN],
        app_management_tokens=[MANAGE_TOKEN],
        directory=build_directory(),
        app_creator="admin",
        schema=EMPTY_SCHEMA,
    ) as emulator:
        emulator.configure(deploy_seconds=0)
        yield emulator


@pytest.fixture
def client(emulator: KintoneEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.base_url, timeout=10) as client:
        yield client


def deploy(client: httpx.Client, headers: dict[str, str] = MANAGE) -> str:
    started = client.post("/k/v1/preview/app/deploy.json", json={"apps": [{"app": 1}]}, headers=headers)
    assert started.status_code == 200, started.text
    status = client.get("/k/v1/preview/app/deploy.json", params={"apps[0]": 1}, headers=headers)
    return status.json()["apps"][0]["status"]


def add_key_fields(client: httpx.Client) -> None:
    added = client.post(
        "/k/v1/preview/app/form/fields.json", json={"app": 1, "properties": KEY_FIELDS}, headers=MANAGE
    )
    assert added.status_code == 200, added.text


def save(client: httpx.Client, headers: dict[str, str], **values: Any) -> httpx.Response:
    record = {code: {"value": value} for code, value in values.items()}
    return client.post("/k/v1/record.json", json={"app": 1, "record": record}, headers=headers)


def test_fields_added_in_preview_reach_the_live_app_when_deployed(client: httpx.Client) -> None:
    empty = client.get("/k/v1/app/form/fields.json", params={"app": 1}, headers=RECORDS).json()
    assert {prop["type"] for prop in empty["properties"].values()} == {
        "RECORD_NUMBER",
        "CREATOR",
        "MODIFIER",
        "CREATED_TIME",
        "UPDATED_TIME",
    }
    add_key_fields(client)
    preview = client.get("/k/v1/preview/app/form/fields.json", params={"app": 1}, headers=MANAGE).json()
    assert preview["revision"] == "2"
    assert preview["properties"]["team"]["options"]["research"] == {"label": "research", "index": "1"}
    assert preview["properties"]["key_name"]["label"] == "Key name"
    live = client.get("/k/v1/app/form/fields.json", params={"app": 1}, headers=RECORDS).json()
    assert "team" not in live["properties"] and live["revision"] == "1"
    # Records follow the live schema: the field does not exist there yet.
    assert "team" not in save(client, RECORDS, team="platform").json()

    assert deploy(client) == "SUCCESS"
    live = client.get("/k/v1/app/form/fields.json", params={"app": 1}, headers=RECORDS).json()
    assert live["revision"] == "2" and live["properties"]["team"]["type"] == "DROP_DOWN"
    assert save(client, RECORDS, team="platform").status_code == 200
    refused = save(client, RECORDS, team="elsewhere")
    assert refused.status_code == 400 and refused.json()["code"] == "CB_VA01"


def test_drop_down_options_change_with_an_update_and_a_deploy(client: httpx.Client) -> None:
    add_key_fields(client)
    deploy(client)
    options = {
        "platform": {"label": "platform", "index": "0"},
        "new-team": {"label": "new-team", "index": "1"},
    }
    updated = client.put(
        "/k/v1/preview/app/form/fields.json",
        json={"app": 1, "properties": {"team": {"type": "DROP_DOWN", "options": options}}, "revision": 2},
        headers=MANAGE,
    )
    assert updated.json() == {"revision": "3"}
    assert save(client, RECORDS, team="new-team").status_code == 400
    deploy(client)
    assert save(client, RECORDS, team="new-team").status_code == 200
    assert save(client, RECORDS, team="research").status_code == 400


@pytest.mark.parametrize(
    ("method", "properties", "error_key"),
    [
        ("POST", {"key_name": {"type": "SINGLE_LINE_TEXT", "code": "key_name"}}, "properties[key_name].code"),
        ("POST", {"作成者": {"type": "SINGLE_LINE_TEXT", "code": "作成者"}}, "properties[作成者].code"),
        ("POST", {"photo": {"type": "FILE", "code": "photo"}}, "properties[photo].type"),
        ("POST", {"level": {"type": "DROP_DOWN", "code": "level"}}, "properties[level].options"),
        ("POST", {"a": {"type": "SINGLE_LINE_TEXT", "code": "b"}}, "properties[a].code"),
        ("PUT", {"team": {"type": "SINGLE_LINE_TEXT"}}, "properties[team].type"),
        ("PUT", {"nothing": {"type": "SINGLE_LINE_TEXT"}}, "properties[nothing].code"),
    ],
)
def test_field_changes_kintone_refuses(
    client: httpx.Client, method: str, properties: dict, error_key: str
) -> None:
    add_key_fields(client)
    response = client.request(
        method,
        "/k/v1/preview/app/form/fields.json",
        json={"app": 1, "properties": properties},
        headers=MANAGE,
    )
    assert response.status_code == 400 and response.json()["code"] == "CB_VA01"
    assert error_key in response.json()["errors"]


def test_a_stale_settings_revision_is_a_conflict(client: httpx.Client) -> None:
    add_key_fields(client)
    stale = client.put(
        "/k/v1/preview/record/acl.json", json={"app": 1, "rights": [], "revision": 1}, headers=MANAGE
    )
    assert stale.status_code == 409 and stale.json()["code"] == "GAIA_CO02"


def test_deploy_runs_processing_then_success(client: httpx.Client, emulator: KintoneEmulator) -> None:
    emulator.configure(deploy_seconds=60)
    add_key_fields(client)
    assert deploy(client) == "PROCESSING"
    again = client.post("/k/v1/preview/app/deploy.json", json={"apps": [{"app": 1}]}, headers=MANAGE)
    assert again.status_code == 409
    assert (
        "team"
        not in client.get("/k/v1/app/form/fields.json", params={"app": 1}, headers=RECORDS).json()[
            "properties"
        ]
    )
    emulator.configure(deploy_seconds=0)  # the running deploy now ends at once
    status = client.get("/k/v1/preview/app/deploy.json", params={"apps[0]": 1}, headers=MANAGE)
    assert status.json() == {"apps": [{"app": "1", "status": "SUCCESS"}]}


def test_a_failed_deploy_leaves_the_live_app_alone(client: httpx.Client, emulator: KintoneEmulator) -> None:
    emulator.configure(fail_next_deploy=True)
    add_key_fields(client)
    assert deploy(client) == "FAIL"
    live = client.get("/k/v1/app/form/fields.json", params={"app": 1}, headers=RECORDS).json()
    assert "team" not in live["properties"]
    assert deploy(client) == "SUCCESS"


def test_a_revert_discards_the_preview(client: httpx.Client) -> None:
    add_key_fields(client)
    reverted = client.post(
        "/k/v1/preview/app/deploy.json", json={"apps": [{"app": 1}], "revert": True}, headers=MANAGE
    )
    assert reverted.status_code == 200
    preview = client.get("/k/v1/preview/app/form/fields.json", params={"app": 1}, headers=MANAGE).json()
    assert "team" not in preview["properties"]


def test_record_permissions_in_preview_and_a_live_put_that_deploys_everything(client: httpx.Client) -> None:
    add_key_fields(client)
    deploy(client)
    put = client.put("/k/v1/preview/record/acl.json", json={"app": 1, "rights": TEAM_RULES}, headers=MANAGE)
    assert put.status_code == 200
    preview = client.get("/k/v1/preview/record/acl.json", params={"app": 1}, headers=MANAGE).json()
    first = preview["rights"][0]["entities"][0]
    assert first == {
        "entity": {"type": "ORGANIZATION", "code": "platform"},
        "viewable": True,
        "editable": True,
        "deletable": False,
        "includeSubs": True,
    }
    assert client.get("/k/v1/record/acl.json", params={"app": 1}, headers=MANAGE).json()["rights"] == []

    # A pending field change, then a live PUT: both reach the live app at once.
    extra = {"note": {"type": "MULTI_LINE_TEXT", "code": "note"}}
    client.post("/k/v1/preview/app/form/fields.json", json={"app": 1, "properties": extra}, headers=MANAGE)
    live_put = client.put("/k/v1/record/acl.json", json={"app": 1, "rights": TEAM_RULES}, headers=MANAGE)
    assert live_put.status_code == 200
    live = client.get("/k/v1/record/acl.json", params={"app": 1}, headers=MANAGE).json()
    assert live["rights"][0]["filterCond"] == 'team in ("platform")'
    fields = client.get("/k/v1/app/form/fields.json", params={"app": 1}, headers=RECORDS).json()
    assert "note" in fields["properties"] and fields["revision"] == live["revision"]


@pytest.mark.parametrize(
    ("rights", "error_key"),
    [
        ([{"filterCond": 'nosuchfield = "x"', "entities": []}], "rights[0].filterCond"),
        ([{"filterCond": "team in (", "entities": []}], "rights[0].filterCond"),
        ([{"entities": [{"entity": {"type": "ROBOT", "code": "x"}}]}], "rights[0].entities[0].entity.type"),
        (
            [{"entities": [{"entity": {"type": "FIELD_ENTITY", "code": "team"}, "viewable": True}]}],
            "rights[0].entities[0].entity.code",
        ),
        (
            [{"entities": [{"entity": {"type": "USER", "code": "taro"}, "editable": True}]}],
            "rights[0].entities[0].viewable",
        ),
        (
            [{"entities": [{"entity": {"type": "USER", "code": "taro"}, "viewable": "maybe"}]}],
            "rights[0].entities[0].viewable",
        ),
    ],
)
def test_bad_record_permissions_are_refused(client: httpx.Client, rights: list, error_key: str) -> None:
    add_key_fields(client)
    response = client.put("/k/v1/preview/record/acl.json", json={"app": 1, "rights": rights}, headers=MANAGE)
    assert response.status_code == 400 and error_key in response.json()["errors"]


def test_app_permissions_have_kintone_defaults_and_can_be_replaced(client: httpx.Client) -> None:
    default = client.get("/k/v1/app/acl.json", params={"app": 1}, headers=MANAGE).json()["rights"]
    assert default[0]["entity"] == {"type": "CREATOR", "code": None} and default[0]["appEditable"]
    assert default[1]["entity"] == {"type": "GROUP", "code": "everyone"} and not default[1]["appEditable"]
    rights = [
        {
            "entity": {"type": "GROUP", "code": "llm-operators"},
            "appEditable": True,
            "recordViewable": True,
            "recordAddable": True,
            "recordEditable": True,
            "recordDeletable": True,
        },
        {"entity": {"type": "GROUP", "code": "everyone"}, "recordViewable": True, "recordAddable": True},
    ]
    assert (
        client.put(
            "/k/v1/preview/app/acl.json", json={"app": 1, "rights": rights}, headers=MANAGE
        ).status_code
        == 200
    )
    assert client.get("/k/v1/app/acl.json", params={"app": 1}, headers=MANAGE).json()["rights"] == default
    assert deploy(client) == "SUCCESS"
    live = client.get("/k/v1/app/acl.json", params={"app": 1}, headers=MANAGE).json()["rights"]
    assert [entry["entity"]["code"] for entry in live] == ["llm-operators", "everyone"]
    bad = [{"entity": {"type": "USER", "code": "taro"}, "recordEditable": True}]
    assert (
        client.put("/k/v1/preview/app/acl.json", json={"app": 1, "rights": bad}, headers=MANAGE).status_code
        == 400
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/k/v1/preview/app/form/fields.json"),
        ("POST", "/k/v1/preview/app/form/fields.json"),
        ("GET", "/k/v1/record/acl.json"),
        ("PUT", "/k/v1/preview/record/acl.json"),
        ("GET", "/k/v1/preview/app/acl.json"),
        ("PUT", "/k/v1/app/acl.json"),
        ("POST", "/k/v1/preview/app/deploy.json"),
    ],
)
def test_settings_need_app_management(client: httpx.Client, method: str, path: str) -> None:
    body = {
        "app": 1,
        "apps": [{"app": 1}],
        "properties": {"x": {"type": "NUMBER", "code": "x"}},
        "rights": [],
    }
    for headers in (RECORDS, password_headers("taro")):
        refused = client.request(method, path, json=body, headers=headers)
        assert refused.status_code == 403 and refused.json()["code"] == "CB_NO02"
    # The app's creator (admin) manages it with a password, as does a token given the permission.
    assert client.request(method, path, json=body, headers=password_headers("admin")).status_code == 200


def test_an_operators_group_given_app_management_may_deploy(client: httpx.Client) -> None:
    rights = [
        {"entity": {"type": "GROUP", "code": "llm-operators"}, "appEditable": True, "recordViewable": True},
        {"entity": {"type": "ORGANIZATION", "code": "platform"}, "appEditable": True, "includeSubs": False},
    ]
    client.put("/k/v1/app/acl.json", json={"app": 1, "rights": rights}, headers=MANAGE)
    assert deploy(client, password_headers("hanako")) == "SUCCESS"  # a member of platform
    refused = client.post(
        "/k/v1/preview/app/deploy.json", json={"apps": [{"app": 1}]}, headers=password_headers("shiro")
    )
    assert refused.status_code == 403  # platform-sre, and includeSubs is off
