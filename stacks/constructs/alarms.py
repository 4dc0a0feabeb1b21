"""One way to make an alarm: named after the environment, telling the operators' topic when it fires
and when it clears."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

AT_LEAST = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD


class TopicAlarms:
    """A construct's alarms, in the order made (for its dashboard's alarm widget)."""

    def __init__(self, scope: Construct, *, resource_prefix: str, topic: sns.ITopic) -> None:
        self._scope = scope
        self._resource_prefix = resource_prefix
        self._topic = topic
        self.made: list[cloudwatch.Alarm] = []

    def add(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        description: str,
        evaluation_periods: int = 1,
        comparison: cloudwatch.ComparisonOperator = AT_LEAST,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> cloudwatch.Alarm:
        alarm = metric.create_alarm(
            self._scope,
            construct_id,
            alarm_name=f"{self._resource_prefix}-{construct_id}",
            alarm_description=description,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            comparison_operator=comparison,
            treat_missing_data=missing,
        )
        action = cloudwatch_actions.SnsAction(self._topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.made.append(alarm)
        return alarm
