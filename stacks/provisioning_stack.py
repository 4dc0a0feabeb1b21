"""ProvisioningStack: webhook API, queue, state table, secrets and the provisioning functions."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.common import rotating_key
from stacks.constructs.functions import WORKER_TIMEOUT, GatewayAccess, ProvisioningFunctions
from stacks.constructs.gateway import LiteLLMGateway
from stacks.constructs.network import existing_vpc
from stacks.constructs.provisioning_api import WebhookApi
from stacks.constructs.queue import ProvisioningQueue
from stacks.constructs.secrets import ProvisioningSecrets
from stacks.constructs.state import StateTable


class ProvisioningStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        code: lambda_.Code,
        gateway: LiteLLMGateway | None,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        gateway_access = (
            GatewayAccess(base_url=gateway.url, vpc=gateway.vpc, security_group=gateway.client_security_group)
            if gateway
            else self._existing_gateway_access(settings)
        )
        data_key = rotating_key(
            self, "DataKey", f"{settings.resource_prefix}: provisioning queue and state table"
        )
        self.secrets = ProvisioningSecrets(
            self,
            "Secrets",
            settings=settings,
            gateway_master_key=gateway.master_key_secret if gateway else None,
        )
        self.queue = ProvisioningQueue(self, "Queue", worker_timeout=WORKER_TIMEOUT, encryption_key=data_key)
        self.state = StateTable(self, "State", settings=settings, encryption_key=data_key)
        self.functions = ProvisioningFunctions(
            self,
            "Functions",
            settings=settings,
            code=code,
            gateway=gateway_access,
            secrets=self.secrets,
            queue=self.queue,
            state=self.state,
            data_key=data_key,
        )
        self.api = WebhookApi(
            self,
            "WebhookApi",
            settings=settings,
            handler=self.functions.webhook,
            alert_handler=self.functions.alerts,
        )

        CfnOutput(
            self,
            "WebhookUrlWithoutToken",
            value=self.api.webhook_url_without_token,
            description="Append the token from the webhook token secret and paste the URL into kintone",
        )
        CfnOutput(
            self,
            "WebhookTokenSecretArn",
            value=self.secrets.webhook_token.secret_arn,
            description="Secret holding the token of the webhook URL",
        )
        CfnOutput(
            self,
            "AlertUrlWithoutToken",
            value=self.api.alert_url_without_token,
            description="Append the alert token secret's value: LiteLLM's WEBHOOK_URL for budget alerts",
        )
        CfnOutput(
            self,
            "AlertTokenSecretArn",
            value=self.secrets.alert_token.secret_arn,
            description="Secret holding the token of the budget alert URL",
        )
        CfnOutput(
            self,
            "KintoneApiTokenSecretArn",
            value=self.secrets.kintone_api_token.secret_arn,
            description="Put the kintone app's API token here (record view and edit)",
        )
        CfnOutput(
            self,
            "CybozuUserApiSecretArn",
            value=self.secrets.cybozu_user_api.secret_arn,
            description="Put a cybozu.com common-administration API token (Read scope) here",
        )
        # What `make smoke ENV=...` needs besides the secrets: the app it saves its test record in.
        CfnOutput(self, "KintoneBaseUrl", value=f"https://{settings.kintone.domain}")
        CfnOutput(self, "KintoneAppId", value=str(settings.kintone.app_id))
        CfnOutput(self, "StateTableName", value=self.state.table.table_name)
        CfnOutput(self, "DeadLetterQueueUrl", value=self.queue.dead_letter_queue.queue_url)

    def _existing_gateway_access(self, settings: EnvironmentSettings) -> GatewayAccess:
        """An existing LiteLLM: reached through the configured VPC if there is one, else directly."""
        base_url = (settings.gateway.existing_url or "").rstrip("/")
        if not settings.network.uses_existing_vpc:
            return GatewayAccess(base_url=base_url, vpc=None, security_group=None)
        vpc = existing_vpc(self, "Vpc", settings.network)
        security_group = ec2.SecurityGroup(
            self,
            "GatewayClientSecurityGroup",
            vpc=vpc,
            description="Provisioning functions: LiteLLM, kintone and AWS APIs out",
            allow_all_outbound=True,
        )
        CfnOutput(
            self,
            "GatewayClientSecurityGroupId",
            value=security_group.security_group_id,
            description="Allow this security group in the existing LiteLLM load balancer's security group",
        )
        return GatewayAccess(base_url=base_url, vpc=vpc, security_group=security_group)
