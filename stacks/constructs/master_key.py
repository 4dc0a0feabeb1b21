"""LiteLLM's master key: a secret whose value a custom resource makes `sk-` + 64 random characters.

LiteLLM documents the `sk-` prefix as required, and Secrets Manager's generator cannot add one, so
the secret is created with a generated value and the custom resource (lambdas/handlers/master_key.py)
replaces it with an `sk-` key drawn from Secrets Manager's GetRandomPassword. The value is never in
the template, the custom resource's response or a log line.
"""

from __future__ import annotations

from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.common import acknowledge, log_group


class MasterKeySecret(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        key: kms.IKey,
        code: lambda_.Code,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        # No fixed name: a retained secret of a failed first deploy must not block the retry.
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            description="LiteLLM master key (sk-...): admin API of the provisioning functions",
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
            removal_policy=removal_policy,
        )
        acknowledge(
            self.secret,
            "AwsSolutions-SMG4",
            "LiteLLM reads its master key only at task start, and the provisioning functions use it; "
            "rotating it needs a coordinated ECS redeployment, done by the runbook, not on a schedule.",
        )
        role = iam.Role(
            self,
            "InitializerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{settings.resource_prefix}: puts an sk- value into the LiteLLM master key secret",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
                resources=[self.secret.secret_arn],
            )
        )
        role.add_to_policy(iam.PolicyStatement(actions=["secretsmanager:GetRandomPassword"], resources=["*"]))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": f"secretsmanager.{Stack.of(self).region}.amazonaws.com"
                    }
                },
            )
        )
        logs = log_group(self, "InitializerLogs", settings)
        logs.grant_write(role)
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "secretsmanager:GetRandomPassword acts on no resource, so IAM accepts only '*' for it; the "
            "role may read and write the master key secret alone.",
        )
        initializer = lambda_.Function(
            self,
            "Initializer",
            description="Custom resource: stores an sk- LiteLLM master key in its secret",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=(
                lambda_.Architecture.ARM_64
                if settings.lambda_architecture == "arm64"
                else lambda_.Architecture.X86_64
            ),
            handler="lambdas.handlers.master_key.handler",
            code=code,
            role=role,
            log_group=logs,
            memory_size=256,
            timeout=Duration.seconds(30),
            environment={"POWERTOOLS_SERVICE_NAME": "kintone-llm-keys", "LOG_LEVEL": "INFO"},
        )
        acknowledge(
            initializer,
            "AwsSolutions-L1",
            "The bundle's wheels are built for CPython 3.12 (stacks/bundling.py) and the code is tested on "
            "it; moving to a newer runtime is a deliberate change of both together.",
        )
        self.value = CustomResource(
            self,
            "Value",
            service_token=initializer.function_arn,
            properties={"SecretArn": self.secret.secret_arn},
        )
