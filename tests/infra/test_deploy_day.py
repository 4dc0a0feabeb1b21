"""A first deploy gives a working, reachable, watchable gateway (issue 10), on each environment's template."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.config import CYBOZU_OUTBOUND_ADDRESSES_PAGE
from stacks.constructs.endpoints import GATEWAY_ENDPOINTS, INTERFACE_ENDPOINTS
from stacks.constructs.metrics_agent import FAILED_REQUESTS, REMAINING_TEAM_BUDGET, REQUESTS, SPEND, TOKENS
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.infra


def containers(environment: Synthesized) -> dict[str, dict[str, Any]]:
    (task,) = environment.resources("gateway", "AWS::ECS::TaskDefinition").values()
    return {container["Name"]: container for container in task["Properties"]["ContainerDefinitions"]}


def plain_environment(container: dict[str, Any]) -> dict[str, Any]:
    return {variable["Name"]: variable["Value"] for variable in container.get("Environment", [])}


def load_balancer_attributes(environment: Synthesized) -> dict[str, str]:
    (load_balancer,) = environment.resources("gateway", "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    return {item["Key"]: item["Value"] for item in load_balancer["Properties"]["LoadBalancerAttributes"]}


def test_models_are_current_inference_profiles_of_the_environment(environment: Synthesized) -> None:
    models = environment.settings.gateway.models
    assert set(models) == {"claude-sonnet", "claude-haiku"}
    for model_id in models.values():
        assert model_id.startswith("jp.anthropic.claude-"), "Japan-only cross-region inference profiles"
        assert "claude-3" not in model_id
    assert environment.settings.gateway.test_model == "claude-haiku"


def test_litellm_keeps_connections_open_longer_than_the_load_balancer(environment: Synthesized) -> None:
    keepalive = int(plain_environment(containers(environment)["LiteLLM"])["KEEPALIVE_TIMEOUT"])
    idle = int(load_balancer_attributes(environment)["idle_timeout.timeout_seconds"])
    assert keepalive > idle >= 60


def test_master_key_is_made_sk_prefixed_by_the_custom_resource_and_never_in_a_template(
    environment: Synthesized,
) -> None:
    (resource,) = environment.resources("gateway", "AWS::CloudFormation::CustomResource").values()
    secret_ref = resource["Properties"]["SecretArn"]["Ref"]
    secret = environment.resources("gateway", "AWS::SecretsManager::Secret")[secret_ref]
    assert "GenerateSecretString" in secret["Properties"] and "SecretString" not in secret["Properties"]
    litellm = containers(environment)["LiteLLM"]
    master = next(item for item in litellm["Secrets"] if item["Name"] == "LITELLM_MASTER_KEY")
    assert master["ValueFrom"] == {"Ref": secret_ref}
    # The service starts only after the key holds its sk- value.
    (service,) = environment.resources("gateway", "AWS::ECS::Service").values()
    custom_resource = next(iter(environment.resources("gateway", "AWS::CloudFormation::CustomResource")))
    assert custom_resource in service["DependsOn"]
    initializer = next(
        logical_id
        for logical_id, function in environment.resources("gateway", "AWS::Lambda::Function").items()
        if function["Properties"]["Handler"] == "lambdas.handlers.master_key.handler"
    )
    assert resource["Properties"]["ServiceToken"] == {"Fn::GetAtt": [initializer, "Arn"]}
    for role in environment.templates:
        assert '"sk-' not in json.dumps(environment.templates[role])


def test_admin_ui_logs_in_with_its_own_generated_credentials(environment: Synthesized) -> None:
    litellm = containers(environment)["LiteLLM"]
    ui = {item["Name"]: item["ValueFrom"] for item in litellm["Secrets"] if item["Name"].startswith("UI_")}
    assert set(ui) == {"UI_USERNAME", "UI_PASSWORD"}
    assert ui["UI_PASSWORD"]["Fn::Join"][1][-1].endswith(":password::")
    secret_id = ui["UI_PASSWORD"]["Fn::Join"][1][0]["Ref"]
    generator = environment.resources("gateway", "AWS::SecretsManager::Secret")[secret_id]["Properties"][
        "GenerateSecretString"
    ]
    assert generator["GenerateStringKey"] == "password" and json.loads(generator["SecretStringTemplate"])


def test_webhook_endpoint_admits_only_the_configured_cybozu_ranges(environment: Synthesized) -> None:
    (api,) = environment.resources("provisioning", "AWS::ApiGateway::RestApi").values()
    statements = api["Properties"]["Policy"]["Statement"]
    deny = next(statement for statement in statements if statement["Effect"] == "Deny")
    assert deny["Condition"] == {
        "NotIpAddress": {"aws:SourceIp": list(environment.settings.api.allowed_source_cidrs)}
    }
    assert deny["Action"] == "execute-api:Invoke"
    web_acls = environment.resources("provisioning", "AWS::WAFv2::WebACL")
    assert bool(web_acls) == environment.settings.api.waf
    assert CYBOZU_OUTBOUND_ADDRESSES_PAGE.startswith("https://jp.cybozu.help/")


def test_production_puts_a_waf_allow_list_and_rate_limit_on_the_stage(production: Synthesized) -> None:
    (web_acl,) = production.resources("provisioning", "AWS::WAFv2::WebACL").values()
    assert web_acl["Properties"]["DefaultAction"] == {"Block": {}}
    rules = {rule["Name"]: rule for rule in web_acl["Properties"]["Rules"]}
    assert set(rules) == {"RateLimit", "AllowCybozu"}
    (ip_set,) = production.resources("provisioning", "AWS::WAFv2::IPSet").values()
    assert ip_set["Properties"]["Addresses"] == list(production.settings.api.allowed_source_cidrs)
    assert production.resources("provisioning", "AWS::WAFv2::WebACLAssociation")


def test_vpc_endpoints_follow_the_environment_switch(environment: Synthesized) -> None:
    endpoints = environment.resources("gateway", "AWS::EC2::VPCEndpoint").values()
    services = sorted(json.dumps(endpoint["Properties"]["ServiceName"]) for endpoint in endpoints)
    if not environment.settings.network.vpc_endpoints:
        assert services == []
        return
    assert len(services) == len(INTERFACE_ENDPOINTS) + len(GATEWAY_ENDPOINTS)
    for name in ("secretsmanager", "sqs", "sts", "logs", "bedrock-runtime", "s3", "dynamodb"):
        assert any(f".{name}" in service for service in services), name


def test_proxy_and_private_ca_reach_the_functions_and_the_task(environment: Synthesized) -> None:
    network = environment.settings.network
    functions = environment.resources("provisioning", "AWS::Lambda::Function").values()
    worker = next(f for f in functions if f["Properties"]["Handler"] == "lambdas.handlers.worker.handler")
    variables = worker["Properties"]["Environment"]["Variables"]
    litellm = plain_environment(containers(environment)["LiteLLM"])
    if network.https_proxy is None:
        assert "HTTPS_PROXY" not in variables and "HTTPS_PROXY" not in litellm
    else:
        for values in (variables, litellm):
            assert values["HTTPS_PROXY"] == network.https_proxy
            bypass = values["NO_PROXY"].split(",")
            assert {"169.254.170.2", "localhost", environment.settings.gateway.domain_name} <= set(bypass)
    if environment.settings.gateway.ca_bundle_file is None:
        assert "SSL_CERT_FILE" not in variables and "Layers" not in worker["Properties"]
    else:
        assert variables["SSL_CERT_FILE"] == "/opt/ca/bundle.pem"
        assert worker["Properties"]["Layers"]


def test_retained_resources_have_no_fixed_names_and_the_grace_covers_a_cold_start(
    environment: Synthesized,
) -> None:
    for _, _, secret in environment.all_resources("AWS::SecretsManager::Secret"):
        assert "Name" not in secret["Properties"]
    for _, _, log in environment.all_resources("AWS::Logs::LogGroup"):
        if "LogGroupName" in log["Properties"]:
            assert log["DeletionPolicy"] == "Delete", "a named log group must not survive to block a retry"
    (service,) = environment.resources("gateway", "AWS::ECS::Service").values()
    # LiteLLM started here in 23-70 s (cold, with its 220 migrations); the grace leaves a margin for
    # the image pull and a cold Aurora on top.
    assert service["Properties"]["HealthCheckGracePeriodSeconds"] >= 240


def test_outputs_name_the_alb_the_webhook_url_without_token_and_the_egress_addresses(
    environment: Synthesized,
) -> None:
    gateway = environment.templates["gateway"]["Outputs"]
    provisioning = environment.templates["provisioning"]["Outputs"]
    assert {"LoadBalancerDnsName", "EgressPublicIps", "AdminUiCredentialsSecretArn"} <= set(gateway)
    assert "WebhookUrlWithoutToken" in provisioning
    egress = json.dumps(gateway["EgressPublicIps"]["Value"])
    if environment.settings.network.uses_existing_vpc:
        assert egress == json.dumps(",".join(environment.settings.network.egress_public_ips))
    else:
        assert "PublicIp" in egress
        assert "NetworkReachability" in gateway


def test_cross_stack_values_are_strong_references(environment: Synthesized) -> None:
    provisioning = json.dumps(environment.templates["provisioning"])
    assert "Fn::ImportValue" in provisioning and "Fn::GetStackOutput" not in provisioning


def test_metrics_agent_scrapes_litellm_inside_the_task_and_the_alb_refuses_metrics(
    environment: Synthesized,
) -> None:
    agent = containers(environment)["MetricsAgent"]
    assert agent["Image"] == environment.settings.gateway.metrics_agent_image
    variables = plain_environment(agent)
    scrape = json.loads(variables["PROMETHEUS_CONFIG_CONTENT"])
    assert scrape["scrape_configs"][0]["static_configs"] == [{"targets": ["localhost:4000"]}]
    emf = json.loads(variables["CW_CONFIG_CONTENT"])["logs"]["metrics_collected"]["prometheus"][
        "emf_processor"
    ]
    assert emf["metric_namespace"] == f"LiteLLM/{environment.settings.name}"
    usage = emf["metric_declaration"][0]
    assert ["team", "requested_model"] in usage["dimensions"]
    assert {f"^{name}$" for name in (REQUESTS, FAILED_REQUESTS, SPEND, TOKENS)} == set(
        usage["metric_selectors"]
    )
    rules = environment.resources("gateway", "AWS::ElasticLoadBalancingV2::ListenerRule").values()
    (refuse,) = [rule for rule in rules if rule["Properties"]["Actions"][0]["Type"] == "fixed-response"]
    assert refuse["Properties"]["Actions"][0]["FixedResponseConfig"]["StatusCode"] == "403"
    assert "/metrics" in json.dumps(refuse["Properties"]["Conditions"])


def test_dashboard_shows_usage_per_team_and_model_and_the_platform_metrics(environment: Synthesized) -> None:
    (dashboard,) = environment.resources("operations", "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for piece in (REQUESTS, TOKENS, SPEND, FAILED_REQUESTS, REMAINING_TEAM_BUDGET):
        assert piece in body, piece
    for team in environment.settings.team_catalog.names():
        assert f'\\"team\\",\\"{team}\\"' in body, team
    for model, model_id in environment.settings.gateway.models.items():
        assert f'\\"requested_model\\",\\"{model}\\"' in body, model
        assert model_id in body
    for piece in ("ServerlessDatabaseCapacity", "DatabaseConnections", "HTTPCode_ELB_5XX_Count",
                  "AWS/Bedrock", "InvocationThrottles", "Invocations"):  # fmt: skip
        assert piece in body, piece


def test_alarms_watch_each_teams_budget_and_the_error_rate(environment: Synthesized) -> None:
    prefix = environment.settings.resource_prefix
    alarms = {
        alarm["Properties"]["AlarmName"].removeprefix(f"{prefix}-"): alarm["Properties"]
        for alarm in environment.resources("operations", "AWS::CloudWatch::Alarm").values()
    }
    for team in environment.settings.team_catalog.names():
        policy = environment.settings.team_catalog.get(team)
        alarm = alarms[f"TeamBudgetLow-{team}"]
        (stat,) = alarm["Metrics"]  # a labelled metric: CloudFormation's Metrics form
        assert stat["MetricStat"]["Metric"]["MetricName"] == REMAINING_TEAM_BUDGET
        assert stat["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "team", "Value": team}]
        assert alarm["Threshold"] == pytest.approx(
            policy.max_budget * environment.settings.team_budget_alarm_share
        )
        assert alarm["ComparisonOperator"] == "LessThanThreshold"
    error_rate = alarms["GatewayErrorRate"]
    assert error_rate["Threshold"] == environment.settings.gateway_error_rate_alarm
    assert {metric.get("Expression") for metric in error_rate["Metrics"]} >= {
        "IF(total > 0, failed / total, 0)"
    }
    assert alarms["GatewayLoadBalancer5xx"]["MetricName"] == "HTTPCode_ELB_5XX_Count"
