"""Composes the platform's stacks for one environment; used by app.py and by the infrastructure tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import App, Environment, Tags, Validations
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks

from stacks.config import ConfigError, EnvironmentSettings
from stacks.gateway_stack import GatewayStack
from stacks.litellm_config import LiteLLMConfig, render_litellm_config
from stacks.operations_stack import OperationsStack
from stacks.provisioning_stack import ProvisioningStack


@dataclass(frozen=True)
class Platform:
    gateway: GatewayStack | None
    provisioning: ProvisioningStack
    operations: OperationsStack


def build_platform(app: App, settings: EnvironmentSettings, lambda_asset: Path) -> Platform:
    environment = Environment(account=settings.account, region=settings.region)
    prefix = settings.resource_prefix
    gateway_stack = None
    if settings.gateway.create:
        litellm_config = render_litellm_config(settings)
        _check_team_models(settings, litellm_config)
        gateway_stack = GatewayStack(
            app,
            f"{prefix}-gateway",
            settings=settings,
            litellm_config=litellm_config,
            # One Code per stack: an asset belongs to the stack it is first bound in.
            code=lambda_.Code.from_asset(str(lambda_asset)),
            env=environment,
            description=f"LiteLLM gateway ({settings.name}): internal ALB, ECS Fargate, Aurora Serverless v2",
        )
    gateway = gateway_stack.gateway if gateway_stack else None
    provisioning = ProvisioningStack(
        app,
        f"{prefix}-provisioning",
        settings=settings,
        code=lambda_.Code.from_asset(str(lambda_asset)),
        gateway=gateway,
        env=environment,
        description=f"Self-service LiteLLM keys from kintone ({settings.name}): webhook, queue, functions",
    )
    operations = OperationsStack(
        app,
        f"{prefix}-operations",
        settings=settings,
        provisioning=provisioning,
        gateway=gateway,
        env=environment,
        description=f"Audit trail, alarms and dashboard of kintone LLM keys ({settings.name})",
    )
    # Cross-stack values are strong references (cdk.json: @aws-cdk/core:defaultCrossStackReferences
    # = strong, checked by tests/infra): a gateway output the other stacks use (master key secret,
    # client security group, ALB names) cannot change under them unnoticed; CloudFormation refuses the
    # change while they import it, instead of a consumer keeping a stale value until its next deploy.
    Tags.of(app).add("project", "kintone-llm-keys")
    Tags.of(app).add("environment", settings.name)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return Platform(gateway=gateway_stack, provisioning=provisioning, operations=operations)


def _check_team_models(settings: EnvironmentSettings, litellm_config: LiteLLMConfig) -> None:
    """Every model a team may use must be served by the gateway this environment creates."""
    served = set(litellm_config.model_names)
    for team in settings.team_catalog.names():
        unknown = sorted(set(settings.team_catalog.get(team).models) - served)
        if unknown:
            raise ConfigError(
                f"environment '{settings.name}': setting 'team_catalog.{team}.models' names "
                f"{', '.join(unknown)}, which {litellm_config.path.name} does not serve "
                f"(it serves {', '.join(sorted(served))})"
            )
