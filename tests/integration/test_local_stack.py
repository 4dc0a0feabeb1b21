"""`make demo` end to end on the process-based stack, and no credential in any log it writes."""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from local import kintone_directory
from local.aws_resources import local_client
from local.litellm_proxy import kit_target
from local.stack import REPO_ROOT, STATE_DIR

pytestmark = pytest.mark.integration


def credentials_in_play(stack_env: dict[str, str]) -> set[str]:
    """Every key and token the stack holds: all secrets in moto, the master key, the tokens."""
    client = local_client("secretsmanager", stack_env["AWS_ENDPOINT_URL"])
    values = {
        stack_env["LITELLM_MASTER_KEY"],
        stack_env["KINTONE_API_TOKEN"],
        stack_env["WEBHOOK_URL"].rsplit("/")[-1],
        stack_env["KINTONE_ADMIN_PASSWORD"],
        stack_env["CYBOZU_USER_API_TOKEN"],
        *(user["password"] for user in json.loads(stack_env["KINTONE_DEMO_USERS"]).values()),
    }
    for page in client.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
        for secret in page["SecretList"]:
            try:
                text = client.get_secret_value(SecretId=secret["ARN"])["SecretString"]
            except client.exceptions.InvalidRequestException:
                continue  # scheduled for deletion: its value was checked while it lived
            values.add(json.loads(text)["api_key"] if text.startswith("{") else text)
    return values


def test_demo_issues_a_working_key_and_no_log_holds_a_credential() -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "local.demo"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "status=Issued" in demo.stdout
    assert "chat with the key: 'hi from mock'" in demo.stdout
    assert "time from save to key:" in demo.stdout
    # Each step with its time; the key only in an owner-only file, and commands that read it from there.
    assert re.search(r"^\[\s*\d+\.\d s\] starting the local stack$", demo.stdout, re.MULTILINE)
    key_file = STATE_DIR / "demo-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    api_key = key_file.read_text()
    assert api_key.startswith("sk-") and api_key not in demo.stdout + demo.stderr
    commands = [line.strip() for line in demo.stdout.splitlines() if f"$(cat {key_file})" in line]
    assert len(commands) == 2  # curl and the OpenAI SDK
    for command in commands:
        tried = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=60, check=False
        )
        assert "hi from mock" in tried.stdout, command.split(" ", 1)[0] + ": " + tried.stdout + tried.stderr

    stack_env = dict(line.split("=", 1) for line in (STATE_DIR / "env").read_text().splitlines())
    credentials = credentials_in_play(stack_env)
    assert len(credentials) > 3
    log_dirs = {STATE_DIR, kit_target(STATE_DIR)}
    logs = [path for log_dir in log_dirs for path in Path(log_dir).rglob("*.log") if path.is_file()]
    assert any(path.name.startswith("worker-") for path in logs)
    for path in logs:
        text = path.read_text(errors="replace")
        leaked = [value[:6] + "…" for value in credentials if value in text]
        assert not leaked, f"{path} holds credentials starting {leaked}"
    assert not any(value in demo.stdout + demo.stderr for value in credentials)

    # `make up` configured the demo app with the platform team's command: running it again changes nothing.
    again = subprocess.run(
        [sys.executable, "-m", "ops.kintone_app", "--local"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no change" in again.stdout
    assert not any(value in again.stdout + again.stderr for value in credentials)


def test_the_stack_env_names_the_directory_and_its_users_can_sign_in() -> None:
    subprocess.run(
        [sys.executable, "-m", "local.stack", "up"], cwd=REPO_ROOT, check=True, capture_output=True
    )
    stack_env = dict(line.split("=", 1) for line in (STATE_DIR / "env").read_text().splitlines())
    users = json.loads(stack_env["KINTONE_DEMO_USERS"])
    teams = sorted(tuple(user["teams"]) for user in users.values())
    assert teams.count(("platform",)) >= 2 and ("research",) in teams and () in teams
    for secret_file in ("stack-secrets.json", "kintone-directory.json", "env"):
        assert (STATE_DIR / secret_file).stat().st_mode & 0o077 == 0, secret_file

    base_url = stack_env["KINTONE_BASE_URL"]
    with httpx.Client(base_url=base_url, timeout=10) as kintone:
        for login, user in users.items():
            signed_in = kintone.get(
                "/k/v1/records.json",
                params={"app": stack_env["KINTONE_APP_ID"], "query": "limit 1"},
                headers=kintone_directory.password_header(login, user["password"]),
            )
            assert signed_in.status_code == 200, login
            organizations = kintone.get(
                "/v1/user/organizations.json",
                params={"code": login},
                headers={"Authorization": f"Bearer {stack_env['CYBOZU_USER_API_TOKEN']}"},
            ).json()["organizationTitles"]
            assert [entry["organization"]["code"] for entry in organizations] == user["teams"]
        admin = kintone_directory.password_header(
            stack_env["KINTONE_ADMIN_LOGIN"], stack_env["KINTONE_ADMIN_PASSWORD"]
        )
        unchanged = {"users": [{"code": "saburo", "valid": True}]}
        assert kintone.put("/v1/users.json", json=unchanged, headers=admin).status_code == 200
        not_admin = next(iter(users))
        as_user = kintone_directory.password_header(not_admin, users[not_admin]["password"])
        assert kintone.put("/v1/users.json", json=unchanged, headers=as_user).status_code == 403


def test_make_up_honours_a_user_api_token_from_its_environment() -> None:
    def up(environment: dict[str, str]) -> dict[str, str]:
        subprocess.run(
            [sys.executable, "-m", "local.stack", "up"],
            cwd=REPO_ROOT,
            env=environment,
            check=True,
            capture_output=True,
        )
        return dict(line.split("=", 1) for line in (STATE_DIR / "env").read_text().splitlines())

    others = {name: value for name, value in os.environ.items() if name != "CYBOZU_USER_API_TOKEN"}
    given = "token-given-to-make-up-" + secrets.token_urlsafe(8)
    try:
        stack_env = up({**others, "CYBOZU_USER_API_TOKEN": given})
        assert stack_env["CYBOZU_USER_API_TOKEN"] == given
        answer = httpx.get(
            f"{stack_env['KINTONE_BASE_URL']}/v1/users.json",
            headers={"Authorization": f"Bearer {given}"},
            timeout=10,
        )
        assert answer.status_code == 200 and answer.json()["users"]
    finally:
        restored = up(others)
    assert restored["CYBOZU_USER_API_TOKEN"] != given


def test_a_key_on_the_local_stack_is_seen_by_its_team_and_owner_only() -> None:
    """Through the whole pipeline: taro (platform) saves a record, it gets its key; then who reads it."""
    subprocess.run(
        [sys.executable, "-m", "local.stack", "up"], cwd=REPO_ROOT, check=True, capture_output=True
    )
    stack_env = dict(line.split("=", 1) for line in (STATE_DIR / "env").read_text().splitlines())
    app = stack_env["KINTONE_APP_ID"]
    with httpx.Client(base_url=stack_env["KINTONE_BASE_URL"], timeout=10) as kintone:
        saved = kintone.post(
            "/k/v1/record.json",
            headers=kintone_directory.demo_user_headers(stack_env, "taro"),
            json={"app": app, "record": {"key_name": {"value": "visibility"}, "team": {"value": "platform"}}},
        )
        assert saved.status_code == 200, saved.text
        record_id = saved.json()["id"]
        keyed = kintone.get(
            "/_emulator/records/wait",
            params={"app": app, "id": record_id, "field": "api_key", "nonempty": "true", "timeout": 60},
            timeout=70,
        ).json()
        assert keyed["matched"], keyed["record"]["message"]

        def reads(login: str) -> tuple[int, bool]:
            headers = kintone_directory.demo_user_headers(stack_env, login)
            by_id = kintone.get("/k/v1/record.json", params={"app": app, "id": record_id}, headers=headers)
            found = kintone.get(
                "/k/v1/records.json", params={"app": app, "query": f"$id = {record_id}"}, headers=headers
            )
            return by_id.status_code, bool(found.json()["records"])

        assert {login: reads(login) for login in ("taro", "hanako", "jiro", "saburo")} == {
            "taro": (200, True),  # the owner (and a member)
            "hanako": (200, True),  # a member of platform
            "jiro": (403, False),  # research only
            "saburo": (403, False),  # in no team
        }
