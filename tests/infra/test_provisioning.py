"""ProvisioningStack: webhook API, functions, FIFO queue and DLQ, state, secrets, least-privilege IAM."""

from __future__ import annotations

import ast
import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from lambdas.domain.settings import ENVIRONMENT_VARIABLES, Settings, settings_from_environment
from stacks.constructs.functions import KEY_SECRET_ACTIONS
from tests.infra.conftest import REPO_ROOT, Synthesized, key_secrets_arn

pytestmark = pytest.mark.infra

FUNCTIONS = ("webhook", "worker", "reconciler", "rotator")
POWERTOOLS_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"}


def function(synthesized: Synthesized, name: str) -> dict[str, Any]:
    logical_id = synthesized.logical_id(
        "provisioning", "AWS::Lambda::Function", rf"/Functions/{name.title()}/Resource$"
    )
    return synthesized.resources("provisioning", "AWS::Lambda::Function")[logical_id]


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


def worker_max_receive_count() -> int:
    """The worker's own copy of the DLQ threshold (read from its source: importing it needs AWS settings)."""
    tree = ast.parse((REPO_ROOT / "lambdas" / "handlers" / "worker.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [target.id for target in node.targets] == ["MAX_RECEIVE_COUNT"]:
            return ast.literal_eval(node.value)
    raise AssertionError("lambdas/handlers/worker.py defines no MAX_RECEIVE_COUNT")


def secret_id(synthesized: Synthesized, name: str) -> str:
    return synthesized.logical_id(
        "provisioning", "AWS::SecretsManager::Secret", rf"/Secrets/{name}/Resource$"
    )


def test_webhook_api_is_throttled_logged_and_keeps_the_token_out_of_logs(environment: Synthesized) -> None:
    api = environment.settings.api
    (stage,) = environment.resources("provisioning", "AWS::ApiGateway::Stage").values()
    properties = stage["Properties"]
    (settings,) = properties["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == api.throttle_rate_per_second
    assert settings["ThrottlingBurstLimit"] == api.throttle_burst
    assert settings["DataTraceEnabled"] is False
    assert settings["LoggingLevel"] == "ERROR"
    assert properties["TracingEnabled"] is False
    access_log = properties["AccessLogSetting"]
    assert access_log["DestinationArn"]
    log_format = json.loads(access_log["Format"])
    assert log_format["resourcePath"] == "$context.resourcePath"
    assert "$context.path" not in access_log["Format"], "the path holds the webhook token"


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
    assert set(variables) <= set(ENVIRONMENT_VARIABLES) | POWERTOOLS_VARIABLES, (
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
    for name in ("worker", "reconciler", "rotator"):
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


def test_queue_is_encrypted_fifo_with_a_fifo_dead_letter_queue(environment: Synthesized) -> None:
    queues = environment.resources("provisioning", "AWS::SQS::Queue")
    main = next(queue for queue in queues.values() if "RedrivePolicy" in queue["Properties"])
    dead_letters = ref(main["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
    for queue in queues.values():
        assert queue["Properties"]["FifoQueue"] is True
        assert queue["Properties"]["ContentBasedDeduplication"] is False
        assert ref(queue["Properties"]["KmsMasterKeyId"])
    assert main["Properties"]["RedrivePolicy"]["maxReceiveCount"] == worker_max_receive_count()
    assert dead_letters in queues
    worker_timeout = function(environment, "worker")["Properties"]["Timeout"]
    assert main["Properties"]["VisibilityTimeout"] >= 6 * worker_timeout
    for policy in environment.resources("provisioning", "AWS::SQS::QueuePolicy").values():
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_state_table_has_pitr_encryption_ttl_and_the_status_index(environment: Synthesized) -> None:
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


def test_key_secret_permissions_stop_at_the_key_prefix(environment: Synthesized) -> None:
    expected = key_secrets_arn(environment.settings)
    for role in ("WorkerRole", "RotatorRole", "AuditRole"):
        statements = role_statements(environment, role)
        writes = [
            s
            for s in statements
            if set(actions(s)) & (set(KEY_SECRET_ACTIONS) - {"secretsmanager:GetSecretValue"})
        ]
        assert writes, role
        for statement in writes:
            assert resources(statement) == [expected], (role, statement)
            assert set(actions(statement)) == set(KEY_SECRET_ACTIONS)


def test_worker_reads_only_the_kintone_token_and_master_key_besides_key_secrets(
    environment: Synthesized,
) -> None:
    reads = [
        resource
        for statement in role_statements(environment, "WorkerRole")
        if actions(statement) == ["secretsmanager:GetSecretValue"]
        for resource in resources(statement)
    ]
    assert secret_id(environment, "KintoneApiToken") in {ref(resource) for resource in reads}
    assert len(reads) == 2, "kintone API token and LiteLLM master key"


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


def test_audit_role_trusts_only_worker_and_rotator_with_a_source_identity(environment: Synthesized) -> None:
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
    roles = {
        environment.logical_id("provisioning", "AWS::IAM::Role", rf"/Functions/{name}Role/Resource$")
        for name in ("Worker", "Rotator")
    }
    assert principals == roles
    for name in ("worker", "rotator"):
        variables = function(environment, name)["Properties"]["Environment"]["Variables"]
        assert ref(variables["AUDIT_ROLE_ARN"]) == logical_id


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


def test_reconciler_runs_on_a_schedule(environment: Synthesized) -> None:
    reconciler = environment.logical_id(
        "provisioning", "AWS::Lambda::Function", r"/Functions/Reconciler/Resource$"
    )
    environment.template("provisioning").has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": f"rate({environment.settings.reconcile_every_minutes} minutes)",
            "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [reconciler, "Arn"]}})],
        },
    )


def test_existing_gateway_is_reached_by_url_from_the_existing_vpc(existing_gateway: Synthesized) -> None:
    assert "gateway" not in existing_gateway.templates
    worker = function(existing_gateway, "worker")["Properties"]
    assert (
        worker["Environment"]["Variables"]["LITELLM_BASE_URL"]
        == existing_gateway.settings.gateway.existing_url
    )
    assert worker["VpcConfig"]["SubnetIds"] == list(existing_gateway.settings.network.private_subnet_ids)
    names = {
        s["Properties"]["Name"]
        for s in existing_gateway.resources("provisioning", "AWS::SecretsManager::Secret").values()
    }
    assert f"kintone-llm/{existing_gateway.settings.name}/litellm-master-key" in names
