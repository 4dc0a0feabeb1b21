"""`python -m ops.kintone_app` against the kintone emulator, and what its permissions mean for users.

Each test starts an emulator holding an app as kintone creates one (built-in fields only; its
creator `admin`, an operator, manages it), runs the command as a process, as the platform team does,
and checks the result through kintone's public REST API, reading as password-authenticated users.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lambdas.domain.teams import LOCAL_TEAM_CATALOG
from local.kintone_emulator import KintoneEmulator
from local.kintone_emulator.schema import EMPTY_SCHEMA
from local.stack import REPO_ROOT
from ops.kintone_app import MISMATCH_EXIT_STATUS
from tests.unit.emulator_directory import build_directory, password_headers, password_of

pytestmark = pytest.mark.integration

RECORDS_TOKEN = "records-token-of-the-functions"


@pytest.fixture
def emulator() -> Iterator[KintoneEmulator]:
    with KintoneEmulator(
        app_id="1",
        api_tokens=[RECORDS_TOKEN],
        directory=build_directory(),
        app_creator="admin",
        schema=EMPTY_SCHEMA,
    ) as emulator:
        yield emulator


@pytest.fixture
def kintone(emulator: KintoneEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.base_url, timeout=10) as client:
        yield client


def app_command(emulator: KintoneEmulator, state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command, pointed at this emulator the way `make up` points it at the local stack's app."""
    functions = {
        "KINTONE_BASE_URL": emulator.base_url,
        "KINTONE_APP_ID": "1",
        "KINTONE_API_TOKEN_SECRET_ID": "unused",
        "LITELLM_BASE_URL": "http://127.0.0.1:9",
        "LITELLM_MASTER_KEY_SECRET_ID": "unused",
        "WEBHOOK_TOKEN_SECRET_ID": "unused",
        "STATE_TABLE_NAME": "unused",
        "TEAM_CATALOG": json.dumps(LOCAL_TEAM_CATALOG),
    }
    (state_dir / "functions.json").write_text(json.dumps(functions))
    (state_dir / "env").write_text(
        "WEBHOOK_URL=http://127.0.0.1:9/webhook/the-webhook-token\n"
        f"KINTONE_API_TOKEN={RECORDS_TOKEN}\n"
        "KINTONE_ADMIN_LOGIN=admin\n"
        f"KINTONE_ADMIN_PASSWORD={password_of('admin')}\n"
    )
    environment = {name: value for name, value in os.environ.items() if not name.startswith("KINTONE_")}
    return subprocess.run(
        [sys.executable, "-m", "ops.kintone_app", "--local", *args],
        cwd=REPO_ROOT,
        env={**environment, "LOCAL_STACK_DIR": str(state_dir), "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def settings(kintone: httpx.Client, path: str, *, preview: bool = False) -> dict[str, Any]:
    prefix = "/k/v1/preview" if preview else "/k/v1"
    response = kintone.get(f"{prefix}/{path}", params={"app": "1"}, headers=password_headers("admin"))
    assert response.status_code == 200, response.text
    return response.json()


def test_empty_app_gets_everything_and_a_second_run_changes_nothing(
    emulator: KintoneEmulator, kintone: httpx.Client, tmp_path: Path
) -> None:
    first = app_command(emulator, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "done: deployed" in first.stdout

    fields = settings(kintone, "app/form/fields.json")["properties"]
    wanted = {
        "key_name": "SINGLE_LINE_TEXT",
        "team": "DROP_DOWN",
        "models": "CHECK_BOX",
        "status": "DROP_DOWN",
        "api_key": "SINGLE_LINE_TEXT",
        "message": "MULTI_LINE_TEXT",
        "owner": "USER_SELECT",
    }
    assert {code: fields[code]["type"] for code in wanted} == wanted
    assert set(fields["team"]["options"]) == set(LOCAL_TEAM_CATALOG)
    assert set(fields["status"]["options"]) == {"Pending", "Issued", "Failed", "Revoked", "Revoke", "Rotate"}
    rules = settings(kintone, "record/acl.json")["rights"]
    assert [rule["filterCond"] for rule in rules] == ['team in ("platform")', 'team in ("research")', ""]
    app_rights = settings(kintone, "app/acl.json")["rights"]
    assert [(right["entity"]["code"], right["appEditable"]) for right in app_rights] == [
        ("llm-operators", True),
        ("everyone", False),
    ]

    second = app_command(emulator, tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "no change" in second.stdout
    assert (
        settings(kintone, "app/form/fields.json")["revision"]
        == settings(kintone, "app/form/fields.json", preview=True)["revision"]
    )


def test_dry_run_changes_nothing(emulator: KintoneEmulator, kintone: httpx.Client, tmp_path: Path) -> None:
    before = [settings(kintone, path, preview=preview) for path in ("app/form/fields.json", "record/acl.json",
              "app/acl.json") for preview in (True, False)]  # fmt: skip
    run = app_command(emulator, tmp_path, "--dry-run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "add field team (DROP_DOWN" in run.stdout
    assert "dry run: nothing was changed" in run.stdout
    after = [settings(kintone, path, preview=preview) for path in ("app/form/fields.json", "record/acl.json",
             "app/acl.json") for preview in (True, False)]  # fmt: skip
    assert after == before


def test_field_of_the_wrong_type_is_reported_not_replaced(
    emulator: KintoneEmulator, kintone: httpx.Client, tmp_path: Path
) -> None:
    admin = password_headers("admin")
    text_team = {"team": {"type": "SINGLE_LINE_TEXT", "code": "team", "label": "team"}}
    added = kintone.post(
        "/k/v1/preview/app/form/fields.json", json={"app": "1", "properties": text_team}, headers=admin
    )
    assert added.status_code == 200, added.text

    run = app_command(emulator, tmp_path)
    assert run.returncode == MISMATCH_EXIT_STATUS, run.stdout + run.stderr
    assert "field 'team' is SINGLE_LINE_TEXT, but FIELD_CODES.team needs DROP_DOWN" in run.stdout
    assert "nothing was changed" in run.stdout
    preview = settings(kintone, "app/form/fields.json", preview=True)["properties"]
    assert preview["team"]["type"] == "SINGLE_LINE_TEXT"
    assert "key_name" not in preview


def add_record(kintone: httpx.Client, user: str, team: str, owner: str | None = None) -> str:
    record: dict[str, Any] = {"key_name": {"value": f"{user}'s key"}, "team": {"value": team}}
    if owner is not None:
        record["owner"] = {"value": [{"code": owner}]}
    response = kintone.post(
        "/k/v1/record.json", json={"app": "1", "record": record}, headers=password_headers(user)
    )
    assert response.status_code == 200, response.text
    return response.json()["id"]


def can_read(kintone: httpx.Client, user: str, record_id: str) -> bool:
    """Whether `user` reads the record by id, and finds it in a query: both, or neither."""
    by_id = kintone.get(
        "/k/v1/record.json", params={"app": "1", "id": record_id}, headers=password_headers(user)
    )
    found = kintone.get(
        "/k/v1/records.json",
        params={"app": "1", "query": f"$id = {record_id}"},
        headers=password_headers(user),
    )
    assert found.status_code == 200, found.text
    in_query = [record["$id"]["value"] for record in found.json()["records"]] == [record_id]
    if by_id.status_code == 200:
        assert in_query, f"{user} reads record {record_id} by id but does not find it in a query"
        return True
    assert by_id.status_code == 403, by_id.text
    assert not in_query, f"{user} finds record {record_id} in a query but may not read it"
    return False


def test_only_the_team_the_owner_and_the_operators_see_a_record(
    emulator: KintoneEmulator, kintone: httpx.Client, tmp_path: Path
) -> None:
    assert app_command(emulator, tmp_path).returncode == 0

    # taro (platform) registers a key for team platform, held by saburo (in no team).
    for_saburo = add_record(kintone, "taro", "platform", owner="saburo")
    readers = ("hanako", "saburo", "admin", "jiro", "shiro")
    assert {user: can_read(kintone, user, for_saburo) for user in readers} == {
        "hanako": True,  # a member of the team
        "saburo": True,  # the owner
        "admin": True,  # an operator
        "jiro": False,  # in research only
        "shiro": False,  # in platform-sre: the local catalog's platform leaves sub-organizations out
    }
    # jiro's own key for research: nobody of platform sees it.
    jiros = add_record(kintone, "jiro", "research")
    assert {user: can_read(kintone, user, jiros) for user in ("jiro", "taro", "saburo")} == {
        "jiro": True,
        "taro": False,
        "saburo": False,
    }
    # The functions' API token is not bound by record permissions, as in kintone.
    by_token = kintone.get(
        "/k/v1/record.json", params={"app": "1", "id": jiros}, headers={"X-Cybozu-API-Token": RECORDS_TOKEN}
    )
    assert by_token.status_code == 200
