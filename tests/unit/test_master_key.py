"""The master key custom resource: an `sk-` key in the secret, kept on repeat, never in the response."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from lambdas.handlers import master_key


@pytest.fixture
def secrets_client(monkeypatch: pytest.MonkeyPatch):
    # The integration tests point boto3 at the local moto server; these tests want moto in process.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="ap-northeast-1")


def event(request_type: str, secret_arn: str) -> dict:
    return {
        "RequestType": request_type,
        "ResponseURL": "https://cloudformation-response.example/presigned",
        "StackId": "arn:aws:cloudformation:ap-northeast-1:111111111111:stack/gw/1",
        "RequestId": "request-1",
        "LogicalResourceId": "MasterKeyValue",
        "ResourceProperties": {"ServiceToken": "arn:function", "SecretArn": secret_arn},
    }


def test_a_generated_secret_gets_an_sk_key_of_the_full_length(secrets_client) -> None:
    arn = secrets_client.create_secret(Name="master", SecretString="generated-without-prefix")["ARN"]
    assert master_key.ensure_prefixed_key(secrets_client, arn) is True
    value = secrets_client.get_secret_value(SecretId=arn)["SecretString"]
    assert value.startswith("sk-") and len(value) == 3 + master_key.RANDOM_LENGTH
    assert value[3:].isalnum()


def test_an_existing_sk_key_is_kept_so_a_retried_deploy_does_not_change_the_gateway_key(
    secrets_client,
) -> None:
    arn = secrets_client.create_secret(Name="master", SecretString="unprefixed")["ARN"]
    master_key.ensure_prefixed_key(secrets_client, arn)
    first = secrets_client.get_secret_value(SecretId=arn)["SecretString"]
    assert master_key.ensure_prefixed_key(secrets_client, arn) is False
    assert secrets_client.get_secret_value(SecretId=arn)["SecretString"] == first


def test_handler_answers_cloudformation_with_the_arn_and_never_the_value(
    secrets_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = secrets_client.create_secret(Name="master", SecretString="unprefixed")["ARN"]
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(master_key.boto3, "client", lambda service: secrets_client)
    monkeypatch.setattr(
        master_key, "send_response", lambda resource, status, reason: sent.append((status, reason))
    )
    master_key.handler.__wrapped__(event("Create", arn), None)
    value = secrets_client.get_secret_value(SecretId=arn)["SecretString"]
    assert sent == [("SUCCESS", "stored a new sk- key")]
    assert value not in json.dumps(sent)


def test_a_failure_is_reported_to_cloudformation_without_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, str]] = []

    class Failing:
        def get_secret_value(self, **_: object) -> dict:
            raise RuntimeError("boom")

    monkeypatch.setattr(master_key.boto3, "client", lambda service: Failing())
    monkeypatch.setattr(
        master_key, "send_response", lambda resource, status, reason: sent.append((status, reason))
    )
    master_key.handler.__wrapped__(event("Update", "arn:secret"), None)
    assert sent == [("FAILED", "master key not stored: RuntimeError")]
