"""LiteLLM's Prometheus metrics to CloudWatch: the CloudWatch agent as a sidecar in each gateway task.

The agent scrapes LiteLLM's /metrics on localhost inside the task (the ALB refuses /metrics, so
nothing outside the task reads it) and writes the series it is told to keep as CloudWatch embedded
metric format to a log group; CloudWatch turns them into metrics in the namespace LiteLLM/<env>,
with dimensions team, requested_model (the model name keys use) and both. A sidecar beats a
separate collector service: it needs no service discovery, no open port and no extra task; it
beats ADOT here only in needing no collector pipeline of our own (the agent's Prometheus receiver
and EMF exporter are configured in two documents below).
"""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.common import log_group

SCRAPE_JOB = "litellm"
SCRAPE_INTERVAL = "60s"
# LiteLLM's counters (exported with the _total suffix) and the team budget gauges that operators watch.
REQUESTS = "litellm_proxy_total_requests_metric_total"
FAILED_REQUESTS = "litellm_proxy_failed_requests_metric_total"
SPEND = "litellm_spend_metric_total"
TOKENS = "litellm_total_tokens_metric_total"
REMAINING_TEAM_BUDGET = "litellm_remaining_team_budget_metric"
TEAM_MAX_BUDGET = "litellm_team_max_budget_metric"
USAGE_METRICS = (REQUESTS, FAILED_REQUESTS, SPEND, TOKENS)
BUDGET_METRICS = (REMAINING_TEAM_BUDGET, TEAM_MAX_BUDGET)
# LiteLLM's label names (1.108.7: litellm/types/integrations/prometheus.py).
TEAM_LABEL = "team"
MODEL_LABEL = "requested_model"
JOB_LABEL = "job"


def metrics_namespace(settings: EnvironmentSettings) -> str:
    return f"LiteLLM/{settings.name}"


def prometheus_config(litellm_port: int) -> str:
    return json.dumps(
        {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": "10s"},
            "scrape_configs": [
                {
                    "job_name": SCRAPE_JOB,
                    # LiteLLM mounts the exposition at /metrics/ (/metrics redirects there).
                    "metrics_path": "/metrics/",
                    "static_configs": [{"targets": [f"localhost:{litellm_port}"]}],
                }
            ],
        }
    )


def agent_config(settings: EnvironmentSettings, log_group_name: str) -> str:
    selectors = [f"^{name}$" for name in USAGE_METRICS]
    return json.dumps(
        {
            "agent": {"region": settings.region},
            "logs": {
                "metrics_collected": {
                    "prometheus": {
                        "log_group_name": log_group_name,
                        "prometheus_config_path": "env:PROMETHEUS_CONFIG_CONTENT",
                        "emf_processor": {
                            "metric_namespace": metrics_namespace(settings),
                            "metric_declaration": [
                                {
                                    "source_labels": [JOB_LABEL],
                                    "label_matcher": f"^{SCRAPE_JOB}$",
                                    "dimensions": [
                                        [JOB_LABEL],
                                        [TEAM_LABEL],
                                        [MODEL_LABEL],
                                        [TEAM_LABEL, MODEL_LABEL],
                                    ],
                                    "metric_selectors": selectors,
                                },
                                {
                                    "source_labels": [JOB_LABEL],
                                    "label_matcher": f"^{SCRAPE_JOB}$",
                                    "dimensions": [[TEAM_LABEL]],
                                    "metric_selectors": [f"^{name}$" for name in BUDGET_METRICS],
                                },
                            ],
                        },
                    }
                },
                "force_flush_interval": 5,
            },
        }
    )


class MetricsAgent(Construct):
    """Adds the agent container to `task_definition` and lets the task role write its metrics."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        task_definition: ecs.FargateTaskDefinition,
        litellm_port: int,
        container_logs: logs.ILogGroup,
        environment: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        # The embedded-metric-format records: CloudWatch extracts the metrics; the records themselves
        # are kept as long as the environment's other logs. Named, so the agent's configuration is a
        # plain string, and removed with the stack, so a retry never finds it in the way.
        log_group_name = f"/kintone-llm/{settings.name}/litellm-metrics"
        self.log_group = log_group(
            self, "EmfRecords", settings, name=log_group_name, removal_policy=RemovalPolicy.DESTROY
        )
        self.namespace = metrics_namespace(settings)
        self.container = task_definition.add_container(
            "MetricsAgent",
            image=ecs.ContainerImage.from_registry(settings.gateway.metrics_agent_image),
            essential=False,
            memory_reservation_mib=128,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="metrics-agent", log_group=container_logs),
            environment={
                **environment,
                "PROMETHEUS_CONFIG_CONTENT": prometheus_config(litellm_port),
                "CW_CONFIG_CONTENT": agent_config(settings, log_group_name),
            },
        )
        task_definition.add_to_task_role_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[self.log_group.log_group_arn],
            )
        )
