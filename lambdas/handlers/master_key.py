"""CloudFormation custom resource: makes the LiteLLM master key secret hold an `sk-` key.

LiteLLM requires its master key to start with `sk-`, which Secrets Manager's generator cannot
produce. On create (and update) this draws 64 random characters from Secrets Manager and stores
`sk-` + them, unless the secret already holds an `sk-` key, so a retried or repeated deploy keeps
the running gateway's key. The value never leaves Secrets Manager through the template, the
response or a log line: the response carries only the secret's ARN.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Literal

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from lambdas.adapters.observability import logger

MASTER_KEY_PREFIX = "sk-"
RANDOM_LENGTH = 64
RESPONSE_TIMEOUT_SECONDS = 10


class ResourceProperties(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    SecretArn: str


class CustomResourceEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    RequestType: Literal["Create", "Update", "Delete"]
    ResponseURL: str
    StackId: str
    RequestId: str
    LogicalResourceId: str
    ResourceProperties: ResourceProperties


def ensure_prefixed_key(client, secret_arn: str) -> bool:
    """Store a fresh `sk-` key unless the secret holds one; True when a key was stored."""
    current = client.get_secret_value(SecretId=secret_arn)["SecretString"]
    if current.startswith(MASTER_KEY_PREFIX):
        return False
    random_part = client.get_random_password(
        PasswordLength=RANDOM_LENGTH, ExcludePunctuation=True, IncludeSpace=False
    )["RandomPassword"]
    client.put_secret_value(SecretId=secret_arn, SecretString=MASTER_KEY_PREFIX + random_part)
    return True


def send_response(event: CustomResourceEvent, status: Literal["SUCCESS", "FAILED"], reason: str) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason,
            "PhysicalResourceId": event.ResourceProperties.SecretArn,
            "StackId": event.StackId,
            "RequestId": event.RequestId,
            "LogicalResourceId": event.LogicalResourceId,
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - CloudFormation's pre-signed https S3 URL
        event.ResponseURL, data=body, method="PUT", headers={"Content-Type": ""}
    )
    with urllib.request.urlopen(request, timeout=RESPONSE_TIMEOUT_SECONDS):  # noqa: S310
        pass


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> None:
    resource = CustomResourceEvent.model_validate(event)
    if resource.RequestType == "Delete":
        send_response(resource, "SUCCESS", "nothing to do: the secret's own removal policy applies")
        return
    try:
        stored = ensure_prefixed_key(boto3.client("secretsmanager"), resource.ResourceProperties.SecretArn)
    except Exception as error:  # noqa: BLE001 - any failure must reach CloudFormation, or the stack
        # waits an hour for the response; the reason names the error's type only, never a value.
        logger.exception("master key not stored")
        send_response(resource, "FAILED", f"master key not stored: {type(error).__name__}")
        return
    logger.info("master key checked", extra={"stored_new_key": stored})
    send_response(resource, "SUCCESS", "stored a new sk- key" if stored else "kept the existing sk- key")
