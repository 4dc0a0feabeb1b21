"""Synthesizes each environment once per test session, as `cdk synth -c env=NAME` would, offline.

The context is cdk.json's plus the committed cdk.context.json (availability zones), the Lambda
asset comes from the real bundler (cached under .build/), and cdk-nag runs as in every synth.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_NODE = REPO_ROOT / ".local" / "cdk-cli" / "node_modules" / ".bin" / "node"
# jsii runs the CDK in Node: the project's Node 22 (scripts/install-cdk-cli.sh) when installed, as
# the CLI does; only jsii is pointed at it, other tests keep the machine's PATH.
if LOCAL_NODE.exists():
    os.environ.setdefault("JSII_NODE", str(LOCAL_NODE))

from aws_cdk import App  # noqa: E402 - after JSII_NODE is set: importing starts the jsii Node process
from aws_cdk.assertions import Template  # noqa: E402

from stacks.bundling import build_lambda_asset  # noqa: E402
from stacks.config import EnvironmentSettings, load_environment_settings  # noqa: E402
from stacks.platform import Platform, build_platform  # noqa: E402

ENVIRONMENTS = ("dev", "staging", "production")
# A variant no committed environment uses: the pipeline pointed at an existing LiteLLM in an existing VPC.
EXISTING_GATEWAY = "existing-gateway"


def cdk_context() -> dict[str, Any]:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    context.update(json.loads((REPO_ROOT / "cdk.context.json").read_text()))
    # The CLI asks for construct paths in template metadata by default; the tests find resources by them.
    context["aws:cdk:enable-path-metadata"] = True
    return context


def existing_gateway_settings() -> EnvironmentSettings:
    environments = dict(cdk_context()["environments"])
    production = environments["production"]
    environments[EXISTING_GATEWAY] = {
        **environments["dev"],
        "account": production["account"],
        "network": production["network"],
        "gateway": {"create": False, "existing_url": "https://llm-gateway.internal.example.co.jp"},
    }
    return load_environment_settings(environments, EXISTING_GATEWAY)


def key_secrets_arn(settings: EnvironmentSettings) -> str:
    """The ARN pattern of the issued keys' secrets, as rendered for an explicit account and region."""
    location = f"{settings.region}:{settings.account}"
    return f"arn:aws:secretsmanager:{location}:secret:{settings.key_secrets_prefix}*"


@dataclass
class Synthesized:
    settings: EnvironmentSettings
    platform: Platform
    outdir: Path
    templates: dict[str, dict[str, Any]]
    _assertions: dict[str, Template] = field(default_factory=dict)

    def template(self, role: str) -> Template:
        """The CDK assertions view of the stack `role` (gateway, provisioning or operations)."""
        if role not in self._assertions:
            self._assertions[role] = Template.from_json(self.templates[role])
        return self._assertions[role]

    def resources(self, role: str, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.templates[role]["Resources"].items()
            if resource["Type"] == resource_type
        }

    def all_resources(self, resource_type: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for role in self.templates:
            for logical_id, resource in self.resources(role, resource_type).items():
                yield role, logical_id, resource

    def logical_id(self, role: str, resource_type: str, path_pattern: str) -> str:
        """The logical id of the one resource of `resource_type` whose construct path matches."""
        matches = [
            logical_id
            for logical_id, resource in self.resources(role, resource_type).items()
            if re.search(path_pattern, resource.get("Metadata", {}).get("aws:cdk:path", ""))
        ]
        assert len(matches) == 1, f"{path_pattern!r} matched {matches}"
        return matches[0]


def synthesize(settings: EnvironmentSettings, outdir: Path) -> Synthesized:
    app = App(context=cdk_context(), outdir=str(outdir))
    platform = build_platform(app, settings, build_lambda_asset(settings.lambda_architecture))
    try:
        assembly = app.synth()
    except RuntimeError as error:
        report = outdir / "validation-report.json"
        details = report.read_text() if report.exists() else ""
        raise AssertionError(f"synth of '{settings.name}' failed: {error}\n{details}") from None
    templates = {}
    for role, stack in (("gateway", platform.gateway), ("provisioning", platform.provisioning),
                        ("operations", platform.operations)):  # fmt: skip
        if stack is not None:
            templates[role] = assembly.get_stack_by_name(stack.stack_name).template
    return Synthesized(settings=settings, platform=platform, outdir=outdir, templates=templates)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Synthesized]:
    cache: dict[str, Synthesized] = {}

    def get(name: str) -> Synthesized:
        if name not in cache:
            settings = (
                existing_gateway_settings()
                if name == EXISTING_GATEWAY
                else load_environment_settings(cdk_context()["environments"], name)
            )
            cache[name] = synthesize(settings, tmp_path_factory.mktemp(f"cdk-{name}"))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def staging(synthesized: Callable[[str], Synthesized]) -> Synthesized:
    return synthesized("staging")


@pytest.fixture(scope="session")
def production(synthesized: Callable[[str], Synthesized]) -> Synthesized:
    return synthesized("production")


@pytest.fixture(scope="session")
def dev(synthesized: Callable[[str], Synthesized]) -> Synthesized:
    return synthesized("dev")


@pytest.fixture(scope="session")
def existing_gateway(synthesized: Callable[[str], Synthesized]) -> Synthesized:
    return synthesized(EXISTING_GATEWAY)


@pytest.fixture(scope="session", params=ENVIRONMENTS)
def environment(request: pytest.FixtureRequest, synthesized: Callable[[str], Synthesized]) -> Synthesized:
    """Each committed environment in turn."""
    return synthesized(request.param)
