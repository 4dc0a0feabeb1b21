"""The LiteLLM gateway: the official image on ECS Fargate behind an internal Application Load Balancer.

Security groups open only these paths, each with its own rule:
office networks and gateway clients -> ALB (HTTPS, 443) -> tasks (4000) -> database (5432).
Tasks also leave on 443 only: image pulls, Secrets Manager, CloudWatch Logs, S3 and model providers.
"""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.common import (
    acknowledge,
    data_removal_policy,
    log_group,
    rotating_key,
    server_access_logs_bucket,
)
from stacks.constructs.database import DATABASE_NAME, GatewayDatabase
from stacks.constructs.egress import proxy_environment
from stacks.constructs.master_key import MasterKeySecret
from stacks.constructs.metrics_agent import MetricsAgent
from stacks.constructs.network import private_subnets
from stacks.litellm_config import LiteLLMConfig

LITELLM_PORT = 4000
HTTPS_PORT = 443
# Answers without touching the database, so a database blip does not drain every task from the ALB.
HEALTH_CHECK_PATH = "/health/liveliness"
ADMIN_UI_USERNAME = "llm-admin"


def generated_secret(
    scope: Construct,
    construct_id: str,
    *,
    description: str,
    key: kms.IKey,
    removal_policy: RemovalPolicy,
) -> secretsmanager.Secret:
    """A random 64-character secret created by Secrets Manager: its value never passes through CDK.

    No fixed name: a secret retained by a failed first deploy must not collide with the retry's."""
    return secretsmanager.Secret(
        scope,
        construct_id,
        description=description,
        encryption_key=key,
        generate_secret_string=secretsmanager.SecretStringGenerator(
            password_length=64, exclude_punctuation=True, include_space=False
        ),
        removal_policy=removal_policy,
    )


class LiteLLMGateway(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        vpc: ec2.IVpc,
        litellm_config: LiteLLMConfig,
        code: lambda_.Code,
    ) -> None:
        super().__init__(scope, construct_id)
        gateway = settings.gateway
        stack = Stack.of(self)
        self.vpc = vpc

        self.key = rotating_key(
            self, "Key", f"{settings.resource_prefix}: LiteLLM gateway secrets and database storage"
        )
        master_key = MasterKeySecret(
            self,
            "MasterKey",
            settings=settings,
            key=self.key,
            code=code,
            removal_policy=data_removal_policy(settings),
        )
        self.master_key_secret = master_key.secret
        # The admin UI's own login (UI_USERNAME / UI_PASSWORD), so operators never hold the master key.
        self.ui_credentials_secret = secretsmanager.Secret(
            self,
            "AdminUiCredentials",
            description="LiteLLM admin UI login: username and password",
            encryption_key=self.key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"username": ADMIN_UI_USERNAME}),
                generate_string_key="password",
                password_length=32,
                exclude_punctuation=True,
                include_space=False,
            ),
            removal_policy=data_removal_policy(settings),
        )
        acknowledge(
            self.ui_credentials_secret,
            "AwsSolutions-SMG4",
            "LiteLLM reads the admin UI password only at task start; the runbook rotates it with a new "
            "ECS deployment. Single sign-on replaces it where the company's identity provider is used.",
        )
        salt_key_secret = generated_secret(
            self,
            "SaltKey",
            description="LiteLLM salt key: encrypts provider credentials stored in its database",
            key=self.key,
            # Lives exactly as long as the database whose stored credentials it encrypts.
            removal_policy=data_removal_policy(settings),
        )
        acknowledge(
            salt_key_secret,
            "AwsSolutions-SMG4",
            "LiteLLM's salt key must never change: credentials already encrypted with it in the "
            "database would become unreadable.",
        )
        # LiteLLM posts budget alerts to WEBHOOK_URL: the provisioning API's /alert/<token>. That URL
        # exists only after the provisioning stack (which depends on this one), so the operator puts it
        # here after the first deploy (docs/deployment.md); until then alerts fail to send, nothing else.
        self.alert_url_secret = generated_secret(
            self,
            "AlertUrl",
            description="LiteLLM WEBHOOK_URL for budget alerts: AlertUrlWithoutToken + the alert token",
            key=self.key,
            removal_policy=data_removal_policy(settings),
        )
        acknowledge(
            self.alert_url_secret,
            "AwsSolutions-SMG4",
            "The URL holds the provisioning API's alert token and is replaced with it by the operator; "
            "LiteLLM reads it only at task start.",
        )
        self.database = GatewayDatabase(self, "Database", settings=settings, vpc=vpc, encryption_key=self.key)

        # Security groups: none allows all outbound; each path is opened explicitly below.
        self.load_balancer_security_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=vpc,
            description="LiteLLM internal ALB: office networks and gateway clients in, tasks out",
            allow_all_outbound=False,
        )
        self.task_security_group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=vpc,
            description="LiteLLM tasks: the ALB in; HTTPS and the database out",
            allow_all_outbound=False,
        )
        self.task_security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "Image pulls, AWS APIs and model providers over HTTPS"
        )
        self.client_security_group = ec2.SecurityGroup(
            self,
            "ClientSecurityGroup",
            vpc=vpc,
            description="Gateway clients (provisioning functions): may call the LiteLLM ALB",
            # The functions also call kintone and AWS APIs on the internet through NAT.
            allow_all_outbound=True,
        )

        cluster = ecs.Cluster(self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED)
        task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=gateway.task_cpu,
            memory_limit_mib=gateway.task_memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
                cpu_architecture=(
                    ecs.CpuArchitecture.ARM64
                    if gateway.cpu_architecture == "arm64"
                    else ecs.CpuArchitecture.X86_64
                ),
            ),
        )
        # The config file travels as an asset; LiteLLM reads it from S3 at start (no custom image needed).
        config_asset = s3_assets.Asset(self, "LiteLLMConfig", path=str(litellm_config.path))
        task_definition.add_to_task_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[
                    f"arn:{stack.partition}:s3:::{config_asset.s3_bucket_name}/{config_asset.s3_object_key}"
                ],
            )
        )
        self._allow_bedrock(task_definition, litellm_config)
        database_secret = self.database.secret
        container_logs = log_group(self, "Logs", settings)
        proxy = proxy_environment(settings, gateway.domain_name)
        litellm = task_definition.add_container(
            "LiteLLM",
            image=ecs.ContainerImage.from_registry(gateway.image),
            port_mappings=[ecs.PortMapping(container_port=LITELLM_PORT, name="http")],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="litellm", log_group=container_logs),
            environment={
                "LITELLM_CONFIG_BUCKET_NAME": config_asset.s3_bucket_name,
                "LITELLM_CONFIG_BUCKET_OBJECT_KEY": config_asset.s3_object_key,
                "DATABASE_HOST": self.database.cluster.cluster_endpoint.hostname,
                "DATABASE_NAME": DATABASE_NAME,
                "AWS_REGION_NAME": stack.region,
                # Longer than the ALB's idle timeout: the ALB, not LiteLLM, closes idle connections.
                "KEEPALIVE_TIMEOUT": str(gateway.keepalive_seconds),
                **proxy,
            },
            secrets={
                "LITELLM_MASTER_KEY": ecs.Secret.from_secrets_manager(self.master_key_secret),
                "LITELLM_SALT_KEY": ecs.Secret.from_secrets_manager(salt_key_secret),
                "WEBHOOK_URL": ecs.Secret.from_secrets_manager(self.alert_url_secret),
                "DATABASE_USERNAME": ecs.Secret.from_secrets_manager(database_secret, "username"),
                "DATABASE_PASSWORD": ecs.Secret.from_secrets_manager(database_secret, "password"),
                "UI_USERNAME": ecs.Secret.from_secrets_manager(self.ui_credentials_secret, "username"),
                "UI_PASSWORD": ecs.Secret.from_secrets_manager(self.ui_credentials_secret, "password"),
            },
        )
        self.metrics_agent = MetricsAgent(
            self,
            "Metrics",
            settings=settings,
            task_definition=task_definition,
            litellm_port=LITELLM_PORT,
            container_logs=container_logs,
            environment=proxy,
        )
        # The agent waits for LiteLLM to be up so its first scrapes do not fail.
        self.metrics_agent.container.add_container_dependencies(
            ecs.ContainerDependency(container=litellm, condition=ecs.ContainerDependencyCondition.START)
        )
        acknowledge(
            task_definition,
            "AwsSolutions-ECS2",
            "The environment holds only non-secret configuration (config location, database host and "
            "name, region, keep-alive, proxy, the metrics agent's scrape settings); every credential is "
            "injected from Secrets Manager as an ECS secret.",
        )

        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=task_definition,
            desired_count=gateway.min_tasks,
            security_groups=[self.task_security_group],
            vpc_subnets=private_subnets(),
            assign_public_ip=False,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=100,
            max_healthy_percent=200,
            # Image pull, start-up and the first migration on a cold database (see the settings).
            health_check_grace_period=Duration.seconds(gateway.health_check_grace_seconds),
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )
        # Tasks start only once the master key secret holds its sk- value.
        self.service.node.add_dependency(master_key.value)
        self.database.cluster.connections.allow_default_port_from(
            self.task_security_group, "LiteLLM tasks to their database"
        )
        scaling = self.service.auto_scale_task_count(
            min_capacity=gateway.min_tasks, max_capacity=gateway.max_tasks
        )
        scaling.scale_on_cpu_utilization("Cpu", target_utilization_percent=60)
        scaling.scale_on_memory_utilization("Memory", target_utilization_percent=75)

        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=False,
            vpc_subnets=private_subnets(),
            security_group=self.load_balancer_security_group,
            drop_invalid_header_fields=True,
            # Shorter than LiteLLM's keep-alive (KEEPALIVE_TIMEOUT), so the ALB closes idle connections first.
            idle_timeout=Duration.seconds(gateway.load_balancer_idle_timeout_seconds),
            deletion_protection=settings.retain_data,
        )
        self.load_balancer.log_access_logs(self._access_logs_bucket(), prefix="alb")
        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "TargetGroup",
            vpc=vpc,
            port=LITELLM_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[self.service],
            deregistration_delay=Duration.seconds(30),
            health_check=elbv2.HealthCheck(
                path=HEALTH_CHECK_PATH,
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
        )
        self.service.connections.allow_from(
            self.load_balancer, ec2.Port.tcp(LITELLM_PORT), "Internal ALB to LiteLLM tasks"
        )

        # HTTPS only, with no plain-HTTP listener (not even a redirect): the provisioning functions send
        # the master key, and people their keys, to this ALB; a mistaken http:// URL must fail, not leak.
        if gateway.certificate_arn is None or gateway.domain_name is None:  # refused by the settings
            raise ValueError("a created gateway needs gateway.certificate_arn and gateway.domain_name")
        self.listener = self.load_balancer.add_listener(
            "Https",
            port=HTTPS_PORT,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[elbv2.ListenerCertificate.from_arn(gateway.certificate_arn)],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            default_target_groups=[self.target_group],
            open=False,
        )
        self._allow_clients(settings, ec2.Port.tcp(HTTPS_PORT), "LiteLLM API and admin UI over HTTPS")
        self.url = f"https://{gateway.domain_name}"
        # /metrics is for the metrics agent inside the task only (LiteLLM serves it without a key).
        self.listener.add_action(
            "RefuseMetrics",
            priority=1,
            conditions=[elbv2.ListenerCondition.path_patterns(["/metrics", "/metrics/*"])],
            action=elbv2.ListenerAction.fixed_response(
                403, content_type="text/plain", message_body="forbidden"
            ),
        )
        # The provisioning functions resolve the name inside the VPC through this private zone.
        zone = route53.PrivateHostedZone(self, "Zone", zone_name=gateway.domain_name, vpc=vpc)
        route53.ARecord(
            self,
            "Alias",
            zone=zone,
            target=route53.RecordTarget.from_alias(route53_targets.LoadBalancerTarget(self.load_balancer)),
        )

    def _allow_bedrock(
        self, task_definition: ecs.FargateTaskDefinition, litellm_config: LiteLLMConfig
    ) -> None:
        """Exactly the configured inference profiles, the models behind them only through those profiles,
        and what Bedrock's automatic model access needs on a model's first use in the account."""
        stack = Stack.of(self)
        profiles = litellm_config.inference_profile_arns(stack.partition, stack.region, stack.account)
        invoke = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
        task_definition.add_to_task_role_policy(iam.PolicyStatement(actions=invoke, resources=profiles))
        task_definition.add_to_task_role_policy(
            iam.PolicyStatement(
                actions=invoke,
                resources=litellm_config.foundation_model_arns(stack.partition),
                conditions={"StringEquals": {"bedrock:InferenceProfileArn": profiles}},
            )
        )
        # Bedrock subscribes the account to a third-party model (AWS Marketplace) on its first
        # invocation, as the caller; without these the first call fails with AccessDeniedException.
        task_definition.add_to_task_role_policy(
            iam.PolicyStatement(
                actions=[
                    "aws-marketplace:ViewSubscriptions",
                    "aws-marketplace:Subscribe",
                    "aws-marketplace:Unsubscribe",
                ],
                resources=["*"],
            )
        )
        acknowledge(
            task_definition.task_role,
            "AwsSolutions-IAM5[Resource::*]",
            "AWS Marketplace subscription actions have no resource-level permissions; Bedrock needs "
            "them on the caller for a model's first use (its automatic model access).",
        )
        for model_arn in litellm_config.foundation_model_arns(stack.partition):
            acknowledge(
                task_definition.task_role,
                f"AwsSolutions-IAM5[Resource::{model_arn}]",
                "A cross-region inference profile routes to the model in any of its destination regions, "
                "which AWS may extend; the statement admits the model only through the configured profile "
                "(bedrock:InferenceProfileArn).",
            )

    def _allow_clients(self, settings: EnvironmentSettings, port: ec2.Port, purpose: str) -> None:
        for cidr in settings.network.office_cidrs:
            self.load_balancer_security_group.add_ingress_rule(
                ec2.Peer.ipv4(cidr), port, f"Office: {purpose}"
            )
        self.load_balancer_security_group.add_ingress_rule(
            self.client_security_group, port, f"Gateway clients: {purpose}"
        )

    def _access_logs_bucket(self) -> s3.Bucket:
        return s3.Bucket(
            self,
            "AccessLogs",
            # ALB access log delivery supports only SSE-S3.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            removal_policy=RemovalPolicy.RETAIN,
            server_access_logs_bucket=server_access_logs_bucket(self, "ServerAccessLogs"),
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
        )
