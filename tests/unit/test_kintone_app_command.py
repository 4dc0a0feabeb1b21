"""The kintone app command end to end on a kintone answered in memory (MockTransport).

The same checks run against the kintone emulator in tests/integration/test_kintone_app.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from lambdas.domain.settings import FieldCodes
from lambdas.domain.teams import LOCAL_TEAM_CATALOG
from ops.app_spec import TeamMembersAccess
from ops.kintone_app import (
    MISMATCH_EXIT_STATUS,
    AppTarget,
    UsageError,
    credentials,
    environment_target,
    local_target,
    main,
    run,
    webhook_instructions,
)
from ops.kintone_settings import KintoneAppSettings

TARGET = AppTarget(
    base_url="https://example.cybozu.com",
    app_id="7",
    field_codes=FieldCodes(),
    teams=(
        TeamMembersAccess(team="platform", organizations=(("platform", False),)),
        TeamMembersAccess(team="research", organizations=(("research", False),)),
    ),
    models=("fake-gpt", "other-model"),
    operators_group="llm-operators",
    language="ja",
    webhook_url_without_token="https://api.example.com/v1/webhook/",
    webhook_token_location="in the secret kintone-llm/dev/webhook-token",
)


def new_app() -> dict[str, Any]:
    fields = {
        code: {"type": kintone_type, "code": code, "label": code}
        for code, kintone_type in (
            ("作成者", "CREATOR"),
            ("更新者", "MODIFIER"),
            ("更新日時", "UPDATED_TIME"),
        )
    }
    everyone = {
        "entity": {"type": "GROUP", "code": "everyone"},
        "recordViewable": True,
        "recordAddable": True,
    }
    return {"fields": fields, "record_rights": [], "app_rights": [everyone]}


class SettingsKintone:
    """kintone's app settings in memory: a preview and a live side, a revision, deploy."""

    def __init__(self) -> None:
        self.preview = new_app()
        self.live = copy.deepcopy(self.preview)
        self.revision = 1
        self.writes: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        is_preview = path.startswith("/k/v1/preview/")
        side = self.preview if is_preview else self.live
        name = path.removeprefix("/k/v1/preview/").removeprefix("/k/v1/")
        if request.method == "GET":
            if name == "app/deploy.json":
                return httpx.Response(200, json={"apps": [{"app": "7", "status": "SUCCESS"}]})
            key = {
                "app/form/fields.json": "fields",
                "record/acl.json": "record_rights",
                "app/acl.json": "app_rights",
            }
            body_key = "properties" if name == "app/form/fields.json" else "rights"
            return httpx.Response(200, json={body_key: side[key[name]], "revision": str(self.revision)})
        body = json.loads(request.content)
        self.writes.append(f"{request.method} {name}")
        if name == "app/deploy.json":
            self.live = copy.deepcopy(self.preview)
            return httpx.Response(200, json={})
        if str(body["revision"]) not in ("-1", str(self.revision)):
            return httpx.Response(409, json={"code": "GAIA_CO02", "id": "1", "message": "revision"})
        if name == "app/form/fields.json" and request.method == "POST":
            self.preview["fields"].update(body["properties"])
        elif name == "app/form/fields.json":
            for code, change in body["properties"].items():
                self.preview["fields"][code].update(change)
        else:
            self.preview["record_rights" if name == "record/acl.json" else "app_rights"] = body["rights"]
        self.revision += 1
        return httpx.Response(200, json={"revision": str(self.revision)})

    def settings(self) -> KintoneAppSettings:
        client = httpx.Client(base_url=TARGET.base_url, transport=httpx.MockTransport(self))
        return KintoneAppSettings(TARGET.base_url, "7", {}, client=client)


def run_command(kintone: SettingsKintone, *, dry_run: bool = False) -> tuple[int, list[str]]:
    lines: list[str] = []
    status = run(TARGET, kintone.settings(), dry_run=dry_run, out=lines.append)
    return status, lines


def test_empty_app_gets_everything_then_no_change() -> None:
    kintone = SettingsKintone()
    status, lines = run_command(kintone)
    assert status == 0
    assert kintone.writes == [
        "POST app/form/fields.json",
        "PUT record/acl.json",
        "PUT app/acl.json",
        "POST app/deploy.json",
    ]
    live = kintone.live["fields"]
    assert live["team"]["type"] == "DROP_DOWN"
    assert list(live["team"]["options"]) == ["platform", "research"]
    assert [rule["filterCond"] for rule in kintone.live["record_rights"]] == [
        'team in ("platform")',
        'team in ("research")',
        "",
    ]
    assert "done: deployed" in lines

    kintone.writes.clear()
    status, lines = run_command(kintone)
    assert (status, kintone.writes) == (0, [])
    assert "  no change: the app already matches the code and the team catalog" in lines


def test_dry_run_changes_nothing() -> None:
    kintone = SettingsKintone()
    status, lines = run_command(kintone, dry_run=True)
    assert (status, kintone.writes) == (0, [])
    assert kintone.preview == new_app() and kintone.live == new_app()
    assert "dry run: nothing was changed" in lines
    assert any(line.startswith("  add field team (DROP_DOWN") for line in lines)


def test_wrong_type_is_reported_and_nothing_changes() -> None:
    kintone = SettingsKintone()
    kintone.preview["fields"]["team"] = {"type": "SINGLE_LINE_TEXT", "code": "team", "label": "team"}
    kintone.live = copy.deepcopy(kintone.preview)
    status, lines = run_command(kintone)
    assert status == MISMATCH_EXIT_STATUS
    assert kintone.writes == []
    assert kintone.preview["fields"]["team"]["type"] == "SINGLE_LINE_TEXT"
    assert any("'team' is SINGLE_LINE_TEXT" in line for line in lines)


def test_undeployed_preview_is_deployed() -> None:
    kintone = SettingsKintone()
    run_command(kintone)
    kintone.live = new_app()
    kintone.writes.clear()
    assert run_command(kintone)[0] == 0
    assert kintone.writes == ["POST app/deploy.json"]


def test_webhook_instructions_name_the_url_and_where_the_token_is() -> None:
    text = "\n".join(webhook_instructions(TARGET))
    assert "https://api.example.com/v1/webhook/<token>" in text
    assert "kintone-llm/dev/webhook-token" in text
    for event in ("レコードの追加", "レコードの編集", "レコードの削除", "ステータスの更新"):
        assert event in text


def test_credentials_prefer_the_password_and_name_what_is_missing() -> None:
    both = {
        "KINTONE_API_TOKEN": "A" * 40,
        "KINTONE_ADMIN_LOGIN": "admin",
        "KINTONE_ADMIN_PASSWORD": "secret-pw",
    }
    assert "X-Cybozu-Authorization" in credentials(both, "auto")
    assert credentials(both, "token") == {"X-Cybozu-API-Token": "A" * 40}
    with pytest.raises(RuntimeError, match="KINTONE_API_TOKEN"):
        credentials({}, "auto")
    with pytest.raises(RuntimeError, match="KINTONE_ADMIN_PASSWORD"):
        credentials({"KINTONE_ADMIN_LOGIN": "admin"}, "password")


def test_environment_target_reads_cdk_json() -> None:
    target = environment_target("staging")
    assert (target.base_url, target.app_id) == ("https://example-staging.cybozu.com", "202")
    assert target.operators_group == "llm-operators"
    assert [team.team for team in target.teams] == ["platform", "research"]
    assert target.teams[0].organizations == (("platform", True),)
    assert target.models == ("claude-haiku", "claude-sonnet")
    assert "WebhookTokenSecretArn of kintone-llm-staging-provisioning" in target.webhook_token_location
    assert "kintone-llm-staging-provisioning" in target.webhook_url_without_token


def write_local_functions(state_dir: Path, **settings: str) -> None:
    """The local stack's functions.json, as `make up` writes it."""
    functions = {
        "KINTONE_BASE_URL": "http://127.0.0.1:9",
        "KINTONE_APP_ID": "1",
        "KINTONE_API_TOKEN_SECRET_ID": "s",
        "LITELLM_BASE_URL": "http://127.0.0.1:8",
        "LITELLM_MASTER_KEY_SECRET_ID": "m",
        "WEBHOOK_TOKEN_SECRET_ID": "w",
        "CYBOZU_USER_API_TOKEN_SECRET_ID": "c",
        "STATE_TABLE_NAME": "t",
        "TEAM_CATALOG": json.dumps(LOCAL_TEAM_CATALOG),
        **settings,
    }
    (state_dir / "functions.json").write_text(json.dumps(functions))


def test_local_target_reads_the_local_stacks_settings(tmp_path: Path) -> None:
    write_local_functions(tmp_path, MESSAGE_LANGUAGE="en")
    (tmp_path / "env").write_text("WEBHOOK_URL=http://127.0.0.1:7/webhook/tok\n")
    target = local_target(tmp_path)
    assert (target.base_url, target.app_id, target.language) == ("http://127.0.0.1:9", "1", "en")
    assert target.operators_group == "llm-operators"
    assert [team.team for team in target.teams] == ["platform", "research"]
    assert target.webhook_url_without_token == "http://127.0.0.1:7/webhook/"
    assert "tok" not in target.webhook_token_location


def test_local_target_before_the_first_env_file(tmp_path: Path) -> None:
    write_local_functions(tmp_path)
    target = local_target(tmp_path)
    assert target.webhook_url_without_token == ""
    assert "Webhook URL: <the webhook endpoint>/<token>, the token being the end of WEBHOOK_URL" in "\n".join(
        webhook_instructions(target)
    )


def test_local_target_without_a_stack_says_make_up(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="make up"):
        local_target(tmp_path)


def test_main_reports_bad_settings_with_exit_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--env", "qa", "--dry-run"]) == 1
    assert "unknown environment 'qa'" in capsys.readouterr().err


def test_a_team_leaving_the_catalog_loses_its_option_only_after_its_rule() -> None:
    kintone = SettingsKintone()
    run_command(kintone)
    kintone.writes.clear()
    smaller = TARGET.model_copy(
        update={"teams": (*TARGET.teams[:1], TeamMembersAccess(team="sales", groups=("s",)))}
    )
    assert run(smaller, kintone.settings(), dry_run=False, out=lambda line: None) == 0
    assert kintone.writes == [
        "PUT app/form/fields.json",
        "PUT record/acl.json",
        "PUT app/form/fields.json",
        "POST app/deploy.json",
    ]
    assert list(kintone.live["fields"]["team"]["options"]) == ["platform", "sales"]
    assert [rule["filterCond"] for rule in kintone.live["record_rights"]] == [
        'team in ("platform")',
        'team in ("sales")',
        "",
    ]
