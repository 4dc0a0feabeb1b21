"""OperationsStack: the CloudTrail audit trail, alarms to the operators' e-mail and the dashboard."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from stacks.config import EnvironmentSettings
from stacks.constructs.audit import AuditTrail
from stacks.constructs.gateway import LiteLLMGateway
from stacks.constructs.monitoring import Monitoring
from stacks.constructs.usage_monitoring import UsageMonitoring
from stacks.provisioning_stack import ProvisioningStack


class OperationsStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        provisioning: ProvisioningStack,
        gateway: LiteLLMGateway | None,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.audit = AuditTrail(self, "Audit", settings=settings)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            settings=settings,
            queue=provisioning.queue,
            functions=provisioning.functions,
            api=provisioning.api,
            gateway=gateway,
        )
        if gateway is not None:
            self.usage = UsageMonitoring(
                self,
                "Usage",
                settings=settings,
                gateway=gateway,
                dashboard=self.monitoring.dashboard,
                topic=self.monitoring.topic,
            )
        CfnOutput(self, "AuditBucketName", value=self.audit.bucket.bucket_name)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)
