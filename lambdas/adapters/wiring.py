"""Builds the adapters from settings once per Lambda container (or local process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities import parameters

from lambdas.adapters import source_identity
from lambdas.adapters.credentials import SecretCredential
from lambdas.adapters.cybozu_directory import CybozuDirectory
from lambdas.adapters.dynamodb_state_store import (
    DynamoDBAlertClaims,
    DynamoDBRequestTally,
    DynamoDBStateStore,
)
from lambdas.adapters.kintone_records import KintoneRecords
from lambdas.adapters.litellm_keys import LiteLLMKeyGateway
from lambdas.adapters.record_batch import RecordBatch
from lambdas.adapters.retries import AWS_CLIENT_CONFIG
from lambdas.adapters.secrets_key_store import SecretsManagerKeyStore
from lambdas.adapters.sqs_work_queue import SqsWorkQueue
from lambdas.adapters.stage_timing import TimedPort
from lambdas.domain.alerts import AlertConfig, BudgetAlerts
from lambdas.domain.membership import Memberships
from lambdas.domain.ports import RotationRequester
from lambdas.domain.provisioning import KeyProvisioner, ProvisioningConfig
from lambdas.domain.reconciliation import Reconciler, ReconcilerConfig
from lambdas.domain.request_budget import RequestMeter
from lambdas.domain.rotation import KeyRotator, RotationConfig
from lambdas.domain.settings import load_settings
from lambdas.domain.usage import SpendSync, SpendSyncConfig


class AuditedClients:
    """Secrets Manager clients acting for a kintone user.

    With an audit role, writes run in a role session whose SourceIdentity is the kintone user, so
    CloudTrail names who asked for the key, not just the worker function.
    """

    _REFRESH_BEFORE_EXPIRY_SECONDS = 300

    def __init__(self, audit_role_arn: str) -> None:
        self._audit_role_arn = audit_role_arn
        self._default = boto3.client("secretsmanager", config=AWS_CLIENT_CONFIG)
        self._by_user: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, kintone_user: str) -> Any:
        identity = source_identity.encode(kintone_user)
        if not self._audit_role_arn or not identity:
            return self._default
        with self._lock:
            client, expires_at = self._by_user.get(identity, (None, 0.0))
            if client is not None and expires_at - time.time() > self._REFRESH_BEFORE_EXPIRY_SECONDS:
                return client
            credentials = boto3.client("sts", config=AWS_CLIENT_CONFIG).assume_role(
                RoleArn=self._audit_role_arn,
                RoleSessionName=f"kintone-{identity}"[:64],
                SourceIdentity=identity,
                DurationSeconds=3600,
            )["Credentials"]
            client = boto3.client(
                "secretsmanager",
                config=AWS_CLIENT_CONFIG,
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
            )
            self._by_user[identity] = (client, credentials["Expiration"].timestamp())
            return client


@cache
def key_store() -> SecretsManagerKeyStore:
    settings = load_settings()
    return SecretsManagerKeyStore(
        client_for=AuditedClients(settings.audit_role_arn),
        prefix=settings.key_secret_prefix,
        kms_key_id=settings.key_secret_kms_key_id,
        recovery_window_days=settings.secret_recovery_window_days,
        rotator_function_arn=settings.rotator_function_arn,
        rotation_days=settings.rotation_days,
    )


@cache
def state_store() -> DynamoDBStateStore:
    return DynamoDBStateStore(_state_table())


_local_rotation_requester: RotationRequester | None = None


def use_local_rotation_requester(requester: RotationRequester | None) -> None:
    """Locally, moto cannot invoke the rotator Lambda, so the local runtime runs its steps itself.

    In AWS, `rotate_secret` starts the rotation and Secrets Manager invokes the rotator.
    """
    global _local_rotation_requester  # noqa: PLW0603 - one process-wide choice, made at start-up
    _local_rotation_requester = requester
    provisioner.cache_clear()


def rotation_requester() -> RotationRequester:
    return _local_rotation_requester or key_store()


# Every kintone request of this process, until an invocation's end adds them to the daily tally.
REQUEST_METER = RequestMeter()


@cache
def kintone_records() -> KintoneRecords:
    settings = load_settings()
    return KintoneRecords(
        settings.kintone_base_url,
        SecretCredential(settings.kintone_api_token_secret_id),
        settings.http_timeout_seconds,
        meter=REQUEST_METER,
    )


@cache
def record_batch() -> RecordBatch:
    return RecordBatch(kintone_records())


@cache
def request_tally() -> DynamoDBRequestTally:
    return DynamoDBRequestTally(_state_table())


@cache
def litellm_gateway() -> LiteLLMKeyGateway:
    settings = load_settings()
    return LiteLLMKeyGateway(
        settings.litellm_base_url,
        SecretCredential(settings.litellm_master_key_secret_id),
        settings.http_timeout_seconds,
    )


@cache
def memberships() -> Memberships:
    """The directory, with the common-administration API token or else the login and password."""
    settings = load_settings()
    token = settings.cybozu_user_api_token_secret_id
    directory = CybozuDirectory(
        settings.kintone_base_url,
        SecretCredential(token or settings.cybozu_user_api_password_secret_id),
        settings.http_timeout_seconds,
        login=None if token else settings.cybozu_user_api_login,
    )
    return Memberships(directory)


@cache
def provisioner() -> KeyProvisioner:
    """The worker's: kintone through the invocation's record batch, each port timed by stage."""
    settings = load_settings()
    return KeyProvisioner(
        ProvisioningConfig(
            team_catalog=settings.team_catalog,
            field_codes=settings.field_codes,
            language=settings.message_language,
            key_alias_prefix=settings.key_alias_prefix,
            kintone_base_url=settings.kintone_base_url,
        ),
        records=TimedPort(
            record_batch(),
            "kintone_read",
            {"write_fields": "write_back", "add_comment": "comment"},
        ),
        gateway=TimedPort(litellm_gateway(), "litellm"),
        key_store=TimedPort(key_store(), "secret"),
        state_store=TimedPort(state_store(), "state"),
        rotations=TimedPort(rotation_requester(), "secret"),
        memberships=TimedPort(memberships(), "directory"),
    )


@cache
def rotator() -> KeyRotator:
    settings = load_settings()
    return KeyRotator(
        RotationConfig(
            field_codes=settings.field_codes,
            language=settings.message_language,
            key_alias_prefix=settings.key_alias_prefix,
            grace_seconds=settings.rotation_grace_seconds,
            test_model=settings.rotation_test_model,
        ),
        secrets=key_store(),
        gateway=litellm_gateway(),
        records=kintone_records(),
        state_store=state_store(),
    )


def build_reconciler(clock: Callable[[], float] = time.time) -> Reconciler:
    """A reconciler on this process's adapters; tests pass a clock to step past a grace period."""
    settings = load_settings()
    return Reconciler(
        ReconcilerConfig(
            app_id=settings.kintone_app_id,
            field_codes=settings.field_codes,
            lookback_seconds=settings.reconcile_lookback_seconds,
            full_sweep_seconds=settings.reconcile_full_sweep_seconds,
            max_revoke_share=settings.max_revoke_share,
            mass_revoke_floor=settings.mass_revoke_floor,
            team_catalog=settings.team_catalog,
        ),
        records=kintone_records(),
        state_store=state_store(),
        queue=SqsWorkQueue(sqs_client(), settings.queue_url),
        gateway=litellm_gateway(),
        clock=clock,
        memberships=memberships(),
    )


@cache
def reconciler() -> Reconciler:
    return build_reconciler()


@cache
def spend_sync() -> SpendSync:
    settings = load_settings()
    return SpendSync(
        SpendSyncConfig(
            app_id=settings.kintone_app_id,
            field_codes=settings.field_codes,
            key_alias_prefix=settings.key_alias_prefix,
        ),
        usage=litellm_gateway(),
        records=kintone_records(),
        state_store=state_store(),
    )


@cache
def budget_alerts() -> BudgetAlerts:
    settings = load_settings()
    return BudgetAlerts(
        AlertConfig(
            app_id=settings.kintone_app_id,
            key_alias_prefix=settings.key_alias_prefix,
            team_catalog=settings.team_catalog,
            language=settings.message_language,
            repeat_after_seconds=settings.alert_repeat_after_seconds,
        ),
        records=kintone_records(),
        keys=litellm_gateway(),
        state_store=state_store(),
        claims=DynamoDBAlertClaims(_state_table()),
    )


def _state_table() -> Any:
    return boto3.resource("dynamodb", config=AWS_CLIENT_CONFIG).Table(load_settings().state_table_name)


@cache
def sqs_client() -> Any:
    return boto3.client("sqs", config=AWS_CLIENT_CONFIG)


def reset_caches() -> None:
    """Forget cached settings, secrets and clients, e.g. after the environment changed."""
    for builder in (
        key_store,
        kintone_records,
        record_batch,
        litellm_gateway,
        memberships,
        state_store,
        provisioner,
        rotator,
        reconciler,
        spend_sync,
        budget_alerts,
        request_tally,
        sqs_client,
        load_settings,
    ):
        builder.cache_clear()
    parameters.clear_caches()
