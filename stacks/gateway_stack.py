"""GatewayStack: the LiteLLM gateway (VPC when new, internal ALB, ECS Fargate, Aurora, secrets)."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.gateway import LiteLLMGateway
from stacks.constructs.network import existing_vpc, new_vpc
from stacks.litellm_config import LiteLLMConfig


class GatewayStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        litellm_config: LiteLLMConfig,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.vpc: ec2.IVpc = (
            existing_vpc(self, "Vpc", settings.network)
            if settings.network.uses_existing_vpc
            else new_vpc(self, "Vpc", settings)
        )
        self.gateway = LiteLLMGateway(
            self, "Gateway", settings=settings, vpc=self.vpc, litellm_config=litellm_config
        )
        CfnOutput(self, "GatewayUrl", value=self.gateway.url, description="LiteLLM API on the internal ALB")
        CfnOutput(
            self,
            "GatewayAdminUiUrl",
            value=f"{self.gateway.url}/ui",
            description="LiteLLM admin UI: spend per key, team and model (log in with the master key)",
        )
        CfnOutput(
            self,
            "GatewayMasterKeySecretArn",
            value=self.gateway.master_key_secret.secret_arn,
            description="Secret holding the LiteLLM master key (admin UI login)",
        )
