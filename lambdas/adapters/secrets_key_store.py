"""Keys kept in AWS Secrets Manager, one secret per kintone record.

The secret is named after the record and created before the LiteLLM key, so it is the single
source of the key's value: a retry finds it and reuses the value instead of minting a second key.
Each call is a CloudTrail management event; names, description and tags lead an auditor to the record.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from lambdas.domain.ports import RecordRef, SecretLabels, StoredKey, TransientError

_THROTTLING_CODES = {
    "ThrottlingException",
    "TooManyRequestsException",
    "InternalServiceError",
    "ServiceUnavailable",
}
_TAG_VALUE_FORBIDDEN = re.compile(r"[^\w .:/=+\-@]", re.UNICODE)


def new_api_key() -> str:
    return "sk-" + secrets.token_urlsafe(32)


def _tag_value(value: str) -> str:
    return _TAG_VALUE_FORBIDDEN.sub("_", value)[:256] or "-"


class SecretsManagerKeyStore:
    def __init__(
        self,
        client_for: Callable[[str], Any],
        prefix: str,
        kms_key_id: str,
        recovery_window_days: int,
    ) -> None:
        """`client_for(requester)` returns a Secrets Manager client acting for that kintone user."""
        self._client_for = client_for
        self._prefix = prefix
        self._kms_key_id = kms_key_id
        self._recovery_window_days = recovery_window_days

    def secret_name(self, ref: RecordRef) -> str:
        return f"{self._prefix}app-{ref.app_id}/record-{ref.record_id}"

    def get_or_create(self, ref: RecordRef, labels: SecretLabels) -> StoredKey:
        client = self._client_for(labels.requested_by)
        name = self.secret_name(ref)
        request: dict[str, Any] = {
            "Name": name,
            "Description": (
                f"LiteLLM key {labels.key_alias} for kintone app {ref.app_id} record {ref.record_id}, "
                f"requested by {labels.requested_by or 'unknown'}: {labels.record_url}"
            )[:2048],
            "SecretString": json.dumps({"api_key": new_api_key()}),
            "Tags": [
                {"Key": "kintone:app", "Value": ref.app_id},
                {"Key": "kintone:record", "Value": ref.record_id},
                {"Key": "kintone:requested-by", "Value": _tag_value(labels.requested_by)},
                {"Key": "litellm:team", "Value": _tag_value(labels.team)},
                {"Key": "litellm:key-alias", "Value": _tag_value(labels.key_alias)},
            ],
        }
        if self._kms_key_id:
            request["KmsKeyId"] = self._kms_key_id
        try:
            created = _call(client.create_secret, **request)
            return StoredKey(
                secret_id=created["ARN"], api_key=json.loads(request["SecretString"])["api_key"], created=True
            )
        except ClientError as error:
            # The name is taken, by a live secret or (AWS: InvalidRequest; moto: ResourceExists) by one
            # scheduled for deletion.
            if error.response["Error"]["Code"] not in ("ResourceExistsException", "InvalidRequestException"):
                raise
        try:
            return self._existing(client, name)
        except ClientError as error:
            if error.response["Error"]["Code"] != "InvalidRequestException":
                raise
        # A revoked record asked for a key again: restore the secret but never reuse its value.
        _call(client.restore_secret, SecretId=name)
        _call(client.put_secret_value, SecretId=name, SecretString=json.dumps({"api_key": new_api_key()}))
        return self._existing(client, name, created=True)

    def _existing(self, client: Any, name: str, *, created: bool = False) -> StoredKey:
        value = _call(client.get_secret_value, SecretId=name)
        return StoredKey(
            secret_id=value["ARN"], api_key=json.loads(value["SecretString"])["api_key"], created=created
        )

    def current_key(self, ref: RecordRef) -> str | None:
        client = self._client_for("")
        try:
            value = _call(client.get_secret_value, SecretId=self.secret_name(ref))
        except ClientError as error:
            if error.response["Error"]["Code"] in ("ResourceNotFoundException", "InvalidRequestException"):
                return None
            raise
        return json.loads(value["SecretString"])["api_key"]

    def schedule_deletion(self, ref: RecordRef) -> None:
        client = self._client_for("")
        try:
            _call(
                client.delete_secret,
                SecretId=self.secret_name(ref),
                RecoveryWindowInDays=self._recovery_window_days,
            )
        except ClientError as error:
            code = error.response["Error"]["Code"]
            # Not found, or already scheduled for deletion: the goal is met.
            if code not in ("ResourceNotFoundException", "InvalidRequestException"):
                raise


def _call(operation: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return operation(**kwargs)
    except ClientError as error:
        if error.response["Error"]["Code"] in _THROTTLING_CODES:
            raise TransientError(
                f"Secrets Manager {operation.__name__}: {error.response['Error']['Code']}"
            ) from None
        raise
