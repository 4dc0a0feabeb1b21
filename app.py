#!/usr/bin/env python3
"""The CDK app: the whole platform for one environment, chosen with `-c env=NAME` (see cdk.json)."""

from __future__ import annotations

import sys

from aws_cdk import App

from stacks.bundling import BundlingError, build_lambda_asset
from stacks.config import (
    ENVIRONMENT_SELECTOR_CONTEXT_KEY,
    ENVIRONMENTS_CONTEXT_KEY,
    ConfigError,
    load_environment_settings,
)
from stacks.litellm_config import LiteLLMConfigError
from stacks.platform import build_platform


def main() -> None:
    app = App()
    try:
        settings = load_environment_settings(
            app.node.try_get_context(ENVIRONMENTS_CONTEXT_KEY),
            app.node.try_get_context(ENVIRONMENT_SELECTOR_CONTEXT_KEY),
        )
        build_platform(app, settings, build_lambda_asset(settings.lambda_architecture))
    except (ConfigError, LiteLLMConfigError, BundlingError) as error:
        sys.exit(f"error: {error}")
    app.synth()


if __name__ == "__main__":
    main()
