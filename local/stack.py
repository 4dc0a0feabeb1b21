"""The local stack: every real part that runs on one machine, started in the background.

    python -m local.stack up      # start (or keep) everything; writes .local/env
    python -m local.stack down    # stop everything this stack started
    python -m local.stack status

Parts: LiteLLM on PostgreSQL, moto's server (SQS, Secrets Manager, DynamoDB), the kintone emulator,
the webhook endpoint (API Gateway stand-in), worker processes polling the queue (Lambda stand-in)
the reconciler on a schedule (EventBridge stand-in, every RECONCILE_INTERVAL_SECONDS, default 60) and
the spend sync on another (every SPEND_SYNC_SECONDS, default 30).
KINTONE_BASE_URL + KINTONE_APP_ID + KINTONE_API_TOKEN in the environment select a real kintone app
instead of the emulator; LITELLM_BASE_URL + LITELLM_MASTER_KEY a running LiteLLM. The emulator gets
the directory of ``local.kintone_directory`` with passwords made for this stack; CYBOZU_USER_API_TOKEN
in the environment replaces its User API token. Either way the app is configured by the platform
team's own command, `python -m ops.kintone_app --local`, before the functions start.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import string
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from lambdas.domain.teams import LOCAL_TEAM_CATALOG
from local import kintone_directory
from local.aws_resources import (
    LOCAL_AWS_ENVIRONMENT,
    MOTO_PROCESS,
    create_provisioning_resources,
    ensure_moto_server,
)
from local.litellm_proxy import LiteLLMEndpoint, ServiceStatus, ensure_litellm, litellm_status, stop_litellm
from local.processes import free_port, running_pid, start_background, stop_background

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("LOCAL_STACK_DIR", REPO_ROOT / ".local"))
EMULATOR_PROCESS = "kintone-emulator"
GATEWAY_PROCESS = "webhook-gateway"
RECONCILER_PROCESS = "reconciler"
RECONCILE_INTERVAL_SECONDS = os.environ.get("RECONCILE_INTERVAL_SECONDS", "60")
SPEND_SYNC_PROCESS = "spend-sync"
SPEND_SYNC_SECONDS = os.environ.get("SPEND_SYNC_SECONDS", "30")
WORKER_COUNT = int(os.environ.get("LOCAL_WORKERS", "4"))
NAMESPACE = "local"
EMULATOR_APP_ID = "1"
READY_TIMEOUT_SECONDS = 30


def _wait_for_file(path: Path, process_name: str) -> str:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if running_pid(process_name, STATE_DIR) is None:
            break
        time.sleep(0.05)  # another process's start-up; it signals readiness by writing the file
    log_tail = (STATE_DIR / f"{process_name}.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{process_name} did not start; last log lines:\n{log_tail}")


def _stack_secrets() -> dict[str, Any]:
    """Tokens and passwords of this stack, made once and kept (0600) so that `up` twice keeps them.

    A file from before the emulator had a directory gains the passwords and the User API token.
    """
    path = STATE_DIR / "stack-secrets.json"
    values: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    alphabet = string.ascii_letters + string.digits
    missing = {
        # kintone API tokens are 40 alphanumerics.
        "kintone_api_token": lambda: "".join(secrets.choice(alphabet) for _ in range(40)),
        "webhook_token": lambda: secrets.token_urlsafe(32),
        "kintone_user_passwords": kintone_directory.new_passwords,
        "cybozu_user_api_token": kintone_directory.new_user_api_token,
        "alert_token": lambda: secrets.token_urlsafe(32),
        # Fixed for the stack's life: LiteLLM, started first, is told where to post budget alerts.
        "gateway_port": lambda: str(free_port()),
    }
    if not all(name in values for name in missing):
        values = {name: values[name] if name in values else make() for name, make in missing.items()}
        path.touch(mode=0o600)
        path.write_text(json.dumps(values))
    return values


def _user_api_token(stack_secrets: dict[str, Any]) -> str:
    """The directory credential: CYBOZU_USER_API_TOKEN from the environment, else this stack's own."""
    return os.environ.get("CYBOZU_USER_API_TOKEN") or stack_secrets["cybozu_user_api_token"]


def _ensure_kintone(stack_secrets: dict[str, Any]) -> tuple[str, str, str, bool]:
    """(base URL, app id, API token, is emulator)."""
    real = [os.environ.get(name, "") for name in ("KINTONE_BASE_URL", "KINTONE_APP_ID", "KINTONE_API_TOKEN")]
    if all(real):
        return real[0].rstrip("/"), real[1], real[2], False
    ready_file = STATE_DIR / "kintone-emulator.url"
    directory_file = STATE_DIR / "kintone-directory.json"  # passwords: 0600, like stack-secrets.json
    directory = json.dumps(
        kintone_directory.directory_document(
            stack_secrets["kintone_user_passwords"], _user_api_token(stack_secrets)
        )
    )
    running_directory = directory_file.read_text() if directory_file.exists() else None
    if running_pid(EMULATOR_PROCESS, STATE_DIR) is not None and running_directory != directory:
        # Started before it had this directory, or with another CYBOZU_USER_API_TOKEN: start it anew.
        stop_background(EMULATOR_PROCESS, STATE_DIR)
    if running_pid(EMULATOR_PROCESS, STATE_DIR) is None:
        ready_file.unlink(missing_ok=True)
        directory_file.touch(mode=0o600)
        directory_file.write_text(directory)
        start_background(
            EMULATOR_PROCESS,
            [
                sys.executable,
                "-m",
                "local.kintone_emulator",
                "--port",
                "0",
                "--app-id",
                EMULATOR_APP_ID,
                "--api-token",
                stack_secrets["kintone_api_token"],
                "--ready-file",
                str(ready_file),
                "--directory",
                str(directory_file),
                "--app-creator",
                kintone_directory.ADMIN_LOGIN,
                # An app as kintone creates one: the app command below gives it its fields.
                "--empty-app",
            ],
            STATE_DIR,
            env={"PYTHONPATH": str(REPO_ROOT)},
        )
    base_url = _wait_for_file(ready_file, EMULATOR_PROCESS).removeprefix("KINTONE_BASE_URL=")
    return base_url, EMULATOR_APP_ID, stack_secrets["kintone_api_token"], True


def _ensure_litellm(alert_url: str) -> LiteLLMEndpoint:
    url, key = os.environ.get("LITELLM_BASE_URL", ""), os.environ.get("LITELLM_MASTER_KEY", "")
    if url and key:
        return LiteLLMEndpoint(url.rstrip("/"), key)
    return ensure_litellm(STATE_DIR, alert_url)


def function_environment(
    *,
    aws_endpoint: str,
    kintone_base_url: str,
    kintone_app_id: str,
    litellm_base_url: str,
    resources,
    namespace: str,
    key_alias_prefix: str,
) -> dict[str, str]:
    """The Lambda functions' environment, as the CDK stack sets it, pointed at local services."""
    return {
        **LOCAL_AWS_ENVIRONMENT,
        "AWS_ENDPOINT_URL": aws_endpoint,
        "KINTONE_BASE_URL": kintone_base_url,
        "KINTONE_APP_ID": kintone_app_id,
        "KINTONE_API_TOKEN_SECRET_ID": resources.kintone_api_token_secret_id,
        "LITELLM_BASE_URL": litellm_base_url,
        "LITELLM_MASTER_KEY_SECRET_ID": resources.litellm_master_key_secret_id,
        "CYBOZU_USER_API_TOKEN_SECRET_ID": resources.cybozu_user_api_token_secret_id,
        "WEBHOOK_TOKEN_SECRET_ID": resources.webhook_token_secret_id,
        "ALERT_TOKEN_SECRET_ID": resources.alert_token_secret_id,
        "QUEUE_URL": resources.queue_url,
        "DEAD_LETTER_QUEUE_URL": resources.dead_letter_queue_url,
        "STATE_TABLE_NAME": resources.state_table_name,
        "KEY_SECRET_PREFIX": f"{namespace}/keys/",
        "KEY_ALIAS_PREFIX": key_alias_prefix,
        "TEAM_CATALOG": json.dumps(LOCAL_TEAM_CATALOG),
        "MESSAGE_LANGUAGE": os.environ.get("MESSAGE_LANGUAGE", "ja"),
        # The emulated app is small: every sweep can list all of it. Rotated-out keys last an hour.
        "RECONCILE_FULL_SWEEP_SECONDS": "0",
        "ROTATION_GRACE_SECONDS": os.environ.get("ROTATION_GRACE_SECONDS", "3600"),
        "POWERTOOLS_SERVICE_NAME": "kintone-llm-keys",
        "POWERTOOLS_METRICS_NAMESPACE": "KintoneLLMKeys",
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
        "LOG_LEVEL": "INFO",
        "PYTHONPATH": str(REPO_ROOT),
    }


def up(progress: Callable[[str], None] = lambda step: None) -> dict[str, str]:
    """Start (or keep) every part; `progress` hears each step before it starts."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    stack_secrets = _stack_secrets()
    progress("LiteLLM and PostgreSQL (the first time this installs them: about 2-3 minutes)")
    gateway_base_url = f"http://127.0.0.1:{stack_secrets['gateway_port']}"
    litellm = _ensure_litellm(f"{gateway_base_url}/alert/{stack_secrets['alert_token']}")
    progress("kintone emulator")
    kintone_base_url, kintone_app_id, kintone_api_token, is_emulator = _ensure_kintone(stack_secrets)
    if not is_emulator and not os.environ.get("CYBOZU_USER_API_TOKEN"):
        raise SystemExit(
            "CYBOZU_USER_API_TOKEN is needed with a real kintone: a cybozu.com common-administration "
            "API token (Read scope) of its domain, to check who may hold which team's keys"
        )
    progress("moto (SQS, Secrets Manager, DynamoDB)")
    aws_endpoint = ensure_moto_server(STATE_DIR)
    resources = create_provisioning_resources(
        aws_endpoint,
        NAMESPACE,
        kintone_api_token=kintone_api_token,
        litellm_master_key=litellm.master_key,
        cybozu_user_api_token=_user_api_token(stack_secrets),
        webhook_token=stack_secrets["webhook_token"],
        alert_token=stack_secrets["alert_token"],
    )
    environment = function_environment(
        aws_endpoint=aws_endpoint,
        kintone_base_url=kintone_base_url,
        kintone_app_id=kintone_app_id,
        litellm_base_url=litellm.base_url,
        resources=resources,
        namespace=NAMESPACE,
        key_alias_prefix="kintone",
    )
    # The functions read settings once per process: restart them whenever what they read changed.
    environment_file = STATE_DIR / "functions.json"
    changed = not environment_file.exists() or json.loads(environment_file.read_text()) != environment
    if changed:
        _stop_functions()
        environment_file.write_text(json.dumps(environment, indent=1))
    progress("kintone app settings (python -m ops.kintone_app)")
    # Before the functions start, so that they never read an app without its fields.
    configure_kintone_app(_directory_env(stack_secrets, is_emulator))
    progress("webhook endpoint, workers, reconciler and spend sync")
    gateway_url = _ensure_functions(resources.queue_url, environment, stack_secrets["gateway_port"])
    webhook_url = f"{gateway_url}/webhook/{resources.webhook_token}"
    if is_emulator:
        httpx.post(
            f"{kintone_base_url}/_emulator/config", json={"webhook_url": webhook_url}, timeout=5
        ).raise_for_status()

    stack_env = {
        "KINTONE_BASE_URL": kintone_base_url,
        "KINTONE_APP_ID": kintone_app_id,
        "KINTONE_API_TOKEN": kintone_api_token,
        "LITELLM_BASE_URL": litellm.base_url,
        "LITELLM_MASTER_KEY": litellm.master_key,
        "WEBHOOK_URL": webhook_url,
        "AWS_ENDPOINT_URL": aws_endpoint,
        "QUEUE_URL": resources.queue_url,
        "DEAD_LETTER_QUEUE_URL": resources.dead_letter_queue_url,
        "STATE_TABLE_NAME": resources.state_table_name,
        "KEY_SECRET_PREFIX": environment["KEY_SECRET_PREFIX"],
        "KINTONE_IS_EMULATOR": "true" if is_emulator else "false",
        **_directory_env(stack_secrets, is_emulator),
    }
    env_file = STATE_DIR / "env"
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{name}={value}\n" for name, value in stack_env.items()))
    return stack_env


def configure_kintone_app(credentials: dict[str, str]) -> None:
    """Runs the platform team's app command on this stack's app, as on a production app.

    The emulator's administrator (an operator) signs in with its password; a real kintone app gets
    the credentials of `make up`'s environment (KINTONE_ADMIN_LOGIN/PASSWORD or KINTONE_API_TOKEN).
    """
    result = subprocess.run(
        [sys.executable, "-m", "ops.kintone_app", "--local"],
        cwd=REPO_ROOT,
        env={**os.environ, **credentials, "PYTHONPATH": str(REPO_ROOT), "LOCAL_STACK_DIR": str(STATE_DIR)},
        capture_output=True,
        text=True,
        check=False,
    )
    (STATE_DIR / "kintone-app.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(
            f"python -m ops.kintone_app --local failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


def _directory_env(stack_secrets: dict[str, Any], is_emulator: bool) -> dict[str, str]:
    """The users of the emulator's directory and the directory credential, for demos and tests.

    Against a real kintone the users are not this stack's to know: only the credential is kept.
    """
    if not is_emulator:
        token = os.environ.get("CYBOZU_USER_API_TOKEN", "")
        return {"CYBOZU_USER_API_TOKEN": token} if token else {}
    passwords = stack_secrets["kintone_user_passwords"]
    return {
        "KINTONE_DEMO_USERS": json.dumps(kintone_directory.demo_users(passwords), separators=(",", ":")),
        "KINTONE_ADMIN_LOGIN": kintone_directory.ADMIN_LOGIN,
        "KINTONE_ADMIN_PASSWORD": passwords[kintone_directory.ADMIN_LOGIN],
        "CYBOZU_USER_API_TOKEN": _user_api_token(stack_secrets),
    }


def _ensure_functions(queue_url: str, environment: dict[str, str], gateway_port: str) -> str:
    ready_file = STATE_DIR / "webhook-gateway.url"
    if running_pid(GATEWAY_PROCESS, STATE_DIR) is None:
        ready_file.unlink(missing_ok=True)
        start_background(
            GATEWAY_PROCESS,
            [
                sys.executable,
                "-m",
                "local.runtime",
                "gateway",
                "--port",
                gateway_port,
                "--queue-url",
                queue_url,
                "--ready-file",
                str(ready_file),
            ],
            STATE_DIR,
            env=environment,
        )
    for index in range(WORKER_COUNT):
        name = f"worker-{index}"
        if running_pid(name, STATE_DIR) is None:
            start_background(
                name,
                [sys.executable, "-m", "local.runtime", "worker", "--queue-url", queue_url],
                STATE_DIR,
                environment,
            )
    for process, interval in (
        (RECONCILER_PROCESS, RECONCILE_INTERVAL_SECONDS),
        (SPEND_SYNC_PROCESS, SPEND_SYNC_SECONDS),
    ):
        if running_pid(process, STATE_DIR) is None:
            start_background(
                process,
                [
                    *(sys.executable, "-m", "local.runtime", process),
                    *("--queue-url", queue_url, "--interval", interval),
                ],
                STATE_DIR,
                environment,
            )
    return _wait_for_file(ready_file, GATEWAY_PROCESS)


def _stop_functions() -> None:
    stop_background(GATEWAY_PROCESS, STATE_DIR)
    stop_background(RECONCILER_PROCESS, STATE_DIR)
    stop_background(SPEND_SYNC_PROCESS, STATE_DIR)
    for pid_file in STATE_DIR.glob("worker-*.pid"):
        stop_background(pid_file.stem, STATE_DIR)


def down() -> None:
    _stop_functions()
    stop_background(EMULATOR_PROCESS, STATE_DIR)
    stop_background(MOTO_PROCESS, STATE_DIR)
    stop_litellm(STATE_DIR)
    stale_files = (
        "functions.json",
        "env",
        "moto.endpoint",
        "kintone-emulator.url",
        "kintone-directory.json",
        "webhook-gateway.url",
    )
    for stale in stale_files:
        (STATE_DIR / stale).unlink(missing_ok=True)


def status() -> list[ServiceStatus]:
    """Every part, LiteLLM and PostgreSQL first, with where its log is."""
    names = [EMULATOR_PROCESS, MOTO_PROCESS, GATEWAY_PROCESS, RECONCILER_PROCESS, SPEND_SYNC_PROCESS]
    names += [f"worker-{i}" for i in range(WORKER_COUNT)]
    return litellm_status(STATE_DIR) + [
        ServiceStatus(name, running_pid(name, STATE_DIR) is not None, STATE_DIR / f"{name}.log")
        for name in names
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="local stack")
    parser.add_argument("command", choices=["up", "down", "status"])
    command = parser.parse_args().command
    if command == "up":
        stack_env = up()
        print(f"local stack is up; settings in {STATE_DIR / 'env'}")
        print(f"  kintone:  {stack_env['KINTONE_BASE_URL']} (app {stack_env['KINTONE_APP_ID']})")
        print(f"  LiteLLM:  {stack_env['LITELLM_BASE_URL']}")
        print(f"  AWS:      {stack_env['AWS_ENDPOINT_URL']} (moto)")
        print(f"  webhook:  {stack_env['WEBHOOK_URL'].rsplit('/', 1)[0]}/<token from .local/env>")
        print(f"  app:      set up by python -m ops.kintone_app --local ({STATE_DIR / 'kintone-app.log'})")
    elif command == "down":
        down()
        print("local stack stopped")
    else:
        for service in status():
            print(f"{service.name:<17} {'running' if service.running else 'stopped':<8} log: {service.log}")


if __name__ == "__main__":
    main()
