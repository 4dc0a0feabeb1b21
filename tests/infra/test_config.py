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
from aws_cdk import App

from stacks.config import ConfigError, load_environment_settings
from stacks.litellm_config import LiteLLMConfigError, load_litellm_config
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
        ("network.office_cidrs", ["0.0.0.0/0"], r"'network\.office_cidrs' is invalid: .*every address"),
        ("network.vpc_id", "vpc-0123456789abcdef0", r"'network' is invalid: .*one private subnet id per"),
        ("key_secret_prefix", "kintone-llm/staging/", r"must not cover the platform's own secrets"),
        ("key_secret_prefix", "no-trailing-slash", r"'key_secret_prefix' is invalid"),
        ("secret_recovery_window_days", 3, r"'secret_recovery_window_days' is invalid"),
        ("team_catalog.ops", {"models": []}, r"'team_catalog\.ops\.models' is invalid"),
        ("team_catalog.ops", {"models": ["claude-haiku"] * 400}, r"bytes of the functions' environment"),
    ],
)
def test_bad_setting_names_environment_and_key(path: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^environment 'staging': .*" + message):
        load_environment_settings(with_setting(path, value), "staging")


def test_missing_setting_is_named() -> None:
    changed = environments()
    del changed["production"]["kintone"]
    with pytest.raises(ConfigError, match=r"environment 'production': setting 'kintone' is missing"):
        load_environment_settings(changed, "production")


def test_litellm_config_has_no_literal_credentials(tmp_path: Path) -> None:
    config = tmp_path / "litellm-config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt\n"
        "    litellm_params: {model: openai/gpt-4o-mini, api_key: sk-live-value}\n"
        "general_settings: {master_key: os.environ/LITELLM_MASTER_KEY}\n"
    )
    with pytest.raises(
        LiteLLMConfigError, match=r"model_list\[0\]\.litellm_params\.api_key must name an environment"
    ):
        load_litellm_config(config)


def test_repository_litellm_config_is_usable() -> None:
    config = load_litellm_config()
    assert config.model_names
    assert config.bedrock_model_ids


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
