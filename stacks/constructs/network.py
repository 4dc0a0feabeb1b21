"""The VPC the gateway and the VPC-bound functions run in: a new one, or an existing one given by id."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from stacks.config import EnvironmentSettings, NetworkSettings
from stacks.constructs.common import log_group


def new_vpc(scope: Construct, construct_id: str, settings: EnvironmentSettings) -> ec2.Vpc:
    network = settings.network
    vpc = ec2.Vpc(
        scope,
        construct_id,
        ip_addresses=ec2.IpAddresses.cidr(network.new_vpc_cidr),
        max_azs=network.max_azs,
        nat_gateways=network.nat_gateways,
        subnet_configuration=[
            # Only the NAT gateways live here; the ALB is internal and nothing else is public.
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
            # Tasks and functions: they reach ghcr.io, kintone and AWS APIs through NAT.
            ec2.SubnetConfiguration(
                name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22
            ),
            # The database: no route out at all.
            ec2.SubnetConfiguration(
                name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
            ),
        ],
    )
    vpc.add_flow_log(
        "FlowLog",
        destination=ec2.FlowLogDestination.to_cloud_watch_logs(log_group(scope, "FlowLogs", settings)),
        traffic_type=ec2.FlowLogTrafficType.ALL,
    )
    return vpc


def existing_vpc(scope: Construct, construct_id: str, network: NetworkSettings) -> ec2.IVpc:
    """The existing VPC from its ids in the settings: no lookup, so synth needs no AWS credentials."""
    return ec2.Vpc.from_vpc_attributes(
        scope,
        construct_id,
        vpc_id=network.vpc_id,
        vpc_cidr_block=network.vpc_cidr,
        availability_zones=list(network.availability_zones),
        private_subnet_ids=list(network.private_subnet_ids),
        private_subnet_route_table_ids=list(network.private_subnet_route_table_ids) or None,
    )


def private_subnets() -> ec2.SubnetSelection:
    """Where tasks and functions run: private subnets with a route out (an existing VPC's given subnets)."""
    return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)


def database_subnets(vpc: ec2.IVpc) -> ec2.SubnetSelection:
    """Isolated subnets when the VPC has them (new VPC), otherwise the private ones."""
    if vpc.isolated_subnets:
        return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
    return private_subnets()
