"""moto in server mode, and the AWS resources the provisioning functions use, created in it."""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3

from lambdas.domain.settings import MAX_RECEIVE_COUNT
from local.processes import free_port, running_pid, start_background, wait_until_healthy

MOTO_PROCESS = "moto"
LOCAL_REGION = "ap-northeast-1"
# moto accepts any credentials; fixed dummy ones keep boto3 away from a developer's real profile.
LOCAL_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": LOCAL_REGION,
    "AWS_REGION": LOCAL_REGION,
}
# As the CDK stack sets it (six times the worker's 60 s timeout), so that a message nobody deletes or
# delays comes back locally when it would in AWS.
VISIBILITY_TIMEOUT_SECONDS = 360
REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


def ensure_moto_server(state_dir: Path) -> str:
    """Start moto's server unless ours is running; returns its endpoint URL."""
    endpoint_file = state_dir / "moto.endpoint"
    if running_pid(MOTO_PROCESS, state_dir) and endpoint_file.exists():
        return endpoint_file.read_text().strip()
    port = free_port()
    # local.moto_server: moto's own server, made to refuse message bodies as SQS does.
    command = [sys.executable, "-m", "local.moto_server", "-H", "127.0.0.1", "-p", str(port)]
    start_background(MOTO_PROCESS, command, state_dir, env={"PYTHONPATH": str(REPOSITORY_ROOT)})
    endpoint = f"http://127.0.0.1:{port}"
    wait_until_healthy(f"{endpoint}/moto-api/", 30, MOTO_PROCESS, state_dir)
    endpoint_file.write_text(endpoint)
    return endpoint


def create_state_table(dynamodb, table_name: str) -> None:
    """A table shaped as the state table of the CDK stack: records by `pk`, an index by status."""
    dynamodb.create_table(
        TableName=table_name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "status", "AttributeType": "S"},
            {"AttributeName": "updated_at", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_status",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "updated_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


@dataclass(frozen=True)
class ProvisioningResources:
    queue_url: str
    dead_letter_queue_url: str
    state_table_name: str
    webhook_token_secret_id: str
    kintone_api_token_secret_id: str
    litellm_master_key_secret_id: str
    cybozu_user_api_token_secret_id: str
    webhook_token: str
    alert_token_secret_id: str
    alert_token: str


def local_client(service: str, endpoint: str):
    """A boto3 client for moto's server, with moto's dummy credentials."""
    return boto3.client(service, endpoint_url=endpoint, region_name=LOCAL_REGION, **_credentials())


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": LOCAL_AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": LOCAL_AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
    }


def _put_secret(client, name: str, value: str) -> str:
    try:
        return client.create_secret(Name=name, SecretString=value)["ARN"]
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=value)
        return client.describe_secret(SecretId=name)["ARN"]


def create_provisioning_resources(
    endpoint: str,
    namespace: str,
    kintone_api_token: str,
    litellm_master_key: str,
    cybozu_user_api_token: str,
    webhook_token: str | None = None,
    alert_token: str | None = None,
) -> ProvisioningResources:
    """Queue, DLQ, state table and secrets as the CDK stack defines them. Safe to repeat."""
    sqs = local_client("sqs", endpoint)
    dead_letter_queue_url = sqs.create_queue(
        QueueName=f"{namespace}-dlq.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    dead_letter_arn = sqs.get_queue_attributes(QueueUrl=dead_letter_queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    queue_attributes = {
        "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
        ),
    }
    try:
        queue_url = sqs.create_queue(
            QueueName=f"{namespace}-work.fifo", Attributes={"FifoQueue": "true", **queue_attributes}
        )["QueueUrl"]
    except sqs.exceptions.QueueNameExists:  # made by an earlier run with other attributes
        queue_url = sqs.get_queue_url(QueueName=f"{namespace}-work.fifo")["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=queue_attributes)

    dynamodb = local_client("dynamodb", endpoint)
    table_name = f"{namespace}-state"
    # An earlier run of the same namespace created the table already.
    with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):
        create_state_table(dynamodb, table_name)

    secretsmanager = local_client("secretsmanager", endpoint)
    webhook_token = webhook_token or secrets.token_urlsafe(32)
    alert_token = alert_token or secrets.token_urlsafe(32)
    return ProvisioningResources(
        queue_url=queue_url,
        dead_letter_queue_url=dead_letter_queue_url,
        state_table_name=table_name,
        webhook_token_secret_id=_put_secret(secretsmanager, f"{namespace}/webhook-token", webhook_token),
        kintone_api_token_secret_id=_put_secret(
            secretsmanager, f"{namespace}/kintone-api-token", kintone_api_token
        ),
        litellm_master_key_secret_id=_put_secret(
            secretsmanager, f"{namespace}/litellm-master-key", litellm_master_key
        ),
        cybozu_user_api_token_secret_id=_put_secret(
            secretsmanager, f"{namespace}/cybozu-user-api-token", cybozu_user_api_token
        ),
        webhook_token=webhook_token,
        alert_token_secret_id=_put_secret(secretsmanager, f"{namespace}/alert-token", alert_token),
        alert_token=alert_token,
    )
