"""The audit trail: CloudTrail with log-file validation, encrypted into a locked-down bucket.

Secrets Manager calls (one secret per issued key) are management events, and the worker makes them
through the audit role with the kintone user as SourceIdentity, so this trail answers "who asked
for which key, when".
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.common import rotating_key, server_access_logs_bucket


class AuditTrail(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        trail_name = f"{settings.resource_prefix}-audit"
        trail_arn = f"arn:{stack.partition}:cloudtrail:{stack.region}:{stack.account}:trail/{trail_name}"
        self.key = rotating_key(self, "Key", f"{settings.resource_prefix}: CloudTrail log files")
        cloudtrail_principal = iam.ServicePrincipal("cloudtrail.amazonaws.com")
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailEncryptsLogFilesOfThisTrail",
                principals=[cloudtrail_principal],
                actions=["kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceArn": trail_arn},
                    "StringLike": {
                        "kms:EncryptionContext:aws:cloudtrail:arn": (
                            f"arn:{stack.partition}:cloudtrail:*:{stack.account}:trail/*"
                        )
                    },
                },
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailDescribesTheKey",
                principals=[cloudtrail_principal],
                actions=["kms:DescribeKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceArn": trail_arn}},
            )
        )
        retention = Duration.days(settings.audit_log_retention_days)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            # Log files cannot be overwritten or deleted before the retention period ends.
            object_lock_enabled=True,
            object_lock_default_retention=s3.ObjectLockRetention.governance(retention),
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(settings.audit_log_retention_days + 1),
                    noncurrent_version_expiration=Duration.days(1),
                )
            ],
            server_access_logs_bucket=server_access_logs_bucket(self, "ServerAccessLogs"),
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.trail = cloudtrail.Trail(
            self,
            "Trail",
            trail_name=trail_name,
            bucket=self.bucket,
            encryption_key=self.key,
            enable_file_validation=True,
            include_global_service_events=True,
            is_multi_region_trail=True,
            management_events=cloudtrail.ReadWriteType.ALL,
        )
