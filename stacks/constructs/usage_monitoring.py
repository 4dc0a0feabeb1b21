"""Operators' view of the gateway: usage per team and model, failures, budgets, database, ALB, Bedrock.

LiteLLM's Prometheus metrics reach CloudWatch through the metrics agent (stacks/constructs/
metrics_agent.py) in the namespace LiteLLM/<env> with dimensions team and requested_model; the
teams and models are the environment's (cdk.json), so every widget and alarm names them exactly.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.alarms import TopicAlarms
from stacks.constructs.gateway import LiteLLMGateway
from stacks.constructs.metrics_agent import (
    FAILED_REQUESTS,
    JOB_LABEL,
    MODEL_LABEL,
    REMAINING_TEAM_BUDGET,
    REQUESTS,
    SCRAPE_JOB,
    SPEND,
    TEAM_LABEL,
    TOKENS,
)

_FIVE_MINUTES = Duration.minutes(5)
_ONE_HOUR = Duration.hours(1)


class UsageMonitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        gateway: LiteLLMGateway,
        dashboard: cloudwatch.Dashboard,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self._namespace = gateway.metrics_agent.namespace
        self._alarms = TopicAlarms(self, resource_prefix=settings.resource_prefix, topic=topic)
        teams = settings.team_catalog.names()
        models = list(settings.gateway.models)

        total = self._litellm(REQUESTS, {JOB_LABEL: SCRAPE_JOB}, "requests")
        failed = self._litellm(FAILED_REQUESTS, {JOB_LABEL: SCRAPE_JOB}, "failed requests")
        error_rate = cloudwatch.MathExpression(
            expression="IF(total > 0, failed / total, 0)",
            using_metrics={"failed": failed, "total": total},
            label="failed share of requests",
            period=_FIVE_MINUTES,
        )
        self._alarms.add(
            "GatewayErrorRate",
            error_rate,
            threshold=settings.gateway_error_rate_alarm,
            evaluation_periods=2,
            description=f"More than {settings.gateway_error_rate_alarm:.0%} of the gateway's requests failed "
            "(LiteLLM's failed-requests counter): check Bedrock access, throttling and the LiteLLM log.",
        )
        for team in teams:
            budget = settings.team_catalog.get(team).max_budget
            if budget is None:
                continue
            floor = budget * settings.team_budget_alarm_share
            self._alarms.add(
                f"TeamBudgetLow-{team}",
                self._litellm(
                    REMAINING_TEAM_BUDGET, {TEAM_LABEL: team}, f"{team} remaining", statistic="Minimum"
                ),
                threshold=floor,
                comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                description=f"Team {team} has less than {floor:g} of its {budget:g} budget left; its keys "
                "stop working"
                " at zero until the budget resets.",
            )

        database = gateway.database.cluster
        load_balancer = gateway.load_balancer
        self._alarms.add(
            "GatewayLoadBalancer5xx",
            load_balancer.metrics.http_code_elb(
                elbv2.HttpCodeElb.ELB_5XX_COUNT, period=_FIVE_MINUTES, statistic="Sum"
            ),
            threshold=5,
            description="The ALB itself answered 5xx (no healthy task, or connections closed by the tasks).",
        )
        dashboard.add_widgets(
            cloudwatch.TextWidget(markdown="## Gateway usage (LiteLLM)", width=24, height=1),
        )
        dashboard.add_widgets(
            *[
                cloudwatch.GraphWidget(
                    title=f"{what} per team",
                    left=[
                        self._litellm(metric, {TEAM_LABEL: team}, team, period=_ONE_HOUR) for team in teams
                    ],
                    width=8,
                )
                for what, metric in (("Requests", REQUESTS), ("Tokens", TOKENS), ("Spend (USD)", SPEND))
            ]
        )
        dashboard.add_widgets(
            *[
                cloudwatch.GraphWidget(
                    title=f"{what} per model",
                    left=[
                        self._litellm(metric, {MODEL_LABEL: model}, model, period=_ONE_HOUR)
                        for model in models
                    ],
                    width=8,
                )
                for what, metric in (("Requests", REQUESTS), ("Tokens", TOKENS), ("Spend (USD)", SPEND))
            ]
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Failed requests",
                left=[failed, *[self._litellm(FAILED_REQUESTS, {TEAM_LABEL: team}, team) for team in teams]],
                right=[error_rate],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Teams' remaining budget (USD)",
                left=[
                    self._litellm(REMAINING_TEAM_BUDGET, {TEAM_LABEL: team}, team, statistic="Minimum")
                    for team in teams
                ],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Aurora capacity (ACU) and connections",
                left=[
                    database.metric(
                        "ServerlessDatabaseCapacity", statistic="Maximum", label="capacity (ACU)"
                    ),
                    database.metric("ACUUtilization", statistic="Maximum", label="ACU utilization %"),
                ],
                right=[database.metric_database_connections(statistic="Maximum", label="connections")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="ALB 5xx (its own) and target 5xx",
                left=[
                    load_balancer.metrics.http_code_elb(
                        elbv2.HttpCodeElb.ELB_5XX_COUNT,
                        label="ALB 5xx",
                    ),
                    load_balancer.metrics.http_code_target(
                        elbv2.HttpCodeTarget.TARGET_5XX_COUNT,
                        label="LiteLLM 5xx",
                    ),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Bedrock invocations and throttles per model",
                left=[
                    self._bedrock("Invocations", model_id, name)
                    for name, model_id in settings.gateway.models.items()
                ],
                right=[
                    self._bedrock("InvocationThrottles", model_id, f"{name} throttled")
                    for name, model_id in settings.gateway.models.items()
                ],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Gateway alarms", alarms=self._alarms.made, width=24)
        )

    def _litellm(
        self,
        name: str,
        dimensions: dict[str, str],
        label: str,
        *,
        statistic: str = "Sum",
        period: Duration = _FIVE_MINUTES,
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=self._namespace,
            metric_name=name,
            dimensions_map=dimensions,
            statistic=statistic,
            period=period,
            label=label,
        )

    @staticmethod
    def _bedrock(name: str, model_id: str, label: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/Bedrock",
            metric_name=name,
            dimensions_map={"ModelId": model_id},
            statistic="Sum",
            period=_FIVE_MINUTES,
            label=label,
        )
