"""OperationsStack: CloudTrail into a locked-down bucket, alarms to an SNS topic, and the dashboard."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.infra


def test_trail_validates_and_encrypts_log_files(environment: Synthesized) -> None:
    environment.template("operations").has_resource_properties(
        "AWS::CloudTrail::Trail",
        {
            "EnableLogFileValidation": True,
            "IsLogging": True,
            "IsMultiRegionTrail": True,
            "IncludeGlobalServiceEvents": True,
            "KMSKeyId": Match.any_value(),
        },
    )


def test_trail_bucket_is_locked_down(environment: Synthesized) -> None:
    (trail,) = environment.resources("operations", "AWS::CloudTrail::Trail").values()
    bucket_id = trail["Properties"]["S3BucketName"]["Ref"]
    bucket = environment.resources("operations", "AWS::S3::Bucket")[bucket_id]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert bucket["ObjectLockEnabled"] is True
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "LoggingConfiguration" in bucket
    policy = next(
        policy["Properties"]["PolicyDocument"]
        for policy in environment.resources("operations", "AWS::S3::BucketPolicy").values()
        if policy["Properties"]["Bucket"] == {"Ref": bucket_id}
    )
    assert {
        "Action": "s3:*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
    }.items() <= next(s for s in policy["Statement"] if s["Effect"] == "Deny").items()


def alarm_metrics(synthesized: Synthesized) -> dict[str, dict]:
    return {
        alarm["Properties"]["AlarmName"].removeprefix(f"{synthesized.settings.resource_prefix}-"): alarm[
            "Properties"
        ]
        for alarm in synthesized.resources("operations", "AWS::CloudWatch::Alarm").values()
    }


def test_alarms_cover_dead_letters_errors_age_and_throttles(environment: Synthesized) -> None:
    alarms = alarm_metrics(environment)
    expected = {
        "DeadLetterQueueNotEmpty",
        "OldestMessageTooOld",
        "WebhookServerErrors",
        "MassRevokeBlocked",
        "OwnerCheckFailed",
        "KintoneDailyBudgetNearlySpent",
    }
    expected.add("OwnerCheckFailed")
    for name in ("Webhook", "Worker", "Reconciler", "Rotator", "SpendSync", "Alerts"):
        expected |= {f"{name}Errors", f"{name}Throttles"}
    if environment.settings.gateway.create:
        expected |= {
            "GatewayUnhealthyTasks",
            "GatewayNoHealthyTasks",
            "GatewayErrorRate",
            "GatewayLoadBalancer5xx",
        }
        expected |= {
            f"TeamBudgetLow-{team}"
            for team in environment.settings.team_catalog.names()
            if environment.settings.team_catalog.get(team).max_budget is not None
        }
    assert set(alarms) == expected
    assert alarms["DeadLetterQueueNotEmpty"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarms["DeadLetterQueueNotEmpty"]["Threshold"] == 1
    assert alarms["OldestMessageTooOld"]["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert alarms["OldestMessageTooOld"]["Threshold"] == environment.settings.oldest_message_alarm_seconds
    assert alarms["WorkerThrottles"]["MetricName"] == "Throttles"
    # Owners unchecked twice within an hour (full sweeps every 15 minutes by default).
    owner_check = alarms["OwnerCheckFailed"]
    [metric] = owner_check["Metrics"]  # labelled, so CDK writes it as a metric query
    assert metric["MetricStat"]["Metric"]["MetricName"] == "OwnerCheckFailed"
    assert (owner_check["Threshold"], metric["MetricStat"]["Period"], metric["MetricStat"]["Stat"]) == (
        2,
        3600,
        "Sum",
    )


def test_every_alarm_notifies_the_encrypted_topic(environment: Synthesized) -> None:
    (topic_id,) = environment.resources("operations", "AWS::SNS::Topic")
    for alarm in alarm_metrics(environment).values():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["OKActions"] == [{"Ref": topic_id}]
    template = environment.template("operations")
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": environment.settings.alarm_email}
    )


def test_dashboard_shows_keys_failures_time_to_key_queue_depth_and_gateway_health(
    environment: Synthesized,
) -> None:
    (dashboard,) = environment.resources("operations", "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for piece in ("KeysIssued", "RequestsFailed", "TimeToKey", "ApproximateNumberOfMessagesVisible"):
        assert piece in body, piece
    assert ("HealthyHostCount" in body) == environment.settings.gateway.create


def test_an_alarm_fires_at_the_configured_share_of_the_daily_kintone_budget(environment: Synthesized) -> None:
    alarm = alarm_metrics(environment)["KintoneDailyBudgetNearlySpent"]
    kintone = environment.settings.kintone
    [metric] = alarm["Metrics"]  # a labelled metric is written as a metric query
    assert metric["MetricStat"]["Metric"]["MetricName"] == "KintoneRequestsToday"
    assert metric["MetricStat"]["Stat"] == "Maximum"
    assert alarm["Threshold"] == round(kintone.daily_request_budget * kintone.request_budget_alarm_share)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
