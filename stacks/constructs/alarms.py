"""One way to make an alarm: named after the environment, telling the operators' topic when it fires
and when it clears."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

AT_LEAST = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD


def alarm_to_topic(
    scope: Construct,
    construct_id: str,
    metric: cloudwatch.IMetric,
    *,
    resource_prefix: str,
    topic: sns.ITopic,
    threshold: float,
    description: str,
    evaluation_periods: int = 1,
    comparison: cloudwatch.ComparisonOperator = AT_LEAST,
    missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
) -> cloudwatch.Alarm:
    alarm = metric.create_alarm(
        scope,
        construct_id,
        alarm_name=f"{resource_prefix}-{construct_id}",
        alarm_description=description,
        threshold=threshold,
        evaluation_periods=evaluation_periods,
        comparison_operator=comparison,
        treat_missing_data=missing,
    )
    action = cloudwatch_actions.SnsAction(topic)
    alarm.add_alarm_action(action)
    alarm.add_ok_action(action)
    return alarm
