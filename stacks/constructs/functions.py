"""The provisioning functions, their roles and their permissions.

Every function has its own role with only the statements written here (no AWS managed policy), and
each grant is an API call its code makes (lambdas/adapters):
- webhook: read the webhook token secret, send to the queue.
- worker: consume the queue (receive, delete, change a message's visibility for backoff), send on to
  it what it did not attempt and park what used its last attempt in the dead-letter queue; read the
  kintone, directory and LiteLLM secrets; get and put its record's state;
  create, read, restore, void and delete key secrets under the key prefix, turn on and request their
  rotation (and so invoke the rotator, as AWS requires of RotateSecret's caller); assume the audit role.
- reconciler: read the kintone, directory and LiteLLM secrets; get and put its cursor and read states, query
  the status index, delete due retirements; send to the queue. No key secret at all.
- spend sync: read the kintone and LiteLLM secrets; query the status index for issued states and
  update their usage. No queue, no key secret.
- alerts: read the alert token, kintone and LiteLLM secrets; get a record's state, put and delete
  its alert claims. No queue, no key secret.
- rotator: read the kintone and LiteLLM secrets; get and put the record's state; the four rotation
  steps' calls on key secrets (describe, read, put the pending value, move the stages) under the key
  prefix. Invoked by Secrets Manager only; it acts under its own role, never the audit role.
The audit role may create, restore, void and delete key secrets (what a kintone user asks for); only
the worker assumes it, with the kintone user as SourceIdentity, so CloudTrail names who asked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.common import acknowledge, log_group
from stacks.constructs.egress import ca_bundle_layer, egress_environment
from stacks.constructs.network import private_subnets
from stacks.constructs.queue import ProvisioningQueue
from stacks.constructs.secrets import ProvisioningSecrets
from stacks.constructs.state import StateTable

RUNTIME = lambda_.Runtime.PYTHON_3_12
WORKER_TIMEOUT = Duration.seconds(60)
WORKER_BATCH_SIZE = 10
SERVICE_NAME = "kintone-llm-keys"

# Key secret calls per caller, from lambdas/adapters/secrets_key_store.py. What a kintone user
# asks for runs in the audit role's session for that user: creating the key's secret (create with
# tags, read it back; for a revoked record restore it and put a fresh value) and, on revoke, voiding
# its value and scheduling its deletion.
AUDIT_KEY_SECRET_ACTIONS = (
    "secretsmanager:CreateSecret",
    "secretsmanager:TagResource",  # CreateSecret with Tags needs it
    "secretsmanager:GetSecretValue",
    "secretsmanager:RestoreSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:DeleteSecret",
)
# The worker does the same under its own role when the user is unknown, reads the current key, and
# turns on (ensure_rotation: describe, then rotate) and requests (rotate) rotations.
WORKER_KEY_SECRET_ACTIONS = (
    *AUDIT_KEY_SECRET_ACTIONS,
    "secretsmanager:DescribeSecret",
    "secretsmanager:RotateSecret",
)
# The rotation steps: versions (describe), value_of (get), create_pending (put), promote (stages).
ROTATOR_KEY_SECRET_ACTIONS = (
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
)
KEY_SECRET_ACTIONS = tuple(
    dict.fromkeys((*WORKER_KEY_SECRET_ACTIONS, *AUDIT_KEY_SECRET_ACTIONS, *ROTATOR_KEY_SECRET_ACTIONS))
)


@dataclass(frozen=True)
class TableAccess:
    """State table calls of one function (lambdas/adapters/dynamodb_state_store.py)."""

    table: tuple[str, ...]
    status_index: tuple[str, ...] = ()

    @property
    def writes(self) -> bool:
        return bool({"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem"} & set(self.table))


# Every function that calls kintone adds its requests to the app's daily tally (an UpdateItem).
# get / put of the record's state.
WORKER_TABLE = TableAccess(table=("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"))
# get / put of the state, and schedule_retirement (a put).
ROTATOR_TABLE = TableAccess(table=("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"))
# get / get_cursor, put_cursor, clear_retirement (a conditional delete); states_with_status and
# due_retirements query the status index.
RECONCILER_TABLE = TableAccess(
    table=("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem"),
    status_index=("dynamodb:Query",),
)
# states_with_status queries the status index; mark_usage_shown updates (conditionally).
SPEND_SYNC_TABLE = TableAccess(table=("dynamodb:UpdateItem",), status_index=("dynamodb:Query",))
# get of the record's state; claim (conditional put) and release (delete) of an alert.
ALERTS_TABLE = TableAccess(
    table=("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem")
)
# What Lambda needs to attach a function to the VPC. EC2 offers no resource-level scoping for
# the Describe calls, and Lambda checks these on the role before it creates the function.
_VPC_ACCESS_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    description: str
    timeout: Duration
    # Functions that call LiteLLM run in the VPC to reach the internal ALB.
    in_vpc: bool

    @property
    def construct_name(self) -> str:
        """`spend_sync` → `SpendSync`."""
        return "".join(part.title() for part in self.name.split("_"))


WEBHOOK = FunctionSpec(
    "webhook", "Authenticates and validates kintone webhooks, then enqueues them", Duration.seconds(10), False
)
WORKER = FunctionSpec(
    "worker", "Issues, updates and revokes LiteLLM keys for queued kintone records", WORKER_TIMEOUT, True
)
RECONCILER = FunctionSpec(
    "reconciler", "Finds kintone records that webhooks missed and enqueues them", Duration.minutes(5), True
)
SPEND_SYNC = FunctionSpec(
    "spend_sync",
    "Copies each issued key's spend and budget from LiteLLM into its kintone record",
    Duration.minutes(5),
    True,
)
ALERTS = FunctionSpec(
    "alerts",
    "Turns LiteLLM budget alerts into comments on the keys' kintone records",
    Duration.seconds(15),
    True,
)
ROTATOR = FunctionSpec(
    "rotator",
    "Secrets Manager rotation of issued keys: new key, test, switch, delete old",
    WORKER_TIMEOUT,
    True,
)


@dataclass(frozen=True)
class GatewayAccess:
    """How the VPC-bound functions reach LiteLLM."""

    base_url: str
    vpc: ec2.IVpc | None
    security_group: ec2.ISecurityGroup | None


class ProvisioningFunctions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        code: lambda_.Code,
        gateway: GatewayAccess,
        secrets: ProvisioningSecrets,
        queue: ProvisioningQueue,
        state: StateTable,
        data_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._code = code
        self._gateway = gateway
        self._data_key = data_key
        stack = Stack.of(self)
        self._key_secrets_arn = stack.format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{settings.key_secrets_prefix}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self._secrets_key = secrets.key
        environment = {
            "KINTONE_BASE_URL": f"https://{settings.kintone.domain}",
            "KINTONE_APP_ID": str(settings.kintone.app_id),
            "KINTONE_API_TOKEN_SECRET_ID": secrets.kintone_api_token.secret_arn,
            "LITELLM_BASE_URL": gateway.base_url,
            "LITELLM_MASTER_KEY_SECRET_ID": secrets.litellm_master_key.secret_arn,
            "WEBHOOK_TOKEN_SECRET_ID": secrets.webhook_token.secret_arn,
            "QUEUE_URL": queue.queue.queue_url,
            "STATE_TABLE_NAME": state.table.table_name,
            "KEY_SECRET_PREFIX": settings.key_secrets_prefix,
            "KEY_SECRET_KMS_KEY_ID": secrets.key.key_arn,
            "KEY_ALIAS_PREFIX": settings.key_alias_prefix,
            "TEAM_CATALOG": settings.team_catalog.model_dump_json(),
            "FIELD_CODES": json.dumps(settings.kintone.field_codes.model_dump()),
            "MESSAGE_LANGUAGE": settings.kintone.message_language,
            "MAX_WEBHOOK_BODY_BYTES": str(settings.api.max_webhook_body_bytes),
            "HTTP_TIMEOUT_SECONDS": str(settings.http_timeout_seconds),
            "SECRET_RECOVERY_WINDOW_DAYS": str(settings.secret_recovery_window_days),
            **directory_credential(settings, secrets.cybozu_user_api),
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace(settings),
            "LOG_LEVEL": "INFO",
            **egress_environment(settings, urlsplit(gateway.base_url).hostname),
        }
        self._layers = [layer] if (layer := ca_bundle_layer(self, "CaBundle", settings)) else None

        self.webhook = self._function(WEBHOOK, environment)
        self.worker = self._function(WORKER, environment)
        self.reconciler = self._function(RECONCILER, environment)
        self.rotator = self._function(ROTATOR, environment)
        self.spend_sync = self._function(SPEND_SYNC, environment)
        self.alerts = self._function(ALERTS, environment)
        self.by_name = {
            "Webhook": self.webhook,
            "Worker": self.worker,
            "Reconciler": self.reconciler,
            "Rotator": self.rotator,
            "SpendSync": self.spend_sync,
            "Alerts": self.alerts,
        }

        self.audit_role = self._audit_role()
        self.worker.add_environment("AUDIT_ROLE_ARN", self.audit_role.role_arn)
        # The worker turns on rotation for each key secret it creates.
        self.worker.add_environment("ROTATOR_FUNCTION_ARN", self.rotator.function_arn)
        self.worker.add_environment("ROTATION_DAYS", str(settings.key_rotation_days))
        # Where the worker parks a request after its last attempt.
        self.worker.add_environment("DEAD_LETTER_QUEUE_URL", queue.dead_letter_queue.queue_url)
        self.rotator.add_environment("ROTATION_GRACE_SECONDS", str(settings.rotation_grace_seconds))
        if settings.gateway.test_model is not None:
            self.rotator.add_environment("ROTATION_TEST_MODEL", settings.gateway.test_model)
        for variable, value in (
            ("RECONCILE_LOOKBACK_SECONDS", settings.reconcile_lookback_seconds),
            ("RECONCILE_FULL_SWEEP_SECONDS", settings.reconcile_full_sweep_seconds),
            ("MAX_REVOKE_SHARE", settings.max_revoke_share),
            ("MASS_REVOKE_FLOOR", settings.mass_revoke_floor),
        ):
            self.reconciler.add_environment(variable, str(value))

        # webhook
        self._allow_secret_read(self.webhook, secrets.webhook_token)
        self._allow_send(self.webhook, queue)
        # worker
        self.worker.add_event_source(
            event_sources.SqsEventSource(
                queue.queue,
                batch_size=WORKER_BATCH_SIZE,
                report_batch_item_failures=True,
                # kintone allows 100 concurrent requests per domain; stay well below with headroom.
                max_concurrency=settings.worker_max_concurrency,
            )
        )
        # The worker delays a failed message (ChangeMessageVisibility, granted with the event source's
        # consume permissions), sends a message it did not attempt on as a new one, and parks a request
        # that used its last attempt in the dead-letter queue.
        self._allow_send(self.worker, queue)
        self._allow_send(self.worker, queue, dead_letters=True)
        for function in (self.worker, self.reconciler, self.rotator, self.spend_sync, self.alerts):
            self._allow_secret_read(function, secrets.kintone_api_token)
            self._allow_secret_read(function, secrets.litellm_master_key)
        # Only the functions that ask the directory (issuing, offboarding sweeps) may read its credential.
        for function in (self.worker, self.reconciler):
            self._allow_secret_read(function, secrets.cybozu_user_api)
        self._allow_table(self.worker, state, WORKER_TABLE)
        self._allow_table(self.rotator, state, ROTATOR_TABLE)
        # The reconciler keeps its sweep cursor in the table and clears retired keys' entries.
        self._allow_table(self.reconciler, state, RECONCILER_TABLE)
        self._allow_table(self.spend_sync, state, SPEND_SYNC_TABLE)
        # alerts: LiteLLM's webhook alerting calls it through the API's /alert/{token} route.
        self.alerts.add_environment("ALERT_TOKEN_SECRET_ID", secrets.alert_token.secret_arn)
        self._allow_secret_read(self.alerts, secrets.alert_token)
        self._allow_table(self.alerts, state, ALERTS_TABLE)
        self._allow_send(self.reconciler, queue)
        self._allow_key_secrets(self.worker.role, WORKER_KEY_SECRET_ACTIONS)
        self._allow_key_secrets(self.audit_role, AUDIT_KEY_SECRET_ACTIONS)
        self._allow_key_secrets(self.rotator.role, ROTATOR_KEY_SECRET_ACTIONS)
        self.worker.add_to_role_policy(
            iam.PolicyStatement(
                actions=["sts:AssumeRole", "sts:SetSourceIdentity"], resources=[self.audit_role.role_arn]
            )
        )

        # reconciler: a sweep on a schedule catches webhooks kintone dropped or never sent.
        events.Rule(
            self,
            "ReconcileSchedule",
            description="Runs the reconciler",
            schedule=events.Schedule.rate(Duration.minutes(settings.reconcile_every_minutes)),
            targets=[events_targets.LambdaFunction(self.reconciler, retry_attempts=0)],
        )
        # spend sync: EventBridge's shortest rate is a minute.
        events.Rule(
            self,
            "SpendSyncSchedule",
            description="Copies key spend from LiteLLM into the kintone records",
            schedule=events.Schedule.rate(Duration.minutes(settings.spend_sync_minutes)),
            targets=[events_targets.LambdaFunction(self.spend_sync, retry_attempts=0)],
        )
        # rotator: only Secrets Manager may invoke it, only for key secrets of this account.
        self.rotator.add_permission(
            "InvokedBySecretsManager",
            principal=iam.ServicePrincipal("secretsmanager.amazonaws.com"),
            action="lambda:InvokeFunction",
            source_account=stack.account,
            source_arn=self._key_secrets_arn,
        )

    def _function(self, spec: FunctionSpec, environment: dict[str, str]) -> lambda_.Function:
        settings = self._settings
        role = iam.Role(
            self,
            f"{spec.construct_name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{settings.resource_prefix} {spec.name} function",
        )
        logs = log_group(self, f"{spec.construct_name}Logs", settings)
        logs.grant_write(role)
        in_vpc = spec.in_vpc and self._gateway.vpc is not None
        if in_vpc:
            role.add_to_policy(iam.PolicyStatement(actions=list(_VPC_ACCESS_ACTIONS), resources=["*"]))
            acknowledge(
                role,
                "AwsSolutions-IAM5[Resource::*]",
                "Lambda's VPC attachment (network interface create/describe/delete) and X-Ray trace upload "
                "have no resource-level permissions in IAM; the actions are listed one by one.",
            )
        else:
            acknowledge(
                role,
                "AwsSolutions-IAM5[Resource::*]",
                "X-Ray trace upload (xray:PutTraceSegments, PutTelemetryRecords) has no resource-level "
                "permissions in IAM.",
            )
        function = lambda_.Function(
            self,
            spec.construct_name,
            description=spec.description,
            runtime=RUNTIME,
            architecture=(
                lambda_.Architecture.ARM_64
                if settings.lambda_architecture == "arm64"
                else lambda_.Architecture.X86_64
            ),
            handler=f"lambdas.handlers.{spec.name}.handler",
            code=self._code,
            role=role,
            log_group=logs,
            memory_size=512,
            timeout=spec.timeout,
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
            vpc=self._gateway.vpc if in_vpc else None,
            vpc_subnets=private_subnets() if in_vpc else None,
            security_groups=[self._gateway.security_group]
            if in_vpc and self._gateway.security_group
            else None,
            # Invocations are retried by the queue or the next schedule, not by Lambda's async retries.
            retry_attempts=0,
            layers=self._layers,
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            "The bundle's wheels are built for CPython 3.12 (stacks/bundling.py) and the code is tested on "
            "it; moving to a newer runtime is a deliberate change of both together.",
        )
        return function

    def _audit_role(self) -> iam.Role:
        # Every session must carry the kintone user as SourceIdentity, so CloudTrail shows who asked.
        # Only the worker acts for a kintone user; the rotator acts for Secrets Manager's schedule.
        requires_source_identity = {"Null": {"sts:SourceIdentity": "false"}}
        worker = iam.ArnPrincipal(self.worker.role.role_arn)
        role = iam.Role(
            self,
            "AuditRole",
            description=f"{self._settings.resource_prefix}: key secret changes on behalf of a kintone user",
            assumed_by=worker.with_conditions(requires_source_identity),
            max_session_duration=Duration.hours(1),
        )
        role.assume_role_policy.add_statements(
            iam.PolicyStatement(
                actions=["sts:SetSourceIdentity"], principals=[worker], conditions=requires_source_identity
            )
        )
        return role

    def _allow_key_secrets(self, principal: iam.IPrincipal, actions: tuple[str, ...]) -> None:
        # Every caller writes key secrets (create or put), for which Secrets Manager needs both.
        statements = [
            iam.PolicyStatement(actions=list(actions), resources=[self._key_secrets_arn]),
            self._key_use(self._secrets_key, ["kms:Decrypt", "kms:GenerateDataKey"], "secretsmanager"),
        ]
        if "secretsmanager:RotateSecret" in actions:
            # AWS lists lambda:InvokeFunction on the rotation function among the permissions the caller
            # of RotateSecret must hold, besides secretsmanager:RotateSecret itself (Secrets Manager API
            # reference, RotateSecret, "Required permissions"); without it, turning on and requesting
            # rotation fail. Only the worker calls RotateSecret, so only it gets this; the function's
            # resource policy admits no other service than Secrets Manager.
            statements.append(
                iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.rotator.function_arn])
            )
        for statement in statements:
            principal.add_to_principal_policy(statement)
        acknowledge(
            principal,
            f"AwsSolutions-IAM5[Resource::{self._key_secrets_arn}]",
            "One secret per issued key is created at run time, named after its kintone record; the "
            "key secret prefix is the narrowest resource that covers them and nothing else.",
        )

    def _allow_secret_read(self, function: lambda_.Function, secret: secretsmanager.ISecret) -> None:
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[secret.secret_arn])
        )
        if secret.encryption_key is not None:
            function.add_to_role_policy(
                self._key_use(secret.encryption_key, ["kms:Decrypt"], "secretsmanager")
            )

    def _allow_send(
        self, function: lambda_.Function, queue: ProvisioningQueue, *, dead_letters: bool = False
    ) -> None:
        target = queue.dead_letter_queue if dead_letters else queue.queue
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[target.queue_arn])
        )
        function.add_to_role_policy(
            self._key_use(self._data_key, ["kms:GenerateDataKey", "kms:Decrypt"], "sqs")
        )

    def _allow_table(self, function: lambda_.Function, state: StateTable, access: TableAccess) -> None:
        function.add_to_role_policy(
            iam.PolicyStatement(actions=list(access.table), resources=[state.table.table_arn])
        )
        if access.status_index:
            function.add_to_role_policy(
                iam.PolicyStatement(actions=list(access.status_index), resources=[state.status_index_arn])
            )
        key_actions = [
            "kms:Decrypt",
            "kms:DescribeKey",
            *(["kms:Encrypt", "kms:GenerateDataKey"] if access.writes else []),
        ]
        function.add_to_role_policy(self._key_use(self._data_key, key_actions, "dynamodb"))

    def _key_use(self, key: kms.IKey, actions: list[str], service: str) -> iam.PolicyStatement:
        """Use of `key` only through `service` (never directly), as that service needs it."""
        region = Stack.of(self).region
        return iam.PolicyStatement(
            actions=actions,
            resources=[key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}},
        )


def directory_credential(settings: EnvironmentSettings, secret: secretsmanager.ISecret) -> dict[str, str]:
    """The User API credential's settings: the secret holds a token, or the password of a login."""
    login = settings.kintone.user_api_login
    if login is None:
        return {"CYBOZU_USER_API_TOKEN_SECRET_ID": secret.secret_arn}
    return {"CYBOZU_USER_API_LOGIN": login, "CYBOZU_USER_API_PASSWORD_SECRET_ID": secret.secret_arn}


def metrics_namespace(settings: EnvironmentSettings) -> str:
    return f"KintoneLlmKeys/{settings.name}"
