"""The real local stack for integration tests.

LiteLLM (on PostgreSQL) and moto's server are shared with `make up` (started if not running); each
test session gets its own queue, table, secrets prefix and key aliases in them, its own kintone
emulator, and the real handlers running in this process so tests can watch them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import string
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
from botocore.awsrequest import AWSResponse

from lambdas.adapters.wiring import build_reconciler, reset_caches
from local import kintone_directory
from local.aws_resources import (
    ProvisioningResources,
    create_provisioning_resources,
    ensure_moto_server,
    local_client,
)
from local.kintone_emulator import KintoneEmulator
from local.kintone_emulator.directory import Directory
from local.kintone_emulator.request_counter import requests_by_api
from local.litellm_proxy import LiteLLMEndpoint, ensure_litellm
from local.runtime import LocalRuntime, invoke_reconciler
from local.stack import STATE_DIR, function_environment
from tests.integration.fault_proxy import FaultProxy

APP_ID = "1"
WAIT_SECONDS = 60  # an upper bound for slow CI machines; waits end as soon as the condition holds
UNCAPPED = 1_000_000


@dataclass
class LocalStack:
    emulator: KintoneEmulator
    passwords: dict[str, str]  # login -> password, for every user of the emulator's directory
    user_api_token: str  # the directory's common-administration token (Read scope)
    runtime: LocalRuntime
    litellm: LiteLLMEndpoint
    resources: ProvisioningResources
    aws_endpoint: str
    api_token: str
    key_alias_prefix: str
    key_secret_prefix: str
    litellm_faults: FaultProxy
    aws_faults: AwsFaults
    worker_log: WorkerLog

    @property
    def kintone_url(self) -> str:
        return self.emulator.base_url

    @property
    def webhook_url(self) -> str:
        return f"{self.runtime.base_url}/webhook/{self.resources.webhook_token}"

    @property
    def alert_url(self) -> str:
        """Where LiteLLM's webhook alerting (WEBHOOK_URL) posts budget alerts."""
        return f"{self.runtime.base_url}/alert/{self.resources.alert_token}"

    def comments(self, record_id: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.kintone_url}/k/v1/record/comments.json",
            params={"app": APP_ID, "record": record_id},
            headers={"X-Cybozu-API-Token": self.api_token},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["comments"]

    # -- kintone, as its users and its webhooks ---------------------------------------------------

    def as_user(self, login: str) -> dict[str, str]:
        """The headers that sign `login` in with their password (kintone and the User API)."""
        return kintone_directory.password_header(login, self.passwords[login])

    def save_record(self, user: str = "taro", **fields: Any) -> str:
        """A user saves a new record, signed in with their password (fires ADD_RECORD)."""
        values = {"key_name": "integration test", "team": "platform", **fields}
        response = httpx.post(
            f"{self.kintone_url}/k/v1/record.json",
            headers=self.as_user(user),
            json={"app": APP_ID, "record": {code: {"value": value} for code, value in values.items()}},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["id"]

    def edit_record(self, record_id: str, user: str = "taro", **fields: Any) -> int:
        """A user edits a record, signed in with their password (fires UPDATE_RECORD); returns the
        revision."""
        response = httpx.put(
            f"{self.kintone_url}/k/v1/record.json",
            headers=self.as_user(user),
            json={
                "app": APP_ID,
                "id": record_id,
                "record": {code: {"value": value} for code, value in fields.items()},
            },
            timeout=10,
        )
        response.raise_for_status()
        return int(response.json()["revision"])

    def wait_for_write_after(self, record_id: str, revision: int) -> dict[str, Any]:
        """The record once something wrote to it after `revision` (e.g. the system's write-back)."""
        response = httpx.get(
            f"{self.kintone_url}/_emulator/records/wait",
            params={"app": APP_ID, "id": record_id, "revision_gt": revision, "timeout": WAIT_SECONDS},
            timeout=WAIT_SECONDS + 5,
        )
        body = response.json()
        assert body["matched"], f"nothing wrote to record {record_id} after revision {revision}"
        return body["record"]

    def record(self, record_id: str) -> dict[str, Any]:
        response = httpx.get(
            f"{self.kintone_url}/k/v1/record.json",
            params={"app": APP_ID, "id": record_id},
            headers={"X-Cybozu-API-Token": self.api_token},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["record"]

    def read_record_as(self, user: str, record_id: str) -> httpx.Response:
        """`GET /k/v1/record.json` as `user`: 200, or 403 CB_NO02 where their permissions refuse it."""
        return httpx.get(
            f"{self.kintone_url}/k/v1/record.json",
            params={"app": APP_ID, "id": record_id},
            headers=self.as_user(user),
            timeout=10,
        )

    def query_as(self, user: str, query: str = "") -> httpx.Response:
        """`GET /k/v1/records.json` as `user`, with totalCount: only the records they may view."""
        return httpx.get(
            f"{self.kintone_url}/k/v1/records.json",
            params={"app": APP_ID, "query": query, "totalCount": "true"},
            headers=self.as_user(user),
            timeout=10,
        )

    # -- the directory and record permissions, as the administrator changes them (admin's password) --

    def deactivate_user(self, login: str, *, valid: bool = False) -> None:
        """`PUT /v1/users.json` with `valid: false` (or true again)."""
        self._as_administrator("/v1/users.json", {"users": [{"code": login, "valid": valid}]})

    def move_user(self, login: str, *organizations: str) -> None:
        """`PUT /v1/userOrganizations.json`: `login` belongs to exactly `organizations` afterwards."""
        memberships = [{"orgCode": code} for code in organizations]
        self._as_administrator(
            "/v1/userOrganizations.json",
            {"userOrganizations": [{"code": login, "organizations": memberships}]},
        )

    def set_record_permissions(self, rights: list[dict[str, Any]]) -> None:
        """`PUT /k/v1/record/acl.json` as the app's creator (admin): applies at once, as kintone does."""
        self._as_administrator("/k/v1/record/acl.json", {"app": APP_ID, "rights": rights})

    def _as_administrator(self, path: str, body: dict[str, Any]) -> None:
        httpx.put(
            f"{self.kintone_url}{path}",
            headers=self.as_user(kintone_directory.ADMIN_LOGIN),
            json=body,
            timeout=10,
        ).raise_for_status()

    def wait_for_status(self, record_id: str, status: str) -> dict[str, Any]:
        response = httpx.get(
            f"{self.kintone_url}/_emulator/records/wait",
            params={
                "app": APP_ID,
                "id": record_id,
                "field": "status",
                "equals": status,
                "timeout": WAIT_SECONDS,
            },
            timeout=WAIT_SECONDS + 5,
        )
        body = response.json()
        assert body["matched"], f"record {record_id} never reached {status}: {body['record']['message']}"
        return body["record"]

    def wait_until_the_queue_is_drained(self) -> None:
        """Until the work queue holds no message, visible, in flight or in a backoff: what an earlier
        test left (a retry waiting its turn) is over before a test counts requests or injects faults."""
        sqs = boto3.client("sqs")
        counts = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]

        def drained() -> bool:
            attributes = sqs.get_queue_attributes(QueueUrl=self.resources.queue_url, AttributeNames=counts)
            return all(int(attributes["Attributes"].get(name, "0")) == 0 for name in counts)

        assert self.runtime.poller.wait_until(drained, WAIT_SECONDS), "the work queue did not drain"

    def kintone_requests_by_api(self, day: str) -> dict[str, int]:
        """What kintone (the emulator) counted for the app on a kintone day, per API."""
        return requests_by_api(self.emulator.request_counts(), APP_ID, day)

    def save_while_the_worker_waits(self, count: int) -> list[str]:
        """Save `count` records while the worker takes no messages, so that they reach it together
        (as a burst does, records arriving faster than the workers take them)."""
        self.runtime.poller.pause()
        try:
            record_ids = [self.save_record(key_name=f"batched {number}") for number in range(count)]
            self.emulator.wait_for_webhooks(len(self.emulator.webhook_log()))
        finally:
            self.runtime.poller.resume()
        return record_ids

    def webhooks_for(self, record_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            entry
            for entry in self.emulator.webhook_log()
            if entry["record_id"] == record_id and kind in (None, entry["type"])
        ]

    def deliver(self, payload: dict[str, Any] | bytes) -> httpx.Response:
        """Deliver a webhook ourselves (a replay, a forgery, an echo) and wait until it is handled."""
        handled_before = self.runtime.poller.handled
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        response = httpx.post(self.webhook_url, content=body, timeout=10)
        if response.status_code == 202 and response.json().get("result") == "queued":
            self.wait_handled(handled_before + 1)
        return response

    def wait_handled(self, count: int) -> None:
        assert self.runtime.poller.wait_handled(count, WAIT_SECONDS), "the worker did not handle the message"

    def delete_from_screen(self, *record_ids: str, user: str = "taro") -> None:
        """A user deletes records from the kintone screen (fires DELETE_RECORD)."""
        httpx.post(
            f"{self.kintone_url}/_emulator/records/delete",
            headers=self.as_user(user),
            json={"app": APP_ID, "ids": [int(record_id) for record_id in record_ids]},
            timeout=10,
        ).raise_for_status()

    def bulk_save(self, count: int, user: str = "taro") -> list[str]:
        """`POST /k/v1/records.json` (an import through the API): kintone sends no webhook for it.

        Signed in as `user`: a record saved with the app's token alone belongs to nobody."""
        record_ids: list[str] = []
        for start in range(0, count, 100):  # kintone's limit per request
            response = httpx.post(
                f"{self.kintone_url}/k/v1/records.json",
                headers=self.as_user(user),
                json={
                    "app": APP_ID,
                    "records": [
                        {"key_name": {"value": f"imported {number}"}, "team": {"value": "platform"}}
                        for number in range(start, min(count, start + 100))
                    ],
                },
                timeout=10,
            )
            response.raise_for_status()
            record_ids.extend(response.json()["ids"])
        return record_ids

    def bulk_delete(self, *record_ids: str) -> None:
        """`DELETE /k/v1/records.json`: kintone sends no webhook for it."""
        httpx.request(
            "DELETE",
            f"{self.kintone_url}/k/v1/records.json",
            headers={"X-Cybozu-API-Token": self.api_token},
            json={"app": APP_ID, "ids": [int(record_id) for record_id in record_ids]},
            timeout=10,
        ).raise_for_status()

    def reconcile(self, **event: Any) -> dict[str, Any]:
        """One run of the reconciler handler, as its schedule would invoke it (or an operator)."""
        return invoke_reconciler(event or None)

    def retire_keys_at(self, now: float) -> int:
        """The reconciler's deletion of rotated-out keys, with a clock reading `now`."""
        return build_reconciler(clock=lambda: now).retire_due_keys()

    def wait_record_handled(self, record_id: str, count: int) -> None:
        """Until the worker handled `count` messages of this record in all."""
        handled = self.runtime.poller.wait_group_handled(f"{APP_ID}:{record_id}", count, WAIT_SECONDS)
        assert handled, f"the worker did not handle record {record_id}"

    def handled_for(self, record_id: str) -> int:
        return self.runtime.poller.handled_in_group(f"{APP_ID}:{record_id}")

    def delivery_that_converged(self, record_id: str) -> int:
        """Which delivery of the record's message (its SQS receive count) converged it; waits for it."""
        group = f"{APP_ID}:{record_id}"
        with self.worker_log.changed:
            found = self.worker_log.changed.wait_for(
                lambda: any(line.record == group for line in self.worker_log.converged), WAIT_SECONDS
            )
            assert found, f"the worker never converged record {record_id}"
            return next(line.receive_count for line in self.worker_log.converged if line.record == group)

    def wait_rotations(self, count: int) -> None:
        assert self.runtime.rotations.wait_finished(count, WAIT_SECONDS), "the rotation did not end"

    # -- LiteLLM and AWS, as an auditor would look -------------------------------------------------

    def alias(self, record_id: str) -> str:
        return f"{self.key_alias_prefix}-{APP_ID}-{record_id}"

    def keys_under_alias(self, record_id: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.litellm.base_url}/key/list",
            params={"key_alias": self.alias(record_id), "return_full_object": "true"},
            headers={"Authorization": f"Bearer {self.litellm.master_key}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["keys"]

    def chat_status(self, api_key: str, model: str = "fake-gpt") -> int:
        response = httpx.post(
            f"{self.litellm.base_url}/chat/completions",
            headers={"Authorization": f"Bearer {api_key}"},
            json={"model": model, "messages": [{"role": "user", "content": "hello"}]},
            timeout=30,
        )
        return response.status_code

    def put_secret(self, secret_id: str, value: str) -> None:
        """A new value for one of the stack's secrets, as a rotation writes it."""
        self.secrets_client().put_secret_value(SecretId=secret_id, SecretString=value)

    def new_litellm_admin_key(self) -> str:
        """A key of a new proxy_admin user: it may do what the master key does, and can be deleted."""
        response = httpx.post(
            f"{self.litellm.base_url}/user/new",
            headers={"Authorization": f"Bearer {self.litellm.master_key}"},
            json={"user_id": f"it-admin-{uuid.uuid4().hex[:8]}", "user_role": "proxy_admin"},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()["key"]

    def delete_litellm_key(self, api_key: str) -> None:
        httpx.post(
            f"{self.litellm.base_url}/key/delete",
            headers={"Authorization": f"Bearer {self.litellm.master_key}"},
            json={"keys": [api_key]},
            timeout=30,
        ).raise_for_status()

    def secret_name(self, record_id: str) -> str:
        return f"{self.key_secret_prefix}app-{APP_ID}/record-{record_id}"

    def secrets_client(self):
        return local_client("secretsmanager", self.aws_endpoint)

    def stored_key(self, record_id: str) -> str | None:
        client = self.secrets_client()
        try:
            value = client.get_secret_value(SecretId=self.secret_name(record_id), VersionStage="AWSCURRENT")
        except client.exceptions.ResourceNotFoundException:
            return None
        return json.loads(value["SecretString"])["api_key"]


class WorkerLog(logging.Handler):
    """The worker's "record converged" lines, as they are logged."""

    def __init__(self) -> None:
        super().__init__()
        self.converged: list[logging.LogRecord] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "record converged":
            with self.changed:
                self.converged.append(record)
                self.changed.notify_all()


class AwsFaults:
    """Makes AWS calls of this process fail like AWS under load, e.g. Secrets Manager throttling.

    Hooks botocore's default session, from which the functions' clients are made, where a request
    is about to be sent: the client gets AWS's error answer instead, so its retry mode sees the
    fault exactly as it would see a real one.
    """

    def __init__(self) -> None:
        self._remaining: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self._events = boto3._get_default_session()._session.get_component("event_emitter")
        self._events.register("before-send.*.*", self._maybe_fail, unique_id="aws-faults")

    def inject(self, operation: str, count: int, code: str = "ThrottlingException") -> None:
        with self._lock:
            self._remaining[operation] = (count, code)

    def remaining(self, operation: str) -> int:
        with self._lock:
            return self._remaining.get(operation, (0, ""))[0]

    def clear(self) -> None:
        with self._lock:
            self._remaining.clear()

    def close(self) -> None:
        self._events.unregister("before-send.*.*", unique_id="aws-faults")

    def _maybe_fail(self, request, event_name: str, **_kwargs: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            count, code = self._remaining.get(operation, (0, ""))
            if not count:
                return None
            self._remaining[operation] = (count - 1, code)
        body = json.dumps({"__type": code, "message": "injected fault"}).encode()
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _RawBody(body))


class _RawBody:
    """What botocore reads an answer's body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        yield self._body


# Members of platform besides the local directory's, each owning the keys of one offboarding test,
# so that their leaving touches no other test's keys. leaver-listed-late comes last: the last member
# of platform in the User API's lists (which are in id order).
LEAVERS = (
    "leaver-deactivated",
    "leaver-moved",
    "leaver-during-fault",
    "leaver-en-masse",
    "leaver-listed-late",
)


@pytest.fixture(autouse=True)
def earlier_tests_work_done(request: pytest.FixtureRequest) -> None:
    """Each test on the stack starts with an empty work queue, so that what an earlier test left
    neither takes this test's injected faults nor adds to its counts."""
    if "local_stack" in request.fixturenames:
        request.getfixturevalue("local_stack").wait_until_the_queue_is_drained()


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    litellm = ensure_litellm(STATE_DIR)
    aws_endpoint = ensure_moto_server(STATE_DIR)
    session = uuid.uuid4().hex[:8]
    api_token = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
    litellm_faults = FaultProxy(litellm.base_url)
    aws_faults = AwsFaults()
    # The directory of the local stack, with passwords of this session, and the offboarding tests' owners.
    passwords = kintone_directory.new_passwords()
    user_api_token = kintone_directory.new_user_api_token()
    document = kintone_directory.directory_document(passwords, user_api_token)
    for login in LEAVERS:
        passwords[login] = secrets.token_urlsafe(18)
        document["users"].append({"code": login, "password": passwords[login], "organizations": ["platform"]})
    directory = Directory.from_document(document)
    # Tests save records far faster than kintone's 60 webhooks a minute; tests of that cap set it.
    emulator = KintoneEmulator(
        app_id=APP_ID,
        api_tokens=[api_token],
        webhook_rate_per_minute=UNCAPPED,
        directory=directory,
        app_creator=kintone_directory.ADMIN_LOGIN,
    )
    kintone_url = emulator.start()
    resources = create_provisioning_resources(
        aws_endpoint,
        f"it-{session}",
        kintone_api_token=api_token,
        litellm_master_key=litellm.master_key,
        cybozu_user_api_token=user_api_token,
    )
    environment = function_environment(
        aws_endpoint=aws_endpoint,
        kintone_base_url=kintone_url,
        kintone_app_id=APP_ID,
        litellm_base_url=litellm_faults.base_url,
        resources=resources,
        namespace=f"it-{session}",
        key_alias_prefix=f"it{session}",
    )
    environment["MESSAGE_LANGUAGE"] = "en"
    environment["HTTP_TIMEOUT_SECONDS"] = "2"  # so an injected hang becomes a timeout quickly
    # The backoff between deliveries, 1, 2, 4, 8 s (with jitter) instead of 5 to 40: the same
    # mechanism, short enough for a test to see a request through all its attempts.
    environment["REDELIVERY_BASE_SECONDS"] = "1"
    saved_environment = dict(os.environ)
    os.environ.update(environment)
    reset_caches()
    runtime = LocalRuntime(resources.queue_url, serve_webhooks=True, poll_queue=True)
    from lambdas.handlers import worker  # noqa: PLC0415 - imported after the environment is set

    worker_log = WorkerLog()
    worker.logger.addHandler(worker_log)
    runtime.start()
    emulator.configure(webhook_url=f"{runtime.base_url}/webhook/{resources.webhook_token}")
    try:
        yield LocalStack(
            emulator=emulator,
            passwords=passwords,
            user_api_token=user_api_token,
            runtime=runtime,
            litellm=litellm,
            resources=resources,
            aws_endpoint=aws_endpoint,
            api_token=api_token,
            key_alias_prefix=f"it{session}",
            key_secret_prefix=environment["KEY_SECRET_PREFIX"],
            litellm_faults=litellm_faults,
            aws_faults=aws_faults,
            worker_log=worker_log,
        )
    finally:
        worker.logger.removeHandler(worker_log)
        runtime.stop()
        emulator.stop()
        litellm_faults.close()
        aws_faults.close()
        os.environ.clear()
        os.environ.update(saved_environment)
        reset_caches()
