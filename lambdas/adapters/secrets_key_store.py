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

from lambdas.domain.ports import RecordRef, SecretLabels, SecretVersions, StoredKey, TransientError

_THROTTLING_CODES = {
    "ThrottlingException",
    "TooManyRequestsException",
    "InternalServiceError",
    "ServiceUnavailable",
}
# Named explicitly on reads: AWS defaults to it, but moto keeps answering the first version after a
# rotation moved the stage.
CURRENT = "AWSCURRENT"
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
        rotator_function_arn: str = "",
        rotation_days: int = 30,
    ) -> None:
        """`client_for(requester)` returns a Secrets Manager client acting for that kintone user.

        With `rotator_function_arn`, each new key secret gets a rotation schedule of `rotation_days`.
        """
        self._client_for = client_for
        self._prefix = prefix
        self._kms_key_id = kms_key_id
        self._recovery_window_days = recovery_window_days
        self._rotator_function_arn = rotator_function_arn
        self._rotation_days = rotation_days
        self._name_pattern = re.compile(rf"^{re.escape(prefix)}app-([1-9][0-9]*)/record-([1-9][0-9]*)$")

    def secret_name(self, ref: RecordRef) -> str:
        return f"{self._prefix}app-{ref.app_id}/record-{ref.record_id}"

    def get_or_create(self, ref: RecordRef, labels: SecretLabels) -> StoredKey:
        client = self._client_for(labels.requested_by)
        name = self.secret_name(ref)
        api_key = new_api_key()
        request: dict[str, Any] = {
            "Name": name,
            "Description": (
                f"LiteLLM key {labels.key_alias} for kintone app {ref.app_id} record {ref.record_id}, "
                f"requested by {labels.requested_by or 'unknown'}: {labels.record_url}"
            )[:2048],
            "SecretString": _secret_string(api_key),
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
        except ClientError as error:
            # The name is taken, by a live secret or (AWS: InvalidRequest; moto: ResourceExists) by one
            # scheduled for deletion.
            if error.response["Error"]["Code"] not in ("ResourceExistsException", "InvalidRequestException"):
                raise
        else:
            return StoredKey(secret_id=created["ARN"], api_key=api_key, created=True)
        try:
            stored = self._existing(client, name)
        except ClientError as error:
            if error.response["Error"]["Code"] != "InvalidRequestException":
                raise
            # A revoked record asked for a key again.
            _call(client.restore_secret, SecretId=name)
            stored = self._existing(client, name)
        if not stored.api_key:
            # The value was voided at revoke: a revoked key's value is never used again, even when a
            # crash came between restoring the secret and giving it a new value.
            _call(client.put_secret_value, SecretId=name, SecretString=_secret_string(new_api_key()))
            stored = self._existing(client, name, created=True)
        return stored

    def ensure_rotation(self, ref: RecordRef) -> None:
        """Give the key's secret its rotation schedule, unless it has one (or no rotator is set).

        Turning rotation on makes Secrets Manager run testSecret with a token of no version, which
        the rotator passes without reading the state; the worker calls this before storing the
        issued state, so a throttled call here is retried with the record.
        """
        if not self._rotator_function_arn:
            return  # locally: moto cannot run the rotator, rotations are started by the local runtime
        client = self._client_for("")
        secret_id = self.secret_name(ref)
        if _call(client.describe_secret, SecretId=secret_id).get("RotationEnabled"):
            return
        self._turn_rotation_on(client, secret_id, immediately=False)

    def _turn_rotation_on(self, client: Any, secret_id: str, *, immediately: bool) -> None:
        _call(
            client.rotate_secret,
            SecretId=secret_id,
            RotationLambdaARN=self._rotator_function_arn,
            RotationRules={"AutomaticallyAfterDays": self._rotation_days},
            RotateImmediately=immediately,
        )

    def _existing(self, client: Any, name: str, *, created: bool = False) -> StoredKey:
        value = _call(client.get_secret_value, SecretId=name, VersionStage=CURRENT)
        return StoredKey(secret_id=value["ARN"], api_key=_api_key_of(value), created=created)

    def schedule_deletion(self, ref: RecordRef, actor: str = "") -> None:
        """Void the value, then schedule the secret's deletion (recovery window); `actor` is the
        kintone user who revoked, named in CloudTrail when known."""
        client = self._client_for(actor)
        try:
            _call(
                client.put_secret_value,
                SecretId=self.secret_name(ref),
                SecretString=_secret_string(""),  # voided: never to be used again
            )
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

    # -- rotation --------------------------------------------------------------------------------

    def request_rotation(self, ref: RecordRef) -> None:
        """Secrets Manager then invokes the rotator for the four steps. A secret whose rotation was
        never turned on (its set-up failed) gets it now, starting at once."""
        client = self._client_for("")
        secret_id = self.secret_name(ref)
        described = _call(client.describe_secret, SecretId=secret_id)
        if not described.get("RotationEnabled"):
            if not self._rotator_function_arn:
                raise RuntimeError("no rotator is configured (ROTATOR_FUNCTION_ARN)")
            self._turn_rotation_on(client, secret_id, immediately=True)
            return
        try:
            _call(client.rotate_secret, SecretId=secret_id)
        except ClientError as error:
            # "A previous rotation isn't complete": that one goes on, which is what was asked. Any
            # other refusal is real and must not read as a started rotation.
            if error.response["Error"]["Code"] != "InvalidRequestException" or not _rotation_under_way(
                described
            ):
                raise

    def versions(self, secret_id: str) -> SecretVersions:
        described = _call(self._client_for("").describe_secret, SecretId=secret_id)
        match = self._name_pattern.match(described["Name"])
        if match is None:
            raise ValueError("not a key secret of this deployment")
        return SecretVersions(
            ref=RecordRef(app_id=match[1], record_id=match[2]),
            scheduled_for_deletion="DeletedDate" in described,
            stages_by_version={
                version: tuple(stages) for version, stages in described.get("VersionIdsToStages", {}).items()
            },
        )

    def value_of(self, secret_id: str, version_id: str) -> str | None:
        try:
            value = _call(self._client_for("").get_secret_value, SecretId=secret_id, VersionId=version_id)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise
        return _api_key_of(value)

    def create_pending(self, secret_id: str, version_id: str) -> None:
        if self.value_of(secret_id, version_id) is not None:
            return  # a repeated createSecret
        _call(
            self._client_for("").put_secret_value,
            SecretId=secret_id,
            ClientRequestToken=version_id,
            SecretString=_secret_string(new_api_key()),
            VersionStages=["AWSPENDING"],
        )

    def promote(self, secret_id: str, version_id: str, current_version_id: str) -> None:
        client = self._client_for("")
        _call(
            client.update_secret_version_stage,
            SecretId=secret_id,
            VersionStage="AWSCURRENT",
            MoveToVersionId=version_id,
            RemoveFromVersionId=current_version_id,
        )
        _call(
            client.update_secret_version_stage,
            SecretId=secret_id,
            VersionStage="AWSPENDING",
            RemoveFromVersionId=version_id,
        )


def _rotation_under_way(described: dict[str, Any]) -> bool:
    """A version staged AWSPENDING but not AWSCURRENT: a rotation started and not finished."""
    return any(
        "AWSPENDING" in stages and CURRENT not in stages
        for stages in described.get("VersionIdsToStages", {}).values()
    )


def _secret_string(api_key: str) -> str:
    return json.dumps({"api_key": api_key})


def _api_key_of(secret_value: dict[str, Any]) -> str:
    """The key in a GetSecretValue answer (empty once voided by a revoke)."""
    return json.loads(secret_value["SecretString"])["api_key"]


def _call(operation: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return operation(**kwargs)
    except ClientError as error:
        if error.response["Error"]["Code"] in _THROTTLING_CODES:
            raise TransientError(
                f"Secrets Manager {operation.__name__}: {error.response['Error']['Code']}"
            ) from None
        raise
