"""GatewayStack: the LiteLLM gateway (VPC when new, internal ALB, ECS Fargate, Aurora, secrets)."""

from __future__ import annotations

from aws_cdk import CfnOutput, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.endpoints import VpcEndpoints
from stacks.constructs.gateway import LiteLLMGateway
from stacks.constructs.network import existing_vpc, new_vpc
from stacks.litellm_config import LiteLLMConfig

NEW_VPC_REACHABILITY = (
    "The new VPC has no route from the office: its internal ALB is reachable only through what the "
    "platform team adds (VPN, Transit Gateway, Direct Connect or peering). Set network.vpc_id to "
    "import the office-connected VPC instead."
)


class GatewayStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        litellm_config: LiteLLMConfig,
        code: lambda_.Code,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        network = settings.network
        self.vpc: ec2.IVpc = (
            existing_vpc(self, "Vpc", network)
            if network.uses_existing_vpc
            else new_vpc(self, "Vpc", settings)
        )
        if network.vpc_endpoints:
            VpcEndpoints(self, "Endpoints", vpc=self.vpc)
        self.gateway = LiteLLMGateway(
            self, "Gateway", settings=settings, vpc=self.vpc, litellm_config=litellm_config, code=code
        )
        CfnOutput(self, "GatewayUrl", value=self.gateway.url, description="LiteLLM API on the internal ALB")
        CfnOutput(
            self,
            "LoadBalancerDnsName",
            value=self.gateway.load_balancer.load_balancer_dns_name,
            description="Point the office DNS name of the gateway (GatewayUrl) at this internal ALB",
        )
        CfnOutput(
            self,
            "GatewayAdminUiUrl",
            value=f"{self.gateway.url}/ui",
            description="LiteLLM admin UI: spend per key, team, model (login: AdminUiCredentialsSecretArn)",
        )
        CfnOutput(
            self,
            "AlertUrlSecretArn",
            value=self.gateway.alert_url_secret.secret_arn,
            description="LiteLLM's WEBHOOK_URL for budget alerts: the AlertUrlWithoutToken output + token",
        )
        CfnOutput(
            self,
            "AdminUiCredentialsSecretArn",
            value=self.gateway.ui_credentials_secret.secret_arn,
            description="Secret holding the admin UI's username and password",
        )
        CfnOutput(
            self,
            "GatewayMasterKeySecretArn",
            value=self.gateway.master_key_secret.secret_arn,
            description="Secret holding the LiteLLM master key (admin API; the provisioning functions)",
        )
        CfnOutput(self, "GatewayMetricsNamespace", value=self.gateway.metrics_agent.namespace)
        nat_addresses = self._nat_addresses(settings)
        CfnOutput(
            self,
            "EgressPublicIps",
            value=nat_addresses,
            description="Addresses the functions reach kintone from: allow them in cybozu.com's IP limits",
        )
        if not network.uses_existing_vpc:
            CfnOutput(self, "NetworkReachability", value=NEW_VPC_REACHABILITY)

    def _nat_addresses(self, settings: EnvironmentSettings) -> str:
        if settings.network.uses_existing_vpc:
            return ",".join(settings.network.egress_public_ips) or "not configured: network.egress_public_ips"
        # A new VPC: its NAT gateways' elastic IPs.
        addresses = [
            subnet.node.find_child("EIP").attr_public_ip
            for subnet in self.vpc.public_subnets
            if subnet.node.try_find_child("EIP") is not None
        ]
        return Fn.join(",", addresses)
