"""The app-settings adapter against kintone's documented request and response shapes (MockTransport)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from ops.app_spec import AppRight, Entity, FieldSpec, RecordRight, RecordRightEntity
from ops.kintone_settings import (
    DeployError,
    KintoneAppSettings,
    KintoneSettingsError,
    password_auth,
    token_auth,
)

TOKEN = "T" * 40


class Kintone:
    """Answers like kintone and keeps every request it got."""

    def __init__(self, answers: dict[tuple[str, str], list[httpx.Response]]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers[(request.method, request.url.path)].pop(0)

    def settings(self, headers: dict[str, str] | None = None) -> KintoneAppSettings:
        client = httpx.Client(
            base_url="https://example.cybozu.com",
            transport=httpx.MockTransport(self),
            headers=headers or token_auth(TOKEN),
        )
        return KintoneAppSettings("https://example.cybozu.com", "7", {}, client=client)


def ok(body: dict) -> list[httpx.Response]:
    return [httpx.Response(200, json=body)]


FORM = {
    "properties": {
        "作成者": {"type": "CREATOR", "code": "作成者", "label": "作成者", "noLabel": False},
        "team": {
            "type": "DROP_DOWN",
            "code": "team",
            "label": "Team",
            "options": {
                "research": {"label": "research", "index": "1"},
                "platform": {"label": "platform", "index": "0"},
            },
            "defaultValue": "",
        },
    },
    "revision": "5",
}
RECORD_ACL = {
    "rights": [
        {
            "filterCond": 'team in ("platform")',
            "entities": [
                {
                    "entity": {"type": "ORGANIZATION", "code": "platform"},
                    "viewable": True,
                    "editable": True,
                    "deletable": False,
                    "includeSubs": True,
                }
            ],
        }
    ],
    "revision": "5",
}
APP_ACL = {
    "rights": [
        {
            "entity": {"type": "CREATOR", "code": None},
            "includeSubs": False,
            "appEditable": True,
            "recordViewable": True,
            "recordAddable": True,
            "recordEditable": True,
            "recordDeletable": True,
            "recordImportable": True,
            "recordExportable": True,
        }
    ],
    "revision": "5",
}


def test_read_parses_fields_in_option_order_and_permissions() -> None:
    kintone = Kintone(
        {
            ("GET", "/k/v1/preview/app/form/fields.json"): ok(FORM),
            ("GET", "/k/v1/preview/record/acl.json"): ok(RECORD_ACL),
            ("GET", "/k/v1/preview/app/acl.json"): ok(APP_ACL),
        }
    )
    settings = kintone.settings().read(preview=True)
    assert settings.revision == "5"
    assert settings.fields["team"].options == ("platform", "research")
    assert settings.fields["作成者"].type == "CREATOR"
    [rule] = settings.record_rights
    assert rule.entities[0] == RecordRightEntity(
        entity=Entity(type="ORGANIZATION", code="platform"), viewable=True, editable=True, include_subs=True
    )
    assert settings.app_rights[0].entity == Entity(type="CREATOR", code=None)
    assert all(request.url.params["app"] == "7" for request in kintone.requests)
    assert all(request.headers["X-Cybozu-API-Token"] == TOKEN for request in kintone.requests)


def test_read_live_uses_the_live_urls() -> None:
    kintone = Kintone(
        {
            ("GET", "/k/v1/app/form/fields.json"): ok(FORM),
            ("GET", "/k/v1/record/acl.json"): ok(RECORD_ACL),
            ("GET", "/k/v1/app/acl.json"): ok(APP_ACL),
        }
    )
    assert kintone.settings().read(preview=False).fields["team"].type == "DROP_DOWN"


def test_writes_go_to_the_preview_with_the_previous_revision() -> None:
    kintone = Kintone(
        {
            ("POST", "/k/v1/preview/app/form/fields.json"): ok({"revision": "6"}),
            ("PUT", "/k/v1/preview/app/form/fields.json"): ok({"revision": "7"}),
            ("PUT", "/k/v1/preview/record/acl.json"): ok({"revision": "8"}),
            ("PUT", "/k/v1/preview/app/acl.json"): ok({"revision": "9"}),
        }
    )
    settings = kintone.settings()
    key_name = FieldSpec(setting="key_name", code="key_name", type="SINGLE_LINE_TEXT", label="Key")
    team = FieldSpec(setting="team", code="team", type="DROP_DOWN", label="Team", options=("a", "b"))
    rule = RecordRight(
        filter_cond="",
        entities=(RecordRightEntity(entity=Entity(type="GROUP", code="ops"), viewable=True),),
    )
    app_right = AppRight(entity=Entity(type="GROUP", code="everyone"), record_addable=True)
    revision = settings.add_fields((key_name,), "5")
    revision = settings.set_options((team,), revision)
    revision = settings.set_record_rights((rule,), revision)
    assert settings.set_app_rights((app_right,), revision) == "9"

    bodies = [json.loads(request.content) for request in kintone.requests]
    assert [body["revision"] for body in bodies] == ["5", "6", "7", "8"]
    assert all(body["app"] == "7" for body in bodies)
    assert bodies[0]["properties"] == {
        "key_name": {"type": "SINGLE_LINE_TEXT", "code": "key_name", "label": "Key"}
    }
    assert bodies[1]["properties"] == {
        "team": {
            "type": "DROP_DOWN",
            "options": {"a": {"label": "a", "index": "0"}, "b": {"label": "b", "index": "1"}},
        }
    }
    assert bodies[2]["rights"] == [
        {
            "filterCond": "",
            "entities": [
                {
                    "entity": {"type": "GROUP", "code": "ops"},
                    "viewable": True,
                    "editable": False,
                    "deletable": False,
                    "includeSubs": False,
                }
            ],
        }
    ]
    assert bodies[3]["rights"][0]["entity"] == {"type": "GROUP", "code": "everyone"}
    assert bodies[3]["rights"][0]["recordAddable"] is True
    assert bodies[3]["rights"][0]["appEditable"] is False


def deploy_answers(*statuses: str) -> dict[tuple[str, str], list[httpx.Response]]:
    return {
        ("POST", "/k/v1/preview/app/deploy.json"): ok({}),
        ("GET", "/k/v1/preview/app/deploy.json"): [
            httpx.Response(200, json={"apps": [{"app": "7", "status": status}]}) for status in statuses
        ],
    }


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def test_deploy_waits_until_success() -> None:
    kintone = Kintone(deploy_answers("PROCESSING", "PROCESSING", "SUCCESS"))
    clock = FakeClock()
    kintone.settings().deploy("9", timeout_seconds=60, sleep=clock.sleep, clock=clock)
    post, *polls = kintone.requests
    assert json.loads(post.content) == {"apps": [{"app": "7", "revision": "9"}], "revert": False}
    assert len(polls) == 3
    assert all(poll.url.params["apps[0]"] == "7" for poll in polls)
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("status", ["FAIL", "CANCEL"])
def test_deploy_failure_is_reported(status: str) -> None:
    kintone = Kintone(deploy_answers("PROCESSING", status))
    clock = FakeClock()
    with pytest.raises(DeployError, match=f"as {status}"):
        kintone.settings().deploy("9", timeout_seconds=60, sleep=clock.sleep, clock=clock)


def test_deploy_timeout_is_reported() -> None:
    kintone = Kintone(deploy_answers(*["PROCESSING"] * 4))
    clock = FakeClock()
    with pytest.raises(DeployError, match="still PROCESSING after 3 s"):
        kintone.settings().deploy("9", timeout_seconds=3, sleep=clock.sleep, clock=clock)


def error(status: int, code: str, message: str) -> list[httpx.Response]:
    return [httpx.Response(status, json={"code": code, "id": "x", "message": message})]


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        (401, "CB_WA01", "credential was refused"),
        (403, "GAIA_NO01", "'Manage app'"),
        (409, "GAIA_CO02", "Someone changed the app's settings"),
        (400, "CB_VA01", "CB_VA01"),
    ],
)
def test_errors_say_what_to_check(status: int, code: str, hint: str) -> None:
    kintone = Kintone({("PUT", "/k/v1/preview/app/acl.json"): error(status, code, "refused")})
    with pytest.raises(KintoneSettingsError, match=hint) as raised:
        kintone.settings().set_app_rights((), "1")
    assert TOKEN not in str(raised.value)


def test_unreachable_kintone_is_an_error_without_the_credential() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = httpx.Client(base_url="https://example.cybozu.com", transport=httpx.MockTransport(refuse))
    settings = KintoneAppSettings("https://example.cybozu.com", "7", {}, client=client)
    with pytest.raises(KintoneSettingsError, match="ConnectError"):
        settings.deploy_status()


def test_password_auth_header() -> None:
    headers = password_auth("admin", "pa55-word")
    assert base64.b64decode(headers["X-Cybozu-Authorization"]).decode() == "admin:pa55-word"
