"""VPC endpoints (a per-environment switch): AWS calls of the functions and tasks stay inside the VPC.

Interface endpoints for Secrets Manager, SQS, STS, CloudWatch Logs and Bedrock runtime; gateway
endpoints for S3 and DynamoDB. With them, a VPC whose egress goes only through a proxy (or none at
all for AWS) still reaches what the platform calls; kintone, ghcr.io and cybozu.com stay outside.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from stacks.constructs.common import acknowledge
from stacks.constructs.network import private_subnets

INTERFACE_ENDPOINTS = {
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "BedrockRuntime": ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME,
}
GATEWAY_ENDPOINTS = {
    "S3": ec2.GatewayVpcEndpointAwsService.S3,
    "DynamoDb": ec2.GatewayVpcEndpointAwsService.DYNAMODB,
}


class VpcEndpoints(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="VPC interface endpoints: HTTPS from inside the VPC",
            allow_all_outbound=False,
        )
        self.security_group.add_ingress_rule(
            ec2.Peer.ipv4(vpc.vpc_cidr_block), ec2.Port.tcp(443), "AWS API calls from the VPC"
        )
        acknowledge(
            self.security_group,
            "AwsSolutions-EC23",
            "The only ingress rule admits HTTPS from the VPC's own CIDR block, which cdk-nag cannot read "
            "at synth time because it is a reference to the VPC.",
        )
        for name, service in INTERFACE_ENDPOINTS.items():
            vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=private_subnets(),
                security_groups=[self.security_group],
                private_dns_enabled=True,
            )
        for name, service in GATEWAY_ENDPOINTS.items():
            vpc.add_gateway_endpoint(name, service=service, subnets=[private_subnets()])
