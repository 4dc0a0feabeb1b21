"""The webhook endpoint kintone calls: an API Gateway REST API, POST /webhook/{token} -> webhook function,
and POST /alert/{token} -> alerts function for LiteLLM's budget alerts.

The token in the path is the credential (kintone webhooks carry no signature or custom header), so
nothing that logs or traces request paths may see it: access logs record the route template
(`$context.resourcePath`), never the path; execution logging is off (even at ERROR it can log the
request path and its parameters), and neither data tracing nor X-Ray is on for the stage.
"""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.common import acknowledge, log_group
from stacks.constructs.webhook_guard import WebhookFirewall, source_ip_policy

STAGE_NAME = "v1"
WEBHOOK_RESOURCE = "webhook"
ALERT_RESOURCE = "alert"
TOKEN_PATH_PARAMETER = "token"  # noqa: S105 - the name of a path parameter, not a credential

# Fields of each access log line. Deliberately absent: $context.path and the request URL.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "sourceIp": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "errorMessage": "$context.error.message",
}


class WebhookApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        handler: lambda_.IFunction,
        alert_handler: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        access_logs = log_group(self, "AccessLogs", settings)
        self.api = apigateway.RestApi(
            self,
            "Api",
            rest_api_name=f"{settings.resource_prefix}-webhook",
            description="kintone webhooks for self-service LiteLLM keys",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # Only cybozu.com's outbound addresses may call it, where the environment lists them.
            policy=source_ip_policy(settings.api.allowed_source_cidrs)
            if settings.api.allowed_source_cidrs
            else None,
            # Access logging to CloudWatch needs the account-level CloudWatch role; kept when the stack
            # goes, because other APIs of the account may rely on it.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigateway.StageOptions(
                stage_name=STAGE_NAME,
                throttling_rate_limit=settings.api.throttle_rate_per_second,
                throttling_burst_limit=settings.api.throttle_burst,
                access_log_destination=apigateway.LogGroupLogDestination(access_logs),
                access_log_format=apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
                # No execution logs at all: they can carry the path and its parameters, i.e. the token.
                # The access log above is the record of every request.
                logging_level=apigateway.MethodLoggingLevel.OFF,
                data_trace_enabled=False,
                tracing_enabled=False,
                metrics_enabled=True,
            ),
        )
        # Rejects what cannot be a kintone webhook before it costs an invocation. Deliberately loose:
        # kintone does not retry, so a schema stricter than kintone's own payloads would lose events.
        webhook_model = self.api.add_model(
            "WebhookBody",
            content_type="application/json",
            schema=apigateway.JsonSchema(
                schema=apigateway.JsonSchemaVersion.DRAFT4,
                type=apigateway.JsonSchemaType.OBJECT,
                required=["type", "app"],
                properties={
                    "type": apigateway.JsonSchema(type=apigateway.JsonSchemaType.STRING),
                    "app": apigateway.JsonSchema(type=apigateway.JsonSchemaType.OBJECT, required=["id"]),
                },
            ),
        )
        token = self.api.root.add_resource(WEBHOOK_RESOURCE).add_resource(f"{{{TOKEN_PATH_PARAMETER}}}")
        self.method = token.add_method(
            "POST",
            # No test-invoke permission: the console test path is not needed in any environment.
            apigateway.LambdaIntegration(handler, allow_test_invoke=False),
            request_parameters={f"method.request.path.{TOKEN_PATH_PARAMETER}": True},
            request_models={"application/json": webhook_model},
            request_validator_options=apigateway.RequestValidatorOptions(
                request_validator_name="kintone-webhook",
                validate_request_parameters=True,
                validate_request_body=True,
            ),
        )
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            acknowledge(
                self.method,
                rule,
                "kintone webhooks cannot send credentials in headers and are not signed; the caller is "
                "authenticated by the long random token in the path, compared in constant time by the "
                "webhook function, which also checks the app id and re-reads the record from kintone.",
            )
        acknowledge(
            self.api.deployment_stage,
            "AwsSolutions-APIG6",
            "Execution logs can record the request path and path parameters, and the path holds the "
            "webhook token; the stage keeps JSON access logs of every request with the route template "
            "($context.resourcePath) instead of the path.",
        )
        if settings.api.waf:
            self.firewall: WebhookFirewall | None = WebhookFirewall(
                self, "Firewall", settings=settings, stage=self.api.deployment_stage
            )
        else:
            self.firewall = None
            acknowledge(
                self.api.deployment_stage,
                "AwsSolutions-APIG3",
                "This environment sets api.waf to false: its resource policy limits callers to cybozu.com's "
                "addresses where listed, the stage is throttled and every request needs the path token.",
            )
        acknowledge(
            self.api,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level logging role; the AWS managed policy is the documented one.",
        )
        self.webhook_url_without_token = f"{self.api.url}{WEBHOOK_RESOURCE}/"

        # LiteLLM's budget alerts (webhook alerting): unsigned JSON, so the path token again.
        alert_token = self.api.root.add_resource(ALERT_RESOURCE).add_resource(f"{{{TOKEN_PATH_PARAMETER}}}")
        self.alert_method = alert_token.add_method(
            "POST",
            apigateway.LambdaIntegration(alert_handler, allow_test_invoke=False),
            request_parameters={f"method.request.path.{TOKEN_PATH_PARAMETER}": True},
            request_validator_options=apigateway.RequestValidatorOptions(
                request_validator_name="litellm-alert", validate_request_parameters=True
            ),
        )
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            acknowledge(
                self.alert_method,
                rule,
                "LiteLLM's webhook alerting sends only a Content-Type header and no signature; the caller "
                "is authenticated by the long random token in the path, compared in constant time by the "
                "alerts function, which resolves the key from its own state before it comments.",
            )
        self.alert_url_without_token = f"{self.api.url}{ALERT_RESOURCE}/"
