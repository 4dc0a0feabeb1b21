"""The DynamoDB state table: one item per kintone record, mapping it to its key and issuance state."""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.common import data_removal_policy

PARTITION_KEY = "pk"
TTL_ATTRIBUTE = "expires_at"
# The reconciler finds records by state, oldest change first. updated_at is epoch seconds (a number).
STATUS_INDEX = "by_status"
STATUS_INDEX_PARTITION_KEY = "status"
STATUS_INDEX_SORT_KEY = "updated_at"


class StateTable(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, encryption_key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=encryption_key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=TTL_ATTRIBUTE,
            deletion_protection=settings.retain_data,
            removal_policy=data_removal_policy(settings),
        )
        self.table.add_global_secondary_index(
            index_name=STATUS_INDEX,
            partition_key=dynamodb.Attribute(
                name=STATUS_INDEX_PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(name=STATUS_INDEX_SORT_KEY, type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.ALL,
        )

    @property
    def status_index_arn(self) -> str:
        return f"{self.table.table_arn}/index/{STATUS_INDEX}"
