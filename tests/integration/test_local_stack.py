"""`make demo` end to end on the process-based stack, and no credential in any log it writes."""

from __future__ import annotations

import json
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
