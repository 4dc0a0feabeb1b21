"""GatewayStack: LiteLLM on Fargate behind an internal ALB, Aurora Serverless v2, secrets, health, scaling."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.infra


def security_group_rules(synthesized: Synthesized) -> list[dict[str, Any]]:
    """Every rule of the gateway stack, inline or standalone, as {group, direction, peer, ports}."""
    rules = []
    for logical_id, group in synthesized.resources("gateway", "AWS::EC2::SecurityGroup").items():
        for direction, key in (("ingress", "SecurityGroupIngress"), ("egress", "SecurityGroupEgress")):
            for rule in group["Properties"].get(key, []):
                rules.append({"group": logical_id, "direction": direction, **rule})
    for resource_type, direction in (
        ("AWS::EC2::SecurityGroupIngress", "ingress"),
        ("AWS::EC2::SecurityGroupEgress", "egress"),
    ):
        for rule in synthesized.resources("gateway", resource_type).values():
            properties = dict(rule["Properties"])
            group = properties.pop("GroupId")["Fn::GetAtt"][0]
            rules.append({"group": group, "direction": direction, **properties})
    return rules


def group_id(reference: object) -> str | None:
    return reference["Fn::GetAtt"][0] if isinstance(reference, dict) else None


def test_load_balancer_is_internal_and_not_open_to_the_internet(environment: Synthesized) -> None:
    load_balancers = environment.resources("gateway", "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert [lb["Properties"]["Scheme"] for lb in load_balancers.values()] == ["internal"]
    for rule in security_group_rules(environment):
        assert rule.get("CidrIp") != "0.0.0.0/0" or rule["direction"] == "egress", rule
        assert "CidrIpv6" not in rule, rule


def test_only_the_load_balancer_reaches_the_tasks_and_only_the_tasks_reach_the_database(
    environment: Synthesized,
) -> None:
    load_balancer = environment.logical_id(
        "gateway", "AWS::EC2::SecurityGroup", r"/LoadBalancerSecurityGroup/"
    )
    tasks = environment.logical_id("gateway", "AWS::EC2::SecurityGroup", r"/TaskSecurityGroup/")
    database = environment.logical_id("gateway", "AWS::EC2::SecurityGroup", r"/Database/SecurityGroup/")
    rules = security_group_rules(environment)

    task_ingress = [rule for rule in rules if rule["group"] == tasks and rule["direction"] == "ingress"]
    assert [(group_id(rule.get("SourceSecurityGroupId")), rule["FromPort"]) for rule in task_ingress] == [
        (load_balancer, 4000)
    ]
    database_ingress = [
        rule for rule in rules if rule["group"] == database and rule["direction"] == "ingress"
    ]
    assert [group_id(rule.get("SourceSecurityGroupId")) for rule in database_ingress] == [tasks]
    load_balancer_egress = [
        rule for rule in rules if rule["group"] == load_balancer and rule["direction"] == "egress"
    ]
    assert [
        (group_id(rule.get("DestinationSecurityGroupId")), rule["FromPort"]) for rule in load_balancer_egress
    ] == [(tasks, 4000)]
    task_egress = [rule for rule in rules if rule["group"] == tasks and rule["direction"] == "egress"]
    assert sorted(
        str(rule.get("CidrIp") or group_id(rule["DestinationSecurityGroupId"])) for rule in task_egress
    ) == (sorted(["0.0.0.0/0", database]))
    assert next(rule for rule in task_egress if rule.get("CidrIp"))["FromPort"] == 443
    database_egress = [rule for rule in rules if rule["group"] == database and rule["direction"] == "egress"]
    assert all(rule["CidrIp"] == "255.255.255.255/32" for rule in database_egress), "database sends nothing"


def test_load_balancer_admits_the_office_and_the_provisioning_functions(environment: Synthesized) -> None:
    load_balancer = environment.logical_id(
        "gateway", "AWS::EC2::SecurityGroup", r"/LoadBalancerSecurityGroup/"
    )
    clients = environment.logical_id("gateway", "AWS::EC2::SecurityGroup", r"/ClientSecurityGroup/")
    ingress = [
        rule for rule in security_group_rules(environment)
        if rule["group"] == load_balancer and rule["direction"] == "ingress"
    ]  # fmt: skip
    sources = {rule.get("CidrIp") or group_id(rule["SourceSecurityGroupId"]) for rule in ingress}
    assert sources == {*environment.settings.network.office_cidrs, clients}
    # HTTPS only: no one may reach the ALB on any other port.
    assert {(rule["FromPort"], rule["ToPort"]) for rule in ingress} == {(443, 443)}


def test_litellm_runs_the_pinned_official_image(environment: Synthesized) -> None:
    image = environment.settings.gateway.image
    assert image == "ghcr.io/berriai/litellm:v1.108.7"
    environment.template("gateway").has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "RequiresCompatibilities": ["FARGATE"],
            "ContainerDefinitions": Match.array_with(
                [
                    Match.object_like(
                        {
                            "Image": image,
                            "PortMappings": [Match.object_like({"ContainerPort": 4000})],
                            "LogConfiguration": Match.object_like({"LogDriver": "awslogs"}),
                        }
                    )
                ]
            ),
        },
    )


def test_credentials_reach_litellm_only_as_secrets(environment: Synthesized) -> None:
    container = litellm_container(environment)
    assert {secret["Name"] for secret in container["Secrets"]} == {
        "LITELLM_MASTER_KEY",
        "LITELLM_SALT_KEY",
        "DATABASE_USERNAME",
        "DATABASE_PASSWORD",
        "UI_USERNAME",
        "UI_PASSWORD",
        "WEBHOOK_URL",  # budget alerts: the URL holds the provisioning API's alert token
    }
    plain = {variable["Name"] for variable in container["Environment"]}
    assert not plain & {"LITELLM_MASTER_KEY", "LITELLM_SALT_KEY", "DATABASE_PASSWORD", "DATABASE_URL"}
    # The config file from the repository travels as an asset LiteLLM reads from S3.
    assert {"LITELLM_CONFIG_BUCKET_NAME", "LITELLM_CONFIG_BUCKET_OBJECT_KEY", "DATABASE_HOST"} <= plain


def test_secrets_are_generated_by_secrets_manager_and_encrypted(environment: Synthesized) -> None:
    secrets = environment.resources("gateway", "AWS::SecretsManager::Secret")
    assert len(secrets) == 5  # master key, salt key, admin UI login, database credentials, alert URL
    for secret in secrets.values():
        # No fixed names: a secret retained by a failed first deploy must not collide with the retry.
        assert "Name" not in secret["Properties"]
        assert "SecretString" not in secret["Properties"], "no secret value in the template"
        assert "GenerateSecretString" in secret["Properties"]
        assert "KmsKeyId" in secret["Properties"]


def test_database_is_encrypted_aurora_serverless_v2_postgresql(environment: Synthesized) -> None:
    gateway = environment.settings.gateway
    template = environment.template("gateway")
    template.has_resource_properties(
        "AWS::RDS::DBCluster",
        {
            "Engine": "aurora-postgresql",
            "StorageEncrypted": True,
            "KmsKeyId": Match.any_value(),
            "ServerlessV2ScalingConfiguration": {
                "MinCapacity": gateway.database_min_acu,
                "MaxCapacity": gateway.database_max_acu,
            },
            "DeletionProtection": environment.settings.retain_data,
        },
    )
    instances = environment.resources("gateway", "AWS::RDS::DBInstance")
    assert len(instances) == 1 + gateway.database_readers
    for instance in instances.values():
        assert instance["Properties"]["DBInstanceClass"] == "db.serverless"
        assert instance["Properties"]["PubliclyAccessible"] is False


def test_health_checks_autoscaling_and_logs(environment: Synthesized) -> None:
    gateway = environment.settings.gateway
    template = environment.template("gateway")
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {"HealthCheckPath": "/health/liveliness", "Port": 4000, "TargetType": "ip"},
    )
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {"MinCapacity": gateway.min_tasks, "MaxCapacity": gateway.max_tasks},
    )
    policies = environment.resources("gateway", "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    metrics = {
        policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
            "PredefinedMetricType"
        ]
        for policy in policies
    }
    assert metrics == {"ECSServiceAverageCPUUtilization", "ECSServiceAverageMemoryUtilization"}
    template.has_resource_properties(
        "AWS::ECS::Service",
        {
            "DeploymentConfiguration": Match.object_like(
                {"DeploymentCircuitBreaker": {"Enable": True, "Rollback": True}}
            )
        },
    )
    template.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]},
    )
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        {"LoadBalancerAttributes": Match.array_with([{"Key": "access_logs.s3.enabled", "Value": "true"}])},
    )


def test_admin_ui_and_spend_tracking_stay_on_the_internal_load_balancer(environment: Synthesized) -> None:
    outputs = environment.templates["gateway"]["Outputs"]
    assert "GatewayAdminUiUrl" in outputs
    listeners = environment.resources("gateway", "AWS::ElasticLoadBalancingV2::Listener").values()
    # Every path of the ALB forwards to LiteLLM: /ui and /spend/* included.
    for listener in listeners:
        (action,) = listener["Properties"]["DefaultActions"]
        assert action["Type"] == "forward"


def test_gateway_serves_https_only_with_the_configured_certificate(environment: Synthesized) -> None:
    """The functions send LiteLLM's master key to the gateway: there is no plain-HTTP listener at all."""
    gateway = environment.settings.gateway
    listeners = environment.resources("gateway", "AWS::ElasticLoadBalancingV2::Listener").values()
    assert [
        (listener["Properties"]["Port"], listener["Properties"]["Protocol"]) for listener in listeners
    ] == [(443, "HTTPS")]
    (listener,) = listeners
    assert listener["Properties"]["Certificates"] == [{"CertificateArn": gateway.certificate_arn}]
    assert listener["Properties"]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    environment.template("gateway").has_resource_properties(
        "AWS::Route53::HostedZone", {"Name": f"{gateway.domain_name}."}
    )
    outputs = environment.templates["gateway"]["Outputs"]
    assert outputs["GatewayUrl"]["Value"] == f"https://{gateway.domain_name}"


def test_production_uses_the_office_connected_vpc(production: Synthesized) -> None:
    assert production.resources("gateway", "AWS::EC2::VPC") == {}, "production uses the office-connected VPC"


def test_task_role_may_invoke_only_the_configured_bedrock_models(environment: Synthesized) -> None:
    task_role = environment.logical_id("gateway", "AWS::IAM::Policy", r"/TaskDefinition/TaskRole/")
    statements = environment.resources("gateway", "AWS::IAM::Policy")[task_role]["Properties"][
        "PolicyDocument"
    ]["Statement"]
    bedrock = [statement for statement in statements if "bedrock:InvokeModel" in statement["Action"]]
    profiles, models = bedrock
    models_by_id = environment.settings.gateway.models.values()
    location = f"{environment.settings.region}:{environment.settings.account}"
    assert sorted(profiles["Resource"]) == sorted(
        f"arn:aws:bedrock:{location}:inference-profile/{model_id}" for model_id in models_by_id
    )
    assert sorted(models["Resource"]) == sorted(
        f"arn:aws:bedrock:*::foundation-model/{model_id.split('.', 1)[1]}" for model_id in models_by_id
    )
    # The models only through the configured profiles, never invoked directly.
    allowed_profiles = models["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"]
    assert sorted(allowed_profiles) == sorted(profiles["Resource"])
    marketplace = next(
        statement for statement in statements if "aws-marketplace:Subscribe" in statement["Action"]
    )
    assert sorted(marketplace["Action"]) == [
        "aws-marketplace:Subscribe",
        "aws-marketplace:Unsubscribe",
        "aws-marketplace:ViewSubscriptions",
    ]


def litellm_container(environment: Synthesized) -> dict[str, Any]:
    (task,) = environment.resources("gateway", "AWS::ECS::TaskDefinition").values()
    containers = {container["Name"]: container for container in task["Properties"]["ContainerDefinitions"]}
    return containers["LiteLLM"]
