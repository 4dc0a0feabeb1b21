"""Who may call the webhook endpoint: cybozu.com's outbound addresses only (api.allowed_source_cidrs).

An API Gateway resource policy denies every caller outside the ranges (aws:SourceIp), before the
request reaches the function; optionally (api.waf) a WAF web ACL on the stage does the same with an
IP set and adds a rate limit and WAF's own metrics. The ranges change now and then: the runbook says
where cybozu.com publishes them (stacks.config.CYBOZU_OUTBOUND_ADDRESSES_PAGE) and how to refresh them.
"""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_iam as iam
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stacks.config import EnvironmentSettings

# Requests per 5 minutes per address: kintone sends at most 60 webhooks a minute per domain.
WAF_RATE_LIMIT = 600


def source_ip_policy(cidrs: tuple[str, ...]) -> iam.PolicyDocument:
    """Allow invoking the API, then deny it to every address outside `cidrs`."""
    return iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                effect=iam.Effect.ALLOW,
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=["execute-api:/*"],
            ),
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=["execute-api:/*"],
                conditions={"NotIpAddress": {"aws:SourceIp": list(cidrs)}},
            ),
        ]
    )


class WebhookFirewall(Construct):
    """A regional WAF web ACL on the stage: the allow-list as an IP set, everything else blocked."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, stage: apigateway.Stage
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = settings.resource_prefix
        addresses = wafv2.CfnIPSet(
            self,
            "CybozuAddresses",
            scope="REGIONAL",
            ip_address_version="IPV4",
            addresses=list(settings.api.allowed_source_cidrs),
            description="cybozu.com outbound ranges - webhooks",
        )

        def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True,
                metric_name=f"{prefix}-{name}",
                sampled_requests_enabled=False,
            )

        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(block={}),
            visibility_config=visibility("webhook"),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="RateLimit",
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            limit=WAF_RATE_LIMIT, aggregate_key_type="IP"
                        )
                    ),
                    visibility_config=visibility("webhook-rate"),
                ),
                wafv2.CfnWebACL.RuleProperty(
                    name="AllowCybozu",
                    priority=1,
                    action=wafv2.CfnWebACL.RuleActionProperty(allow={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        ip_set_reference_statement=wafv2.CfnWebACL.IPSetReferenceStatementProperty(
                            arn=addresses.attr_arn
                        )
                    ),
                    visibility_config=visibility("webhook-allowed"),
                ),
            ],
        )
        wafv2.CfnWebACLAssociation(
            self, "Association", resource_arn=stage.stage_arn, web_acl_arn=self.web_acl.attr_arn
        )
