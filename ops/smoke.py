"""Smoke test of a deployed environment (`make smoke ENV=staging`) or of the local stack (ENV=local).

It uses only what a deploy leaves behind: the stacks' outputs and the secrets they name. It checks
the gateway's health, saves a test record in the kintone app (which fires the webhook like a user's
save), waits for the record to hold a key, chats with the key, asks for the revoke on the record,
waits until the key stops working, and deletes the test record. The key is never printed: steps
print what they checked and how long it took.

    python -m ops.smoke --env staging     # CloudFormation outputs + Secrets Manager (AWS credentials)
    python -m ops.smoke --env local       # .local/env of `make up`
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
HTTP_TIMEOUT_SECONDS = 10.0
ISSUE_TIMEOUT_SECONDS = 120.0
REVOKE_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 1.0
SMOKE_KEY_NAME = "smoke test (make smoke): deleted at the end"


class SmokeError(RuntimeError):
    """A check failed; the message says which and what was seen."""


@dataclass(frozen=True)
class SmokeTarget:
    gateway_url: str
    kintone_base_url: str
    kintone_app_id: str
    kintone_api_token: str
    team: str
    # Fields of the app (FIELD_CODES); the defaults are the app's default schema.
    status_field: str = "status"
    api_key_field: str = "api_key"
    message_field: str = "message"
    # The record is saved with the API token (creator "Administrator", who may hold no key), so it
    # names its owner: a kintone user who is an active member of `team`.
    owner: str = ""
    owner_field: str = "owner"


@dataclass
class SmokeReport:
    steps: list[tuple[str, float]]


class SmokeTest:
    def __init__(
        self,
        target: SmokeTarget,
        *,
        client: httpx.Client | None = None,
        say: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._target = target
        self._http = client or httpx.Client(timeout=HTTP_TIMEOUT_SECONDS)
        self._say = say
        self._clock = clock
        self._report = SmokeReport(steps=[])

    def run(self) -> SmokeReport:
        with self._step("gateway health"):
            self._check_health()
        record_id = None
        try:
            with self._step("test record saved"):
                record_id = self._save_record()
            with self._step("key issued to the record"):
                api_key = self._wait_for_key(record_id)
            with self._step("chat with the key"):
                model = self._first_model(api_key)
                status = self._chat(api_key, model)
                if status != 200:
                    raise SmokeError(f"chat with the issued key on {model!r} answered {status}")
            with self._step("revoke asked on the record"):
                self._ask_revoke(record_id)
            with self._step("key stopped working"):
                self._wait_until_refused(api_key, model)
        finally:
            if record_id is not None:
                with self._step("test record deleted"):
                    self._delete_record(record_id)
        return self._report

    # -- steps -----------------------------------------------------------------------------------

    def _check_health(self) -> None:
        response = self._http.get(f"{self._target.gateway_url}/health/liveliness")
        if response.status_code != 200:
            raise SmokeError(f"{self._target.gateway_url}/health/liveliness answered {response.status_code}")

    def _kintone(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"X-Cybozu-API-Token": self._target.kintone_api_token}
        response = self._http.request(
            method, f"{self._target.kintone_base_url}{path}", headers=headers, **kwargs
        )
        if response.status_code != 200:
            raise SmokeError(
                f"kintone {method} {path} answered {response.status_code}: {response.text[:300]}"
            )
        return response

    def _save_record(self) -> str:
        record = {
            "key_name": {"value": SMOKE_KEY_NAME},
            "team": {"value": self._target.team},
        }
        if self._target.owner:
            record[self._target.owner_field] = {"value": [{"code": self._target.owner}]}
        response = self._kintone(
            "POST", "/k/v1/record.json", json={"app": self._target.kintone_app_id, "record": record}
        )
        return str(response.json()["id"])

    def _record(self, record_id: str) -> dict:
        response = self._kintone(
            "GET", "/k/v1/record.json", params={"app": self._target.kintone_app_id, "id": record_id}
        )
        return response.json()["record"]

    def _wait_for_key(self, record_id: str) -> str:
        deadline = self._clock() + ISSUE_TIMEOUT_SECONDS
        record = self._record(record_id)
        while self._clock() < deadline:
            status = record[self._target.status_field]["value"]
            if status == "Issued":
                return record[self._target.api_key_field]["value"]
            if status == "Failed":
                raise SmokeError(f"the record failed: {record[self._target.message_field]['value']}")
            time.sleep(POLL_SECONDS)  # polling the record, as a user reloading the page would
            record = self._record(record_id)
        raise SmokeError(f"no key on record {record_id} within {ISSUE_TIMEOUT_SECONDS:.0f} s")

    def _first_model(self, api_key: str) -> str:
        response = self._http.get(
            f"{self._target.gateway_url}/v1/models", headers={"Authorization": f"Bearer {api_key}"}
        )
        if response.status_code != 200:
            raise SmokeError(f"/v1/models with the issued key answered {response.status_code}")
        models = [entry["id"] for entry in response.json().get("data", [])]
        if not models:
            raise SmokeError("the issued key may use no model")
        return models[0]

    def _chat(self, api_key: str, model: str) -> int:
        response = self._http.post(
            f"{self._target.gateway_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {api_key}"},
            json={
                "model": model,
                "messages": [{"role": "user", "content": "smoke test: say ok"}],
                "max_tokens": 5,
            },
            timeout=60.0,
        )
        return response.status_code

    def _ask_revoke(self, record_id: str) -> None:
        # A single-record update fires UPDATE_RECORD, as a user's save of the record does.
        self._kintone(
            "PUT",
            "/k/v1/record.json",
            json={
                "app": self._target.kintone_app_id,
                "id": record_id,
                "record": {self._target.status_field: {"value": "Revoke"}},
            },
        )

    def _wait_until_refused(self, api_key: str, model: str) -> None:
        deadline = self._clock() + REVOKE_TIMEOUT_SECONDS
        while self._clock() < deadline:
            status = self._chat(api_key, model)
            if status in (401, 403):
                return
            time.sleep(POLL_SECONDS)  # polling the gateway until the revoke has reached it
        raise SmokeError(f"the revoked key still works after {REVOKE_TIMEOUT_SECONDS:.0f} s")

    def _delete_record(self, record_id: str) -> None:
        self._kintone(
            "DELETE", "/k/v1/records.json", json={"app": self._target.kintone_app_id, "ids": [record_id]}
        )

    @contextmanager
    def _step(self, name: str) -> Iterator[None]:
        started = self._clock()
        self._say(f"… {name}")
        try:
            yield
        except Exception:
            self._say(f"✗ {name} ({self._clock() - started:.1f} s)")
            raise
        elapsed = self._clock() - started
        self._report.steps.append((name, elapsed))
        self._say(f"✓ {name} ({elapsed:.1f} s)")


# -- where the target comes from ------------------------------------------------------------------


def local_target(team: str, owner: str) -> SmokeTarget:
    values = {}
    env_file = REPO_ROOT / ".local" / "env"
    if not env_file.exists():
        raise SmokeError("the local stack is not up: run `make up` first")
    for line in env_file.read_text().splitlines():
        name, _, value = line.partition("=")
        values[name] = value
    return SmokeTarget(
        gateway_url=values["LITELLM_BASE_URL"],
        kintone_base_url=values["KINTONE_BASE_URL"],
        kintone_app_id=values["KINTONE_APP_ID"],
        kintone_api_token=values["KINTONE_API_TOKEN"],
        team=team,
        owner=owner,
    )


def aws_target(environment: str, team: str, owner: str) -> SmokeTarget:
    import boto3  # noqa: PLC0415 - only a deployed environment needs AWS

    cloudformation = boto3.client("cloudformation")
    secrets = boto3.client("secretsmanager")

    def outputs(stack: str) -> dict[str, str]:
        described = cloudformation.describe_stacks(StackName=f"kintone-llm-{environment}-{stack}")["Stacks"][
            0
        ]
        return {output["OutputKey"]: output["OutputValue"] for output in described.get("Outputs", [])}

    gateway, provisioning = outputs("gateway"), outputs("provisioning")
    token = secrets.get_secret_value(SecretId=provisioning["KintoneApiTokenSecretArn"])["SecretString"]
    return SmokeTarget(
        gateway_url=gateway["GatewayUrl"],
        kintone_base_url=provisioning["KintoneBaseUrl"],
        kintone_app_id=provisioning["KintoneAppId"],
        kintone_api_token=token,
        team=team,
        owner=owner,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="an environment of cdk.json, or 'local'")
    parser.add_argument("--team", default="platform", help="the team of the test record (default: platform)")
    parser.add_argument(
        "--owner",
        default="taro",
        help="the kintone user who owns the test record, an active member of the team (default: taro, "
        "a member of platform on the local stack)",
    )
    arguments = parser.parse_args()
    try:
        target = (
            local_target(arguments.team, arguments.owner)
            if arguments.env == "local"
            else aws_target(arguments.env, arguments.team, arguments.owner)
        )
        report = SmokeTest(target).run()
    except (SmokeError, httpx.HTTPError) as error:
        sys.exit(f"smoke test failed: {error}")
    print(
        json.dumps(
            {"smoke": "passed", "seconds": {name: round(elapsed, 1) for name, elapsed in report.steps}}
        )
    )


if __name__ == "__main__":
    main()
