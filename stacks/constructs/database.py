"""LiteLLM's database: Aurora Serverless v2 PostgreSQL, encrypted, reachable only from the gateway tasks."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.common import acknowledge, log_group
from stacks.constructs.network import database_subnets

DATABASE_NAME = "litellm"
DATABASE_USER = "litellm"
# Kept out of generated passwords so the value stays safe in a URL and a shell without quoting.
_URL_UNSAFE_CHARACTERS = " %+~`#$&*()|[]{}:;<>?!'/@\"\\,="


class GatewayDatabase(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        vpc: ec2.IVpc,
        encryption_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        gateway = settings.gateway
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="LiteLLM database: PostgreSQL from the gateway tasks only",
            allow_all_outbound=False,
        )
        cluster_identifier = f"{settings.resource_prefix}-litellm"
        # Created here rather than by RDS so the PostgreSQL log gets the environment's retention. Its
        # name is fixed by RDS, so it is removed with the stack: a retained one would block a retry.
        postgresql_log = log_group(
            self,
            "PostgresqlLog",
            settings,
            name=f"/aws/rds/cluster/{cluster_identifier}/postgresql",
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.credentials = rds.Credentials.from_generated_secret(
            DATABASE_USER,
            encryption_key=encryption_key,
            exclude_characters=_URL_UNSAFE_CHARACTERS,
        )
        self.cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            cluster_identifier=cluster_identifier,
            engine=rds.DatabaseClusterEngine.aurora_postgres(
                version=rds.AuroraPostgresEngineVersion.VER_16_8
            ),
            credentials=self.credentials,
            default_database_name=DATABASE_NAME,
            writer=rds.ClusterInstance.serverless_v2("Writer", auto_minor_version_upgrade=True),
            readers=[
                rds.ClusterInstance.serverless_v2(f"Reader{number}", scale_with_writer=True)
                for number in range(1, gateway.database_readers + 1)
            ],
            serverless_v2_min_capacity=gateway.database_min_acu,
            serverless_v2_max_capacity=gateway.database_max_acu,
            vpc=vpc,
            vpc_subnets=database_subnets(vpc),
            security_groups=[self.security_group],
            storage_encrypted=True,
            storage_encryption_key=encryption_key,
            backup=rds.BackupProps(retention=Duration.days(14 if settings.retain_data else 1)),
            copy_tags_to_snapshot=True,
            deletion_protection=settings.retain_data,
            removal_policy=RemovalPolicy.SNAPSHOT if settings.retain_data else RemovalPolicy.DESTROY,
            cloudwatch_logs_exports=["postgresql"],
        )
        self.cluster.node.add_dependency(postgresql_log)
        self.secret = self.cluster.secret
        acknowledge(
            self.cluster,
            "AwsSolutions-RDS6",
            "LiteLLM connects with a user name and password (DATABASE_URL); it has no IAM token support "
            "for its Prisma client in this deployment. The password lives in Secrets Manager.",
        )
        if not settings.retain_data:
            acknowledge(
                self.cluster,
                "AwsSolutions-RDS10",
                f"Environment '{settings.name}' sets retain_data to false: its database is disposable.",
            )
        acknowledge(
            self.cluster.node.find_child("Secret"),
            "AwsSolutions-SMG4",
            "LiteLLM reads the database password only when a task starts, so an automatic rotation "
            "would cut running tasks off the database. Rotate with the runbook (rotate, then force "
            "a new ECS deployment).",
        )
