"""Settings of the provisioning functions, read from environment variables.

Secrets are never in the environment: only the ids of the Secrets Manager secrets that hold them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lambdas.domain.teams import TeamCatalog

# Attempts a work item gets before the worker gives up, and the work queue's maxReceiveCount: one
# number for the code (worker), the stack (stacks/constructs/queue.py) and the local queue.
MAX_RECEIVE_COUNT = 5


class SettingsError(RuntimeError):
    """A setting is missing or invalid; the message names the environment variable."""


class FieldCodes(BaseModel):
    """Field codes of the kintone app. Defaults match the documented app schema."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_name: str = "key_name"
    team: str = "team"
    models: str = "models"
    status: str = "status"
    api_key: str = "api_key"
    message: str = "message"
    # USER_SELECT naming who holds the key (a lead registering one for a teammate); a record without
    # it, or with it empty, belongs to its creator.
    owner: str = "owner"
    # Usage, written by the spend sync: NUMBER, NUMBER, DATETIME.
    spend: str = "spend"
    max_budget: str = "max_budget"
    budget_reset_at: str = "budget_reset_at"
    creator: str = "作成者"
    modifier: str = "更新者"
    updated_time: str = "更新日時"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kintone_base_url: str = Field(pattern=r"^https?://")
    kintone_app_id: str = Field(pattern=r"^[1-9][0-9]*$")
    kintone_api_token_secret_id: str = Field(min_length=1)
    litellm_base_url: str = Field(pattern=r"^https?://")
    litellm_master_key_secret_id: str = Field(min_length=1)
    webhook_token_secret_id: str = Field(min_length=1)
    # Budget alerts: the secret holding the token that ends LiteLLM's WEBHOOK_URL (none: route off),
    # and how long one alert per event and key is remembered.
    alert_token_secret_id: str = ""
    alert_repeat_after_seconds: int = Field(default=7 * 86_400, ge=3600, le=90 * 86_400)
    queue_url: str = ""
    # Worker: where a request rests after its last attempt, and the backoff between deliveries.
    dead_letter_queue_url: str = ""
    redelivery_base_seconds: int = Field(default=5, ge=1, le=900)
    redelivery_max_seconds: int = Field(default=120, ge=1, le=43_200)
    state_table_name: str = Field(min_length=1)
    key_secret_prefix: str = Field(default="kintone-llm-keys/", pattern=r"^[A-Za-z0-9/_+=.@-]+/$")
    key_secret_kms_key_id: str = ""
    key_alias_prefix: str = Field(default="kintone", pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")
    team_catalog: TeamCatalog
    field_codes: FieldCodes = FieldCodes()
    message_language: Literal["ja", "en"] = "ja"
    max_webhook_body_bytes: int = Field(default=1_048_576, ge=1024)
    http_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    secret_recovery_window_days: int = Field(default=7, ge=7, le=30)
    audit_role_arn: str = ""
    # Rotation: with a rotator function, every key secret gets a schedule of `rotation_days`.
    rotator_function_arn: str = ""
    rotation_days: int = Field(default=30, ge=1, le=365)
    rotation_grace_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)
    # Rotator: the model of its test request when the key may use it (the gateway's cheapest).
    rotation_test_model: str | None = None
    # Reconciler: how far before its last run it looks again (kintone times are to the minute),
    # how often it lists every record, and when it refuses to revoke at once.
    reconcile_lookback_seconds: int = Field(default=120, ge=60, le=86_400)
    reconcile_full_sweep_seconds: int = Field(default=3600, ge=0, le=86_400)
    max_revoke_share: float = Field(default=0.2, gt=0, le=1)
    mass_revoke_floor: int = Field(default=5, ge=0)
    # The directory (cybozu.com User API, on the kintone domain): a common-administration API token
    # with the Read scope, or a user's login name and password, each password or token in a secret.
    cybozu_user_api_token_secret_id: str = ""
    cybozu_user_api_login: str = ""
    cybozu_user_api_password_secret_id: str = ""

    @model_validator(mode="after")
    def _one_directory_credential(self) -> Settings:
        token = bool(self.cybozu_user_api_token_secret_id)
        password = bool(self.cybozu_user_api_login or self.cybozu_user_api_password_secret_id)
        if token == password:
            raise ValueError(
                "set CYBOZU_USER_API_TOKEN_SECRET_ID, or CYBOZU_USER_API_LOGIN with "
                "CYBOZU_USER_API_PASSWORD_SECRET_ID (one of the two)"
            )
        if password and not (self.cybozu_user_api_login and self.cybozu_user_api_password_secret_id):
            raise ValueError("CYBOZU_USER_API_LOGIN and CYBOZU_USER_API_PASSWORD_SECRET_ID go together")
        return self

    @field_validator("kintone_base_url", "litellm_base_url")
    @classmethod
    def _strip_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")


# Environment variable → settings field. Variables holding JSON are parsed before validation.
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "KINTONE_BASE_URL": "kintone_base_url",
    "KINTONE_APP_ID": "kintone_app_id",
    "KINTONE_API_TOKEN_SECRET_ID": "kintone_api_token_secret_id",
    "LITELLM_BASE_URL": "litellm_base_url",
    "LITELLM_MASTER_KEY_SECRET_ID": "litellm_master_key_secret_id",
    "WEBHOOK_TOKEN_SECRET_ID": "webhook_token_secret_id",
    "ALERT_TOKEN_SECRET_ID": "alert_token_secret_id",
    "ALERT_REPEAT_AFTER_SECONDS": "alert_repeat_after_seconds",
    "QUEUE_URL": "queue_url",
    "DEAD_LETTER_QUEUE_URL": "dead_letter_queue_url",
    "REDELIVERY_BASE_SECONDS": "redelivery_base_seconds",
    "REDELIVERY_MAX_SECONDS": "redelivery_max_seconds",
    "STATE_TABLE_NAME": "state_table_name",
    "KEY_SECRET_PREFIX": "key_secret_prefix",
    "KEY_SECRET_KMS_KEY_ID": "key_secret_kms_key_id",
    "KEY_ALIAS_PREFIX": "key_alias_prefix",
    "TEAM_CATALOG": "team_catalog",
    "FIELD_CODES": "field_codes",
    "MESSAGE_LANGUAGE": "message_language",
    "MAX_WEBHOOK_BODY_BYTES": "max_webhook_body_bytes",
    "HTTP_TIMEOUT_SECONDS": "http_timeout_seconds",
    "SECRET_RECOVERY_WINDOW_DAYS": "secret_recovery_window_days",
    "AUDIT_ROLE_ARN": "audit_role_arn",
    "ROTATOR_FUNCTION_ARN": "rotator_function_arn",
    "ROTATION_DAYS": "rotation_days",
    "ROTATION_GRACE_SECONDS": "rotation_grace_seconds",
    "ROTATION_TEST_MODEL": "rotation_test_model",
    "RECONCILE_LOOKBACK_SECONDS": "reconcile_lookback_seconds",
    "RECONCILE_FULL_SWEEP_SECONDS": "reconcile_full_sweep_seconds",
    "MAX_REVOKE_SHARE": "max_revoke_share",
    "MASS_REVOKE_FLOOR": "mass_revoke_floor",
    "CYBOZU_USER_API_TOKEN_SECRET_ID": "cybozu_user_api_token_secret_id",
    "CYBOZU_USER_API_LOGIN": "cybozu_user_api_login",
    "CYBOZU_USER_API_PASSWORD_SECRET_ID": "cybozu_user_api_password_secret_id",
}
_JSON_VARIABLES = {"TEAM_CATALOG", "FIELD_CODES"}
_FIELD_TO_VARIABLE = {field: variable for variable, field in ENVIRONMENT_VARIABLES.items()}


def settings_from_environment(environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for variable, field in ENVIRONMENT_VARIABLES.items():
        if variable not in environ:
            continue
        raw = environ[variable]
        if variable in _JSON_VARIABLES:
            try:
                values[field] = json.loads(raw)
            except json.JSONDecodeError as error:
                raise SettingsError(f"{variable} is not valid JSON: {error.msg}") from None
        else:
            values[field] = raw
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            if not problem["loc"]:  # a rule across settings names its variables itself
                problems.append(str(problem["msg"]).removeprefix("Value error, "))
                continue
            field = str(problem["loc"][0])
            variable = _FIELD_TO_VARIABLE.get(field, field)
            where = ".".join(str(part) for part in problem["loc"][1:])
            kind = "is missing" if problem["type"] == "missing" else f"is invalid: {problem['msg']}"
            problems.append(f"{variable}{'[' + where + ']' if where else ''} {kind}")
        raise SettingsError("; ".join(problems)) from None


@cache
def load_settings() -> Settings:
    """Settings of this process, read once (Lambda containers reuse them across invocations)."""
    return settings_from_environment()
