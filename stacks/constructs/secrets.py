"""The provisioning pipeline's secrets and the KMS key that encrypts them and every issued key's secret."""

from __future__ import annotations

from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.common import acknowledge, data_removal_policy, rotating_key


class ProvisioningSecrets(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        gateway_master_key: secretsmanager.ISecret | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._removal_policy = data_removal_policy(settings)
        self.key = rotating_key(
            self,
            "Key",
            f"{settings.resource_prefix}: webhook token, kintone API token and issued keys' secrets",
        )
        self.webhook_token = self._generated(
            "WebhookToken",
            "Token in the kintone webhook URL (https://.../webhook/<token>): kintone cannot sign webhooks",
        )
        acknowledge(
            self.webhook_token,
            "AwsSolutions-SMG4",
            "The token is part of the webhook URL stored in kintone's app settings, which kintone offers no "
            "API to update; rotating it is a manual change (new token, new URL pasted into kintone).",
        )
        self.alert_token = self._generated(
            "AlertToken",
            "Token in LiteLLM's budget alert URL (https://.../alert/<token>): LiteLLM cannot sign alerts",
        )
        acknowledge(
            self.alert_token,
            "AwsSolutions-SMG4",
            "The token is part of LiteLLM's WEBHOOK_URL, set in the gateway's alert URL secret; rotating "
            "it is a manual change of both (new token, new URL, gateway tasks restarted).",
        )
        # Created with a random placeholder: the real token is issued in kintone's app settings and
        # put here by the operator (see docs/deployment.md).
        self.kintone_api_token = self._generated(
            "KintoneApiToken",
            "kintone API token of the app (record read and write); set by the operator",
        )
        acknowledge(
            self.kintone_api_token,
            "AwsSolutions-SMG4",
            "kintone API tokens are issued and regenerated only in kintone's app settings; Secrets Manager "
            "cannot mint one, so the operator replaces the value when kintone's token changes.",
        )
        # Like the kintone token, issued elsewhere (cybozu.com common administration) and put here.
        self.cybozu_user_api = self._generated(
            "CybozuUserApi",
            "cybozu.com User API credential: a common-administration API token with the Read scope, or "
            "the password of kintone.user_api_login; set by the operator",
        )
        acknowledge(
            self.cybozu_user_api,
            "AwsSolutions-SMG4",
            "cybozu.com API tokens are issued and regenerated only in cybozu.com common administration "
            "(and passwords changed there); Secrets Manager cannot mint one, so the operator replaces it.",
        )
        if gateway_master_key is not None:
            self.litellm_master_key = gateway_master_key
        else:
            self.litellm_master_key = self._generated(
                "LiteLLMMasterKey",
                "Master key of the existing LiteLLM gateway; set by the operator",
            )
            acknowledge(
                self.litellm_master_key,
                "AwsSolutions-SMG4",
                "This is the master key of a LiteLLM gateway deployed elsewhere; it is rotated there and "
                "copied here by its operators.",
            )

    def _generated(self, construct_id: str, description: str) -> secretsmanager.Secret:
        # No fixed name: a secret retained by a failed first deploy must not collide with the retry's.
        return secretsmanager.Secret(
            self,
            construct_id,
            description=description,
            encryption_key=self.key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
            removal_policy=self._removal_policy,
        )
