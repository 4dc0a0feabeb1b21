"""Small building blocks shared by the constructs: log groups, log buckets, keys and nag acknowledgements."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct, IConstruct

from stacks.config import EnvironmentSettings

_RETENTION_BY_DAYS = {
    1: logs.RetentionDays.ONE_DAY, 3: logs.RetentionDays.THREE_DAYS, 5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK, 14: logs.RetentionDays.TWO_WEEKS, 30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS, 90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS, 150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS, 365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS, 545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS, 1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS, 2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS, 2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS, 3653: logs.RetentionDays.TEN_YEARS,
}  # fmt: skip


def data_removal_policy(settings: EnvironmentSettings) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if settings.retain_data else RemovalPolicy.DESTROY


def log_group(
    scope: Construct,
    construct_id: str,
    settings: EnvironmentSettings,
    *,
    name: str | None = None,
    removal_policy: RemovalPolicy | None = None,
) -> logs.LogGroup:
    """A log group with the environment's retention, so no log is kept forever by default."""
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=name,
        retention=_RETENTION_BY_DAYS[settings.log_retention_days],
        removal_policy=removal_policy or data_removal_policy(settings),
    )


def rotating_key(scope: Construct, construct_id: str, description: str) -> kms.Key:
    return kms.Key(
        scope,
        construct_id,
        description=description,
        enable_key_rotation=True,
        # Keys outlive their stack: data encrypted with them (backups, retained logs) must stay readable.
        removal_policy=RemovalPolicy.RETAIN,
        pending_window=Duration.days(30),
    )


def server_access_logs_bucket(scope: Construct, construct_id: str) -> s3.Bucket:
    """The destination of S3 server access logs of the stack's other buckets."""
    return s3.Bucket(
        scope,
        construct_id,
        # S3 log delivery supports only SSE-S3 on its destination bucket.
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=True,
        removal_policy=RemovalPolicy.RETAIN,
        lifecycle_rules=[
            s3.LifecycleRule(expiration=Duration.days(365), noncurrent_version_expiration=Duration.days(30))
        ],
    )


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge a cdk-nag finding on `scope` with the reason it does not apply."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))
