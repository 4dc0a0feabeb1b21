"""Operations: alarms to an SNS topic (e-mail) and a dashboard of the provisioning pipeline and gateway.

The functions publish Powertools metrics (namespace per environment, dimension `service`); the
dashboard shows the worker's KeysIssued, RequestsFailed and TimeToKey (milliseconds from webhook
receipt to a working key) and the webhook's WebhookAccepted and WebhookRejected.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.alarms import TopicAlarms
from stacks.constructs.common import rotating_key
from stacks.constructs.functions import SERVICE_NAME, ProvisioningFunctions, metrics_namespace
from stacks.constructs.gateway import LiteLLMGateway
from stacks.constructs.provisioning_api import WebhookApi
from stacks.constructs.queue import ProvisioningQueue

KEYS_ISSUED = "KeysIssued"
KEY_FAILURES = "RequestsFailed"
WEBHOOKS_ACCEPTED = "WebhookAccepted"
WEBHOOKS_REJECTED = "WebhookRejected"
# The reconciler refused to revoke many keys at once (their records vanished): a person must look.
MASS_REVOKE_BLOCKED = "MassRevokeBlocked"
# A full sweep could not read the directory (cybozu.com User API), so no owner was checked.
OWNER_CHECK_FAILED = "OwnerCheckFailed"
KEYS_ROTATED = "KeysRotated"
# The app's kintone requests so far in kintone's day (all functions), against its daily budget.
KINTONE_REQUESTS_TODAY = "KintoneRequestsToday"
TIME_TO_KEY = "TimeToKey"
_FIVE_MINUTES = Duration.minutes(5)
_ONE_MINUTE = Duration.minutes(1)


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        queue: ProvisioningQueue,
        functions: ProvisioningFunctions,
        api: WebhookApi,
        gateway: LiteLLMGateway | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        key = rotating_key(self, "AlarmTopicKey", f"{settings.resource_prefix}: alarm notifications")
        # CloudWatch publishes alarms to the encrypted topic; it must be able to use the key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublishToTheTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"{settings.resource_prefix} alarms",
            master_key=key,
            enforce_ssl=True,
        )
        self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        self._alarms = TopicAlarms(self, resource_prefix=settings.resource_prefix, topic=self.topic)

        dead_letters = queue.dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=_ONE_MINUTE, statistic="Maximum"
        )
        self._alarms.add(
            "DeadLetterQueueNotEmpty",
            dead_letters,
            threshold=1,
            description="Records failed five times and wait in the dead-letter queue: inspect and redrive.",
        )
        oldest_message = queue.queue.metric_approximate_age_of_oldest_message(
            period=_ONE_MINUTE, statistic="Maximum"
        )
        self._alarms.add(
            "OldestMessageTooOld",
            oldest_message,
            threshold=settings.oldest_message_alarm_seconds,
            evaluation_periods=3,
            description="Records wait too long for a key: the worker is failing, throttled or stopped.",
        )
        for name, function in functions.by_name.items():
            self._alarms.add(
                f"{name}Errors",
                function.metric_errors(period=_FIVE_MINUTES, statistic="Sum"),
                threshold=1,
                description=f"The {name.lower()} function raised errors.",
            )
            self._alarms.add(
                f"{name}Throttles",
                function.metric_throttles(period=_FIVE_MINUTES, statistic="Sum"),
                threshold=1,
                description=f"The {name.lower()} function was throttled.",
            )
        self._alarms.add(
            "MassRevokeBlocked",
            self._pipeline_metric(MASS_REVOKE_BLOCKED, "Maximum", "mass revoke blocked"),
            threshold=1,
            description="The reconciler found many issued keys without a record and revoked none: check "
            'the kintone app, then invoke the reconciler with {"allow_mass_revoke": true} if intended.',
        )
        budget = settings.kintone.daily_request_budget
        self._alarms.add(
            "KintoneDailyBudgetNearlySpent",
            self._pipeline_metric(KINTONE_REQUESTS_TODAY, "Maximum", "kintone requests today"),
            threshold=round(budget * settings.kintone.request_budget_alarm_share),
            description=f"The pipeline sent {settings.kintone.request_budget_alarm_share:.0%} of the "
            f"app's {budget:,} kintone requests for today (the count restarts at 9:00 JST). Past the "
            "budget kintone warns the store administrator: look for a loop or a burst, or lengthen the "
            "reconciler's and the spend sync's intervals.",
        )
        self._alarms.add(
            "OwnerCheckFailed",
            self._pipeline_metric(OWNER_CHECK_FAILED, "Sum", "owner checks failed").with_(
                period=Duration.hours(1)
            ),
            threshold=2,
            description="Full sweeps could not read the cybozu.com User API twice within an hour, so "
            "nobody who left is losing their key: check the cybozu-user-api secret and the User API.",
        )
        self._alarms.add(
            "WebhookServerErrors",
            api.api.metric_server_error(period=_FIVE_MINUTES, statistic="Sum"),
            threshold=1,
            description="The webhook API answered kintone with 5xx: kintone does not retry webhooks.",
        )
        if gateway is not None:
            self._alarms.add(
                "GatewayUnhealthyTasks",
                _target_metric(gateway, "UnHealthyHostCount", "Maximum", period=_ONE_MINUTE),
                threshold=1,
                evaluation_periods=3,
                description="LiteLLM tasks fail the ALB health check.",
            )
            self._alarms.add(
                "GatewayNoHealthyTasks",
                _target_metric(gateway, "HealthyHostCount", "Minimum", period=_ONE_MINUTE),
                threshold=1,
                comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=2,
                missing=cloudwatch.TreatMissingData.BREACHING,
                description="No LiteLLM task is healthy: the gateway is down.",
            )
        self.dashboard = self._dashboard(queue, functions, api, gateway)

    def _pipeline_metric(self, name: str, statistic: str, label: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=metrics_namespace(self._settings),
            metric_name=name,
            dimensions_map={"service": SERVICE_NAME},
            statistic=statistic,
            period=_FIVE_MINUTES,
            label=label,
        )

    def _dashboard(
        self,
        queue: ProvisioningQueue,
        functions: ProvisioningFunctions,
        api: WebhookApi,
        gateway: LiteLLMGateway | None,
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{self._settings.resource_prefix}-keys",
            default_interval=Duration.hours(24),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Keys issued",
                left=[
                    self._pipeline_metric(KEYS_ISSUED, "Sum", "issued"),
                    self._pipeline_metric(KEYS_ROTATED, "Sum", "rotated"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Failures",
                left=[
                    self._pipeline_metric(KEY_FAILURES, "Sum", "failed records"),
                    functions.worker.metric_errors(period=_FIVE_MINUTES, label="worker errors"),
                    queue.dead_letter_queue.metric_approximate_number_of_messages_visible(
                        label="dead letters"
                    ),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Time to key (ms)",
                left=[
                    self._pipeline_metric(TIME_TO_KEY, "p50", "p50"),
                    self._pipeline_metric(TIME_TO_KEY, "p99", "p99"),
                ],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Queue depth",
                left=[
                    queue.queue.metric_approximate_number_of_messages_visible(label="waiting"),
                    queue.queue.metric_approximate_number_of_messages_not_visible(label="in flight"),
                    queue.dead_letter_queue.metric_approximate_number_of_messages_visible(
                        label="dead letters"
                    ),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Age of oldest message (s)",
                left=[queue.queue.metric_approximate_age_of_oldest_message(statistic="Maximum")],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Webhook API",
                left=[
                    self._pipeline_metric(WEBHOOKS_ACCEPTED, "Sum", "accepted"),
                    self._pipeline_metric(WEBHOOKS_REJECTED, "Sum", "rejected (token, app)"),
                    api.api.metric_count(label="requests"),
                    api.api.metric_client_error(label="4xx"),
                    api.api.metric_server_error(label="5xx"),
                ],
                right=[api.api.metric_latency(statistic="p99", label="latency p99 (ms)")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Function errors and throttles",
                left=[
                    metric
                    for name, function in functions.by_name.items()
                    for metric in (
                        function.metric_errors(label=f"{name} errors"),
                        function.metric_throttles(label=f"{name} throttles"),
                    )
                ],
                width=12,
            ),
        )
        if gateway is not None:
            dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title="Gateway health",
                    left=[
                        _target_metric(gateway, "HealthyHostCount", "Minimum", label="healthy tasks"),
                        _target_metric(gateway, "UnHealthyHostCount", "Maximum", label="unhealthy tasks"),
                        _target_metric(gateway, "HTTPCode_Target_5XX_Count", "Sum", label="5xx from LiteLLM"),
                    ],
                    right=[
                        _target_metric(gateway, "TargetResponseTime", "p99", label="response time p99 (s)")
                    ],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title="Gateway tasks",
                    left=[
                        gateway.service.metric_cpu_utilization(label="CPU %"),
                        gateway.service.metric_memory_utilization(label="memory %"),
                    ],
                    width=12,
                ),
            )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self._alarms.made, width=24)
        )
        return dashboard


def _target_metric(
    gateway: LiteLLMGateway,
    name: str,
    statistic: str,
    *,
    period: Duration = _FIVE_MINUTES,
    label: str | None = None,
) -> cloudwatch.Metric:
    """An ALB metric of the gateway's target group, by its full names (no ARN parsing across stacks)."""
    return cloudwatch.Metric(
        namespace="AWS/ApplicationELB",
        metric_name=name,
        dimensions_map={
            "TargetGroup": gateway.target_group.target_group_full_name,
            "LoadBalancer": gateway.load_balancer.load_balancer_full_name,
        },
        statistic=statistic,
        period=period,
        label=label,
    )
