"""Per-environment settings: the committed environments are valid; mistakes name the env and the key."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cdk import App

from lambdas.domain.settings import Settings
from stacks.config import ConfigError, EnvironmentSettings, load_environment_settings
from stacks.litellm_config import LiteLLMConfigError, load_base_config, render_litellm_config
from stacks.platform import build_platform
from tests.infra.conftest import ENVIRONMENTS, REPO_ROOT, cdk_context

pytestmark = pytest.mark.infra


def environments() -> dict[str, Any]:
    return copy.deepcopy(cdk_context()["environments"])


def with_setting(path: str, value: object, environment: str = "staging") -> dict[str, Any]:
    """The committed environments with one setting of `environment` replaced (dotted path)."""
    changed = environments()
    node = changed[environment]
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return changed


@pytest.mark.parametrize("name", ENVIRONMENTS)
def test_committed_environments_are_valid(name: str) -> None:
    settings = load_environment_settings(environments(), name)
    assert settings.name == name
    assert settings.key_secrets_prefix == f"kintone-llm-keys/{name}/"


def test_unknown_environment_is_named_with_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown environment 'qa': cdk\.json defines dev, production, staging"
    ):
        load_environment_settings(environments(), "qa")


def test_missing_environment_choice_explains_how_to_choose() -> None:
    with pytest.raises(ConfigError, match=r"-c env=NAME"):
        load_environment_settings(environments(), None)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("gateway.imagee", "x", r"setting 'gateway\.imagee' is not a known setting"),
        ("gateway.image", "ghcr.io/berriai/litellm:main-latest", r"'gateway\.image'.*not a release"),
        (
            "gateway.image",
            "ghcr.io/berriai/litellm:v1.82.7",
            r"'gateway\.image'.*1\.82\.7 is a compromised release",
        ),
        ("gateway.image", "ghcr.io/berriai/litellm:main-v1.82.8", r"1\.82\.8 is a compromised release"),
        ("gateway.image", "ghcr.io/berriai/litellm:v1.107.0", r"1\.107\.0 is a release pulled"),
        ("gateway.create", False, r"'gateway'.*existing_url is required when create is false"),
        ("lambda_architecture", "sparc", r"'lambda_architecture' is invalid"),
        ("log_retention_days", 10, r"'log_retention_days' is invalid: .*supports only"),
        ("account", "12345", r"'account' is invalid"),
        ("alarm_email", "not-an-address", r"'alarm_email' is invalid"),
        ("kintone.app_id", 0, r"'kintone\.app_id' is invalid"),
        ("kintone.operators_group", "everyone", r"'kintone\.operators_group' is invalid: .*every key"),
        ("kintone.operators_group", "llm operators", r"'kintone\.operators_group' is invalid"),
        ("network.office_cidrs", ["0.0.0.0/0"], r"'network\.office_cidrs' is invalid: .*every address"),
        ("network.vpc_id", "vpc-0123456789abcdef0", r"'network' is invalid: .*one private subnet id per"),
        ("gateway.models", {"claude": "anthropic.claude-3-5-sonnet-20240620-v1:0"}, r"legacy or retired"),
        (
            "gateway.models",
            {"claude": "anthropic.claude-sonnet-4-6"},
            r"not a cross-region inference profile",
        ),
        ("gateway.models", {}, r"a created gateway needs models"),
        ("gateway.test_model", "claude-opus", r"test_model 'claude-opus' is not one of models"),
        ("gateway.keepalive_seconds", 600, r"keepalive_seconds must exceed load_balancer_idle_timeout"),
        ("gateway.spend_logs_retention", "forever", r"'gateway\.spend_logs_retention' is invalid"),
        ("gateway.ca_bundle_file", "gateway/ca/missing.pem", r"is not a file of the repository"),
        ("api.allowed_source_cidrs", ["0.0.0.0/0"], r"'api\.allowed_source_cidrs' is invalid"),
        ("api.waf", True, None),
        ("requires_source_allow_list", True, None),
        ("network.https_proxy", "ftp://proxy", r"'network\.https_proxy' is invalid"),
        ("key_secret_prefix", "no-trailing-slash", r"'key_secret_prefix' is invalid"),
        ("secret_recovery_window_days", 3, r"'secret_recovery_window_days' is invalid"),
        ("team_catalog.ops", {"models": []}, r"'team_catalog\.ops\.models' is invalid"),
        ("team_catalog.ops", {"models": ["claude-haiku"]}, r"'team_catalog\.ops\.members' is missing"),
        (
            "team_catalog.research.members",
            {"organizations": [], "groups": []},
            r"'team_catalog\.research\.members' is invalid: .*at least one organization or group",
        ),
        (
            "team_catalog.ops",
            {"models": ["claude-haiku"] * 400, "members": {"groups": ["ops"]}},
            r"bytes of the functions' environment",
        ),
        (
            "gateway.certificate_arn",
            "arn:aws:acm:us-east-1:222222222222:certificate/00000000-0000-0000-0000-000000000000",
            r"its own region and account \(ap-northeast-1/222222222222\)",
        ),
        (
            "gateway.certificate_arn",
            "arn:aws:acm:ap-northeast-1:999999999999:certificate/00000000-0000-0000-0000-000000000000",
            r"gateway\.certificate_arn is in ap-northeast-1/999999999999",
        ),
        ("rotation_grace_seconds", -1, r"'rotation_grace_seconds' is invalid"),
        ("rotation_grace_seconds", 31 * 86_400, r"'rotation_grace_seconds' is invalid"),
        ("reconcile_lookback_seconds", 30, r"'reconcile_lookback_seconds' is invalid"),
        ("reconcile_full_sweep_seconds", 86_401, r"'reconcile_full_sweep_seconds' is invalid"),
        ("max_revoke_share", 0, r"'max_revoke_share' is invalid"),
        ("max_revoke_share", 1.5, r"'max_revoke_share' is invalid"),
        ("mass_revoke_floor", -1, r"'mass_revoke_floor' is invalid"),
    ],
)
def test_bad_setting_names_environment_and_key(path: str, value: object, message: str | None) -> None:
    if message is None:  # valid alone; the next test checks it in combination
        load_environment_settings(with_setting(path, value), "staging")
        return
    with pytest.raises(ConfigError, match=r"^environment 'staging': .*" + message):
        load_environment_settings(with_setting(path, value), "staging")


def test_an_environment_requiring_the_allow_list_refuses_to_go_without_it() -> None:
    environments = with_setting("requires_source_allow_list", True)
    environments["staging"]["api"] = {"allowed_source_cidrs": []}
    with pytest.raises(ConfigError, match=r"requires api\.allowed_source_cidrs: cybozu\.com's outbound"):
        load_environment_settings(environments, "staging")
    environments["staging"]["api"] = {"waf": True}
    with pytest.raises(ConfigError, match=r"waf needs allowed_source_cidrs"):
        load_environment_settings(environments, "staging")


def test_production_requires_the_webhook_allow_list() -> None:
    production = load_environment_settings(cdk_context()["environments"], "production")
    assert production.requires_source_allow_list
    assert production.api.allowed_source_cidrs and production.api.waf


@pytest.mark.parametrize("name", ENVIRONMENTS)
def test_created_gateway_must_serve_https(name: str) -> None:
    """The functions send LiteLLM's master key to the gateway, in every environment."""
    changed = environments()
    del changed[name]["gateway"]["certificate_arn"]
    del changed[name]["gateway"]["domain_name"]
    with pytest.raises(
        ConfigError,
        match=rf"^environment '{name}': setting 'gateway' is invalid: a created gateway needs "
        r"certificate_arn and domain_name: it serves HTTPS only",
    ):
        load_environment_settings(changed, name)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://llm-gateway.internal.example.co.jp", r"must start with https://: .*master key"),
        ("HTTP://llm-gateway.internal.example.co.jp", r"must start with https://"),
        ("llm-gateway.internal.example.co.jp", r"must start with https://"),
        ("https://llm-gateway.internal.example.co.jp/v1", r"is not https://HOST\[:PORT\] \(no path\)"),
    ],
)
def test_existing_gateway_url_must_be_https(url: str, message: str) -> None:
    changed = with_setting("gateway", {"create": False, "existing_url": url}, "production")
    with pytest.raises(
        ConfigError,
        match=r"^environment 'production': setting 'gateway\.existing_url' is invalid: .*" + message,
    ):
        load_environment_settings(changed, "production")


def test_existing_gateway_takes_an_https_url_and_no_certificate() -> None:
    url = "https://llm-gateway.internal.example.co.jp:8443"
    settings = load_environment_settings(
        with_setting("gateway", {"create": False, "existing_url": url}, "production"), "production"
    )
    assert settings.gateway.existing_url == url
    changed = with_setting(
        "gateway",
        {**environments()["production"]["gateway"], "create": False, "existing_url": url},
        "production",
    )
    with pytest.raises(ConfigError, match=r"certificate_arn and domain_name apply only when create is true"):
        load_environment_settings(changed, "production")


# Settings the functions read that each environment may set: same name, default and bounds as the
# functions' own settings model (lambdas/domain/settings.py).
FUNCTION_TUNABLES = (
    "rotation_grace_seconds",
    "reconcile_lookback_seconds",
    "reconcile_full_sweep_seconds",
    "max_revoke_share",
    "mass_revoke_floor",
)


@pytest.mark.parametrize("field", FUNCTION_TUNABLES)
def test_function_settings_keep_the_functions_defaults_and_bounds(field: str) -> None:
    ours = EnvironmentSettings.model_fields[field]
    theirs = Settings.model_fields[field]
    assert ours.annotation == theirs.annotation
    assert ours.default == theirs.default
    assert sorted(map(repr, ours.metadata)) == sorted(map(repr, theirs.metadata))


def test_function_settings_are_set_per_environment() -> None:
    values = {
        "rotation_grace_seconds": 3600,
        "reconcile_lookback_seconds": 300,
        "reconcile_full_sweep_seconds": 0,
        "max_revoke_share": 0.5,
        "mass_revoke_floor": 10,
    }
    changed = environments()
    changed["staging"].update(values)
    settings = load_environment_settings(changed, "staging")
    assert {field: getattr(settings, field) for field in values} == values


def test_missing_setting_is_named() -> None:
    changed = environments()
    del changed["production"]["kintone"]
    with pytest.raises(ConfigError, match=r"environment 'production': setting 'kintone' is missing"):
        load_environment_settings(changed, "production")


def test_litellm_config_has_no_literal_credentials(tmp_path: Path) -> None:
    config = tmp_path / "litellm-config.yaml"
    config.write_text(
        "general_settings: {master_key: os.environ/LITELLM_MASTER_KEY}\n"
        "litellm_settings: {langfuse_secret_key: sk-live-value}\n"
    )
    with pytest.raises(
        LiteLLMConfigError, match=r"litellm_settings\.langfuse_secret_key must name an environment"
    ):
        load_base_config(config)


def test_models_come_from_cdk_json_not_the_shared_file(tmp_path: Path) -> None:
    config = tmp_path / "litellm-config.yaml"
    config.write_text("model_list: []\ngeneral_settings: {master_key: os.environ/LITELLM_MASTER_KEY}\n")
    with pytest.raises(LiteLLMConfigError, match=r"model_list comes from cdk\.json"):
        load_base_config(config)


@pytest.mark.parametrize("name", ENVIRONMENTS)
def test_rendered_litellm_config_serves_the_environments_models_with_metrics_and_retention(
    name: str, tmp_path: Path
) -> None:
    settings = load_environment_settings(cdk_context()["environments"], name)
    config = render_litellm_config(settings, out_dir=tmp_path)
    document = yaml.safe_load(config.path.read_text())
    assert {entry["model_name"]: entry["litellm_params"]["model"] for entry in document["model_list"]} == {
        model: f"bedrock/{model_id}" for model, model_id in settings.gateway.models.items()
    }
    assert all(model_id.startswith("jp.anthropic.") for model_id in config.bedrock_model_ids)
    assert document["litellm_settings"]["callbacks"] == ["prometheus"]
    assert document["general_settings"]["maximum_spend_logs_retention_period"] == (
        settings.gateway.spend_logs_retention
    )


def test_app_fails_synth_naming_the_unknown_environment() -> None:
    """What `cdk synth -c env=qa` shows: app.py exits non-zero with the message (no stack trace)."""
    context = {"environments": cdk_context()["environments"], "env": "qa"}
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO_ROOT,
        env={**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "error: unknown environment 'qa': cdk.json defines dev, production, staging" in result.stderr


def test_team_model_not_served_by_the_gateway_fails_synth() -> None:
    settings = load_environment_settings(with_setting("team_catalog.platform.models", ["gpt-9"]), "staging")
    with pytest.raises(
        ConfigError, match=r"'team_catalog\.platform\.models' names gpt-9, which litellm-config"
    ):
        build_platform(App(), settings, REPO_ROOT / ".build")
