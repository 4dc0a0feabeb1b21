"""ProvisioningStack: webhook API, functions, FIFO queue and DLQ, state, secrets, least-privilege IAM."""

from __future__ import annotations

import copy
import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
from aws_cdk.assertions import Match

from lambdas.domain.settings import (
    ENVIRONMENT_VARIABLES,
    MAX_RECEIVE_COUNT,
    Settings,
    settings_from_environment,
)
from local.aws_resources import VISIBILITY_TIMEOUT_SECONDS
from stacks.config import load_environment_settings
from stacks.constructs.functions import KEY_SECRET_ACTIONS, directory_credential
from tests.infra.conftest import REPO_ROOT, Synthesized, cdk_context, key_secrets_arn

pytestmark = pytest.mark.infra

FUNCTIONS = ("webhook", "worker", "reconciler", "rotator", "spend_sync", "alerts")
POWERTOOLS_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"}
# Read by httpx and boto3 themselves (stacks/constructs/egress.py): the proxy and the private CA.
EGRESS_VARIABLES = {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE"}


def function(synthesized: Synthesized, name: str) -> dict[str, Any]:
    logical_id = synthesized.logical_id(
        "provisioning", "AWS::Lambda::Function", rf"/Functions/{construct_name(name)}/Resource$"
    )
    return synthesized.resources("provisioning", "AWS::Lambda::Function")[logical_id]


def rate(minutes: int) -> str:
    """EventBridge's rate expression: the unit is singular for 1."""
    return f"rate({minutes} {'minute' if minutes == 1 else 'minutes'})"


def construct_name(function_name: str) -> str:
    return "".join(part.title() for part in function_name.split("_"))


def role_statements(synthesized: Synthesized, role: str) -> list[dict[str, Any]]:
    logical_id = synthesized.logical_id(
        "provisioning", "AWS::IAM::Policy", rf"/Functions/{role}/DefaultPolicy/"
    )
    policy = synthesized.resources("provisioning", "AWS::IAM::Policy")[logical_id]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


def resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def ref(value: Any) -> str | None:
    """The logical id a Ref or GetAtt points at."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


def secret_id(synthesized: Synthesized, name: str) -> str:
    return synthesized.logical_id(
        "provisioning", "AWS::SecretsManager::Secret", rf"/Secrets/{name}/Resource$"
    )


def test_webhook_api_is_throttled_logged_and_keeps_the_token_out_of_logs(environment: Synthesized) -> None:
    api = environment.settings.api
    (stage,) = environment.resources("provisioning", "AWS::ApiGateway::Stage").values()
    properties = stage["Properties"]
    # One method setting, for every method: no execution logs (they can hold the path, i.e. the token).
    (settings,) = properties["MethodSettings"]
    assert (settings["HttpMethod"], settings["ResourcePath"]) == ("*", "/*")
    assert settings["ThrottlingRateLimit"] == api.throttle_rate_per_second
    assert settings["ThrottlingBurstLimit"] == api.throttle_burst
    assert settings["LoggingLevel"] == "OFF"
    assert settings["DataTraceEnabled"] is False
    assert properties["TracingEnabled"] is False
    # Access logs are the record of every request: JSON, with the route template instead of the path.
    access_log = properties["AccessLogSetting"]
    assert access_log["DestinationArn"]
    log_format = json.loads(access_log["Format"])
    assert log_format["resourcePath"] == "$context.resourcePath"
    variables = set(re.findall(r"\$context\.[A-Za-z.]+", access_log["Format"]))
    assert not {v for v in variables if v.startswith("$context.path")}, "the path holds the webhook token"
    # No other stage settings that could turn execution logging back on.
    for deployment in environment.resources("provisioning", "AWS::ApiGateway::Deployment").values():
        assert "StageDescription" not in deployment["Properties"]


def test_webhook_route_takes_the_token_from_the_path(environment: Synthesized) -> None:
    template = environment.template("provisioning")
    template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "{token}"})
    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "POST",
            "RequestParameters": {"method.request.path.token": True},
            "Integration": Match.object_like({"Type": "AWS_PROXY"}),
        },
    )
    template.has_resource_properties(
        "AWS::ApiGateway::RequestValidator", {"ValidateRequestParameters": True, "ValidateRequestBody": True}
    )
    outputs = environment.templates["provisioning"]["Outputs"]
    assert {"WebhookUrlWithoutToken", "WebhookTokenSecretArn"} <= set(outputs)
    url = json.dumps(outputs["WebhookUrlWithoutToken"]["Value"])
    assert url.endswith('/webhook/"]]}'), url


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_run_the_bundle_with_tracing_and_powertools(environment: Synthesized, name: str) -> None:
    properties = function(environment, name)["Properties"]
    assert properties["Handler"] == f"lambdas.handlers.{name}.handler"
    assert properties["Runtime"] == "python3.12"
    assert properties["Architectures"] == [environment.settings.lambda_architecture]
    assert properties["TracingConfig"] == {"Mode": "Active"}
    variables = properties["Environment"]["Variables"]
    assert variables["POWERTOOLS_SERVICE_NAME"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == f"KintoneLlmKeys/{environment.settings.name}"
    assert variables["LOG_LEVEL"] == "INFO"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_get_the_settings_the_code_reads(environment: Synthesized, name: str) -> None:
    variables = function(environment, name)["Properties"]["Environment"]["Variables"]
    required = {
        variable
        for variable, field in ENVIRONMENT_VARIABLES.items()
        if Settings.model_fields[field].is_required()
    }
    assert required <= set(variables)
    assert set(variables) <= set(ENVIRONMENT_VARIABLES) | POWERTOOLS_VARIABLES | EGRESS_VARIABLES, (
        "a variable the code never reads"
    )
    # With deploy-time values replaced by placeholders, the functions' own settings model accepts them.
    placeholders = {
        key: (value if isinstance(value, str) else f"placeholder-{key.lower()}")
        for key, value in variables.items()
        if key in ENVIRONMENT_VARIABLES
    }
    placeholders["LITELLM_BASE_URL"] = "https://litellm.example"
    settings = settings_from_environment(placeholders)
    assert settings.key_secret_prefix == environment.settings.key_secrets_prefix
    assert settings.kintone_app_id == str(environment.settings.kintone.app_id)
    for key in ("QUEUE_URL", "KEY_SECRET_KMS_KEY_ID"):
        assert variables.get(key), key


def test_functions_that_call_litellm_run_in_the_vpc(environment: Synthesized) -> None:
    assert "VpcConfig" not in function(environment, "webhook")["Properties"]
    for name in ("worker", "reconciler", "rotator", "spend_sync", "alerts"):
        assert function(environment, name)["Properties"]["VpcConfig"]["SubnetIds"]


def test_worker_consumes_the_fifo_queue_in_batches_with_partial_failures(environment: Synthesized) -> None:
    environment.template("provisioning").has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": environment.settings.worker_max_concurrency},
        },
    )


def test_worker_may_delay_requeue_and_park_messages(environment: Synthesized) -> None:
    """The worker's backoff (ChangeMessageVisibility), re-sending what it did not attempt, and parking
    a request after its last attempt, each on the right queue; the DLQ's URL is in its settings."""
    queues = environment.resources("provisioning", "AWS::SQS::Queue")
    main = next(name for name, queue in queues.items() if "RedrivePolicy" in queue["Properties"])
    dead_letters = next(name for name in queues if name != main)
    granted: dict[str, set[str]] = {}
    for statement in role_statements(environment, "WorkerRole"):
        for resource in resources(statement):
            for action in actions(statement):
                if action.startswith("sqs:"):
                    granted.setdefault(action, set()).add(ref(resource))
    assert granted["sqs:ChangeMessageVisibility"] == {main}
    assert granted["sqs:SendMessage"] == {main, dead_letters}
    variables = function(environment, "worker")["Properties"]["Environment"]["Variables"]
    assert ref(variables["DEAD_LETTER_QUEUE_URL"]) == dead_letters


def test_the_local_queue_has_the_stacks_visibility_timeout(environment: Synthesized) -> None:
    queues = environment.resources("provisioning", "AWS::SQS::Queue")
    [main] = [queue for queue in queues.values() if "RedrivePolicy" in queue["Properties"]]
    assert main["Properties"]["VisibilityTimeout"] == VISIBILITY_TIMEOUT_SECONDS


def test_queue_is_encrypted_fifo_with_a_fifo_dead_letter_queue(environment: Synthesized) -> None:
    queues = environment.resources("provisioning", "AWS::SQS::Queue")
    main = next(queue for queue in queues.values() if "RedrivePolicy" in queue["Properties"])
    dead_letters = ref(main["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
    for queue in queues.values():
        assert queue["Properties"]["FifoQueue"] is True
        assert queue["Properties"]["ContentBasedDeduplication"] is False
        assert ref(queue["Properties"]["KmsMasterKeyId"])
    assert main["Properties"]["RedrivePolicy"]["maxReceiveCount"] == MAX_RECEIVE_COUNT
    assert dead_letters in queues
    worker_timeout = function(environment, "worker")["Properties"]["Timeout"]
    assert main["Properties"]["VisibilityTimeout"] >= 6 * worker_timeout
    for policy in environment.resources("provisioning", "AWS::SQS::QueuePolicy").values():
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_state_table_has_pitr_encryption_ttl_and_the_status_index(environment: Synthesized) -> None:
    # TTL stays enabled on expires_at for items that may carry one; no function writes it today.
    environment.template("provisioning").has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            # The functions write updated_at as epoch seconds: the index key must be a number.
            "AttributeDefinitions": Match.array_with([{"AttributeName": "updated_at", "AttributeType": "N"}]),
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": Match.object_like({"SSEEnabled": True, "SSEType": "KMS"}),
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "GlobalSecondaryIndexes": [
                Match.object_like(
                    {
                        "IndexName": "by_status",
                        "KeySchema": [
                            {"AttributeName": "status", "KeyType": "HASH"},
                            {"AttributeName": "updated_at", "KeyType": "RANGE"},
                        ],
                    }
                )
            ],
        },
    )


def test_secrets_are_kms_encrypted_and_hold_no_value_in_the_template(environment: Synthesized) -> None:
    for _, _, secret in environment.all_resources("AWS::SecretsManager::Secret"):
        assert "SecretString" not in secret["Properties"]
        assert "KmsKeyId" in secret["Properties"]
    for _, _, key in environment.all_resources("AWS::KMS::Key"):
        assert key["Properties"]["EnableKeyRotation"] is True


def test_no_policy_allows_wildcard_actions(environment: Synthesized) -> None:
    for resource_type in ("AWS::IAM::Policy", "AWS::IAM::Role"):
        for role, logical_id, resource in environment.all_resources(resource_type):
            documents = [resource["Properties"].get("PolicyDocument")] + [
                policy["PolicyDocument"] for policy in resource["Properties"].get("Policies", [])
            ]
            for document in filter(None, documents):
                for statement in document["Statement"]:
                    if statement["Effect"] != "Allow":
                        continue
                    for action in actions(statement):
                        assert action != "*" and not action.endswith(":*"), f"{role}/{logical_id}: {action}"


def test_only_aws_apis_without_resource_scoping_get_resource_star(environment: Synthesized) -> None:
    unscoped = {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    }
    for name in ("Webhook", "Worker", "Reconciler", "Rotator"):
        for statement in role_statements(environment, f"{name}Role"):
            if "*" in resources(statement):
                assert set(actions(statement)) <= unscoped, statement


# Key secret calls each role makes (lambdas/adapters/secrets_key_store.py), written out here on purpose.
KEY_SECRET_CALLS = {
    # In the kintone user's session: get_or_create (create with tags and read back, or restore a
    # revoked record's secret and put a fresh value) and schedule_deletion (void the value, delete).
    "AuditRole": {
        "secretsmanager:CreateSecret",
        "secretsmanager:TagResource",
        "secretsmanager:GetSecretValue",
        "secretsmanager:RestoreSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:DeleteSecret",
    },
    # The same without a usable user, plus ensure_rotation and request_rotation.
    "WorkerRole": {
        "secretsmanager:CreateSecret",
        "secretsmanager:TagResource",
        "secretsmanager:GetSecretValue",
        "secretsmanager:RestoreSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:DeleteSecret",
        "secretsmanager:DescribeSecret",
        "secretsmanager:RotateSecret",
    },
    # The rotation steps: versions, value_of, create_pending, promote.
    "RotatorRole": {
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
    },
}


def key_store_calls() -> set[str]:
    """The Secrets Manager actions the key store adapter calls (client.<operation> and the like)."""
    source = (REPO_ROOT / "lambdas" / "adapters" / "secrets_key_store.py").read_text()
    operations = set(re.findall(r"\b(?:client|_client_for\([^()]*\))\.([a-z_]+)\b", source))
    called = {"secretsmanager:" + "".join(part.title() for part in op.split("_")) for op in operations}
    # Creating a secret with Tags also needs TagResource.
    return called | ({"secretsmanager:TagResource"} if "secretsmanager:CreateSecret" in called else set())


def test_key_secret_grants_are_exactly_the_key_store_calls() -> None:
    granted = set().union(*KEY_SECRET_CALLS.values())
    assert granted == key_store_calls(), "a grant no adapter call needs, or a call without one"


@pytest.mark.parametrize("role", sorted(KEY_SECRET_CALLS))
def test_key_secret_permissions_are_the_calls_each_role_makes_under_the_key_prefix(
    environment: Synthesized, role: str
) -> None:
    expected = key_secrets_arn(environment.settings)
    granted: set[str] = set()
    for statement in role_statements(environment, role):
        secret_actions = {a for a in actions(statement) if a.startswith("secretsmanager:")}
        if not secret_actions:
            continue
        if resources(statement) == [expected]:
            granted |= secret_actions
        else:  # the platform's own secrets: read only
            assert secret_actions == {"secretsmanager:GetSecretValue"}, (role, statement)
            assert expected not in resources(statement)
    assert granted == KEY_SECRET_CALLS[role]
    assert granted <= set(KEY_SECRET_ACTIONS)


def test_rotator_may_only_rotate_never_create_delete_or_assume(environment: Synthesized) -> None:
    granted = {a for s in role_statements(environment, "RotatorRole") for a in actions(s)}
    forbidden = {
        "secretsmanager:CreateSecret",
        "secretsmanager:DeleteSecret",
        "secretsmanager:RestoreSecret",
        "secretsmanager:RotateSecret",
        "secretsmanager:TagResource",
        "sts:AssumeRole",
        "sts:SetSourceIdentity",
        "lambda:InvokeFunction",
    }
    assert not granted & forbidden
    assert {a.split(":")[0] for a in granted} == {"logs", "xray", "ec2", "secretsmanager", "kms", "dynamodb"}
    reads = [
        resource
        for statement in role_statements(environment, "RotatorRole")
        if actions(statement) == ["secretsmanager:GetSecretValue"]
        for resource in resources(statement)
    ]
    assert secret_id(environment, "KintoneApiToken") in {ref(resource) for resource in reads}
    assert len(reads) == 2, "kintone API token and LiteLLM master key"
    variables = function(environment, "rotator")["Properties"]["Environment"]["Variables"]
    assert "AUDIT_ROLE_ARN" not in variables


def state_store_calls() -> set[str]:
    """The DynamoDB actions the state store adapter calls (self._table.<operation>(...))."""
    source = (REPO_ROOT / "lambdas" / "adapters" / "dynamodb_state_store.py").read_text()
    operations = set(re.findall(r"self\._table\.(\w+)\(", source))
    return {"dynamodb:" + "".join(part.title() for part in operation.split("_")) for operation in operations}


# What each function's code calls on the state table (table) and its status index (index).
TABLE_CALLS = {
    # Every function calling kintone adds its requests to the daily tally (update_item).
    "WorkerRole": ({"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}, set()),  # get, put
    # get, put, schedule_retirement
    "RotatorRole": ({"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}, set()),
    # get, get_cursor, put_cursor, clear_retirement; states_with_status and due_retirements query.
    "ReconcilerRole": (
        {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem"},
        {"dynamodb:Query"},
    ),
    "WebhookRole": (set(), set()),
    # states_with_status queries; mark_usage_shown updates.
    "SpendSyncRole": ({"dynamodb:UpdateItem"}, {"dynamodb:Query"}),
    # get (the state); claim (conditional put) and release (delete) of an alert.
    "AlertsRole": (
        {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem"},
        set(),
    ),
}


def test_table_permissions_are_the_calls_each_function_makes(environment: Synthesized) -> None:
    table = environment.logical_id("provisioning", "AWS::DynamoDB::Table", r"/State/Table/Resource$")
    granted_anywhere: set[str] = set()
    for role, (table_calls, index_calls) in TABLE_CALLS.items():
        on_table: set[str] = set()
        on_index: set[str] = set()
        for statement in role_statements(environment, role):
            dynamodb = {a for a in actions(statement) if a.startswith("dynamodb:")}
            if not dynamodb:
                continue
            for resource in resources(statement):
                if ref(resource) == table:
                    on_table |= dynamodb
                else:
                    assert resource == {
                        "Fn::Join": ["", [{"Fn::GetAtt": [table, "Arn"]}, "/index/by_status"]]
                    }, (role, statement)
                    on_index |= dynamodb
        assert (on_table, on_index) == (table_calls, index_calls), role
        granted_anywhere |= on_table | on_index
    assert granted_anywhere == state_store_calls(), "a grant no adapter call needs, or a call without one"


def test_only_the_callers_of_rotate_secret_may_invoke_the_rotator(environment: Synthesized) -> None:
    rotator = environment.logical_id("provisioning", "AWS::Lambda::Function", r"/Functions/Rotator/Resource$")
    holders = set()
    for policy in environment.resources("provisioning", "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            invoke = {a for a in actions(statement) if a.startswith("lambda:")}
            if invoke:
                assert invoke == {"lambda:InvokeFunction"}
                assert resources(statement) == [{"Fn::GetAtt": [rotator, "Arn"]}]
                holders.add(policy["Metadata"]["aws:cdk:path"].split("/")[-3])
    # AWS requires lambda:InvokeFunction on the rotation function of whoever calls RotateSecret.
    rotate_callers = {
        role for role, calls in KEY_SECRET_CALLS.items() if "secretsmanager:RotateSecret" in calls
    }
    assert holders == rotate_callers == {"WorkerRole"}


def secret_reads(environment: Synthesized, role: str) -> set[str]:
    return {
        ref(resource)
        for statement in role_statements(environment, role)
        if actions(statement) == ["secretsmanager:GetSecretValue"]
        for resource in resources(statement)
    }


def test_worker_reads_only_the_kintone_and_directory_credentials_and_master_key_besides_key_secrets(
    environment: Synthesized,
) -> None:
    reads = secret_reads(environment, "WorkerRole")
    assert {secret_id(environment, "KintoneApiToken"), secret_id(environment, "CybozuUserApi")} <= reads
    assert len(reads) == 3, "kintone API token, cybozu User API credential and LiteLLM master key"


def test_only_the_worker_and_the_reconciler_may_read_the_directory_credential(
    environment: Synthesized,
) -> None:
    directory = secret_id(environment, "CybozuUserApi")
    readers = {role for role in ("WebhookRole", "WorkerRole", "ReconcilerRole", "RotatorRole")
               if directory in secret_reads(environment, role)}  # fmt: skip
    assert readers == {"WorkerRole", "ReconcilerRole"}
    for name in FUNCTIONS:
        variables = function(environment, name)["Properties"]["Environment"]["Variables"]
        assert ref(variables["CYBOZU_USER_API_TOKEN_SECRET_ID"]) == directory
        assert "CYBOZU_USER_API_LOGIN" not in variables


def test_the_directory_may_be_read_with_a_login_and_its_password_instead() -> None:
    environments = copy.deepcopy(cdk_context()["environments"])
    environments["staging"]["kintone"]["user_api_login"] = "llm-directory-reader"
    settings = load_environment_settings(environments, "staging")
    secret = SimpleNamespace(secret_arn="arn:aws:secretsmanager:ap-northeast-1:222222222222:secret:dir")

    assert directory_credential(settings, secret) == {
        "CYBOZU_USER_API_LOGIN": "llm-directory-reader",
        "CYBOZU_USER_API_PASSWORD_SECRET_ID": secret.secret_arn,
    }


def test_webhook_may_only_read_its_token_and_enqueue(environment: Synthesized) -> None:
    statements = role_statements(environment, "WebhookRole")
    secret_statements = [s for s in statements if any(a.startswith("secretsmanager:") for a in actions(s))]
    assert secret_statements == [
        {
            "Action": "secretsmanager:GetSecretValue",
            "Effect": "Allow",
            "Resource": {"Ref": secret_id(environment, "WebhookToken")},
        }
    ]
    services = {action.split(":")[0] for statement in statements for action in actions(statement)}
    assert services == {"logs", "xray", "secretsmanager", "kms", "sqs"}
    assert {a for s in statements for a in actions(s) if a.startswith("sqs:")} == {"sqs:SendMessage"}


def test_reconciler_cannot_touch_key_secrets_or_assume_the_audit_role(environment: Synthesized) -> None:
    statements = role_statements(environment, "ReconcilerRole")
    granted = {action for statement in statements for action in actions(statement)}
    assert not granted & (set(KEY_SECRET_ACTIONS) - {"secretsmanager:GetSecretValue"})
    assert not any(action.startswith("sts:") for action in granted)
    assert "sqs:SendMessage" in granted
    variables = function(environment, "reconciler")["Properties"]["Environment"]["Variables"]
    assert "AUDIT_ROLE_ARN" not in variables


def test_audit_role_trusts_only_the_worker_with_a_source_identity(environment: Synthesized) -> None:
    logical_id = environment.logical_id("provisioning", "AWS::IAM::Role", r"/Functions/AuditRole/Resource$")
    trust = environment.resources("provisioning", "AWS::IAM::Role")[logical_id]["Properties"][
        "AssumeRolePolicyDocument"
    ]
    principals = set()
    for statement in trust["Statement"]:
        assert statement["Condition"] == {"Null": {"sts:SourceIdentity": "false"}}
        assert set(actions(statement)) <= {"sts:AssumeRole", "sts:SetSourceIdentity"}
        aws = statement["Principal"]["AWS"]
        principals |= {ref(principal) for principal in (aws if isinstance(aws, list) else [aws])}
    worker_role = environment.logical_id("provisioning", "AWS::IAM::Role", r"/Functions/WorkerRole/Resource$")
    assert principals == {worker_role}
    variables = function(environment, "worker")["Properties"]["Environment"]["Variables"]
    assert ref(variables["AUDIT_ROLE_ARN"]) == logical_id
    for role in ("RotatorRole", "ReconcilerRole", "WebhookRole"):
        granted = {a for s in role_statements(environment, role) for a in actions(s)}
        assert not any(action.startswith("sts:") for action in granted), role


def test_functions_get_their_environment_settings(environment: Synthesized) -> None:
    settings = environment.settings
    expected = {
        "worker": {"ROTATION_DAYS": settings.key_rotation_days},
        "rotator": {"ROTATION_GRACE_SECONDS": settings.rotation_grace_seconds},
        "reconciler": {
            "RECONCILE_LOOKBACK_SECONDS": settings.reconcile_lookback_seconds,
            "RECONCILE_FULL_SWEEP_SECONDS": settings.reconcile_full_sweep_seconds,
            "MAX_REVOKE_SHARE": settings.max_revoke_share,
            "MASS_REVOKE_FLOOR": settings.mass_revoke_floor,
        },
    }
    every = {variable for values in expected.values() for variable in values}
    for name in FUNCTIONS:
        variables = function(environment, name)["Properties"]["Environment"]["Variables"]
        own = expected.get(name, {})
        assert {variable: variables[variable] for variable in own} == {k: str(v) for k, v in own.items()}
        assert not (every - set(own)) & set(variables), f"{name} gets a setting it does not use"
        # What the function's own settings model makes of them.
        placeholders = {
            key: (value if isinstance(value, str) else f"placeholder-{key.lower()}")
            for key, value in variables.items()
            if key in ENVIRONMENT_VARIABLES
        }
        parsed = settings_from_environment(placeholders)
        for variable, value in own.items():
            assert getattr(parsed, ENVIRONMENT_VARIABLES[variable]) == value


def test_only_secrets_manager_invokes_the_rotator_for_key_secrets(environment: Synthesized) -> None:
    rotator = environment.logical_id("provisioning", "AWS::Lambda::Function", r"/Functions/Rotator/Resource$")
    permissions = [
        permission["Properties"]
        for permission in environment.resources("provisioning", "AWS::Lambda::Permission").values()
        if ref(permission["Properties"]["FunctionName"]) == rotator
    ]
    assert permissions == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Fn::GetAtt": [rotator, "Arn"]},
            "Principal": "secretsmanager.amazonaws.com",
            "SourceAccount": environment.settings.account,
            "SourceArn": key_secrets_arn(environment.settings),
        }
    ]
    variables = function(environment, "worker")["Properties"]["Environment"]["Variables"]
    assert ref(variables["ROTATOR_FUNCTION_ARN"]) == rotator
    assert variables["ROTATION_DAYS"] == str(environment.settings.key_rotation_days)
    for name in ("webhook", "reconciler", "rotator"):
        others = function(environment, name)["Properties"]["Environment"]["Variables"]
        assert "ROTATOR_FUNCTION_ARN" not in others, name


def test_reconciler_runs_on_a_schedule(environment: Synthesized) -> None:
    reconciler = environment.logical_id(
        "provisioning", "AWS::Lambda::Function", r"/Functions/Reconciler/Resource$"
    )
    environment.template("provisioning").has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": rate(environment.settings.reconcile_every_minutes),
            "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [reconciler, "Arn"]}})],
        },
    )


def test_spend_sync_runs_on_a_schedule_and_may_only_read_its_secrets_and_update_states(
    environment: Synthesized,
) -> None:
    spend_sync = environment.logical_id(
        "provisioning", "AWS::Lambda::Function", r"/Functions/SpendSync/Resource$"
    )
    environment.template("provisioning").has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": rate(environment.settings.spend_sync_minutes),
            "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [spend_sync, "Arn"]}})],
        },
    )
    statements = role_statements(environment, "SpendSyncRole")
    granted = {action for statement in statements for action in actions(statement)}
    assert {a for a in granted if a.startswith("secretsmanager:")} == {"secretsmanager:GetSecretValue"}
    reads = [r for s in statements if "secretsmanager:GetSecretValue" in actions(s) for r in resources(s)]
    assert len(reads) == 2, "kintone API token and LiteLLM master key"
    assert not any(action.startswith(("sqs:", "sts:", "lambda:")) for action in granted)


def test_budget_alerts_route_reaches_the_alerts_function_which_reads_its_own_token(
    environment: Synthesized,
) -> None:
    alerts = environment.logical_id("provisioning", "AWS::Lambda::Function", r"/Functions/Alerts/Resource$")
    methods = environment.resources("provisioning", "AWS::ApiGateway::Method")
    routed = [
        method
        for method in methods.values()
        if alerts in json.dumps(method["Properties"].get("Integration", {}).get("Uri", ""))
    ]
    assert len(routed) == 1 and routed[0]["Properties"]["HttpMethod"] == "POST"
    assert routed[0]["Properties"]["RequestParameters"] == {"method.request.path.token": True}
    variables = function(environment, "alerts")["Properties"]["Environment"]["Variables"]
    assert ref(variables["ALERT_TOKEN_SECRET_ID"]) == secret_id(environment, "AlertToken")
    for name in ("webhook", "worker", "reconciler", "rotator", "spend_sync"):
        assert (
            "ALERT_TOKEN_SECRET_ID"
            not in function(environment, name)["Properties"]["Environment"]["Variables"]
        )
    reads = {
        ref(resource)
        for statement in role_statements(environment, "AlertsRole")
        if actions(statement) == ["secretsmanager:GetSecretValue"]
        for resource in resources(statement)
    }
    assert secret_id(environment, "AlertToken") in reads and len(reads) == 3
    assert "AlertUrlWithoutToken" in environment.templates["provisioning"]["Outputs"]


def test_functions_reach_the_created_gateway_over_https(environment: Synthesized) -> None:
    url = f"https://{environment.settings.gateway.domain_name}"
    for name in ("worker", "reconciler", "rotator"):
        variables = function(environment, name)["Properties"]["Environment"]["Variables"]
        assert variables["LITELLM_BASE_URL"] == url


def test_existing_gateway_is_reached_by_url_from_the_existing_vpc(existing_gateway: Synthesized) -> None:
    assert "gateway" not in existing_gateway.templates
    worker = function(existing_gateway, "worker")["Properties"]
    assert (
        worker["Environment"]["Variables"]["LITELLM_BASE_URL"]
        == existing_gateway.settings.gateway.existing_url
    )
    assert worker["VpcConfig"]["SubnetIds"] == list(existing_gateway.settings.network.private_subnet_ids)
    master_key = worker["Environment"]["Variables"]["LITELLM_MASTER_KEY_SECRET_ID"]["Ref"]
    secret = existing_gateway.resources("provisioning", "AWS::SecretsManager::Secret")[master_key]
    assert "existing LiteLLM gateway" in secret["Properties"]["Description"]
