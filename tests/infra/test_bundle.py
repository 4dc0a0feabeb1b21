"""The Lambda bundle: built without Docker for the configured architecture, cached, and small enough."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stacks.bundling import (
    RUNTIME_PROVIDED_DISTRIBUTIONS,
    build_dependencies,
    build_lambda_asset,
    zipped_size,
)
from tests.infra.conftest import REPO_ROOT, Synthesized

pytestmark = pytest.mark.infra

MAX_ZIPPED_BYTES = 15 * 1024 * 1024
_NATIVE_SUFFIX = {"arm64": "aarch64", "x86_64": "x86_64"}


@pytest.mark.parametrize("architecture", ["arm64", "x86_64"])
def test_bundle_holds_the_package_and_native_wheels_for_its_architecture(architecture: str) -> None:
    asset = build_lambda_asset(architecture)
    assert (asset / "lambdas" / "__init__.py").is_file()
    assert not list(asset.rglob("__pycache__")), "byte code of this machine must not ship"
    native = list((asset / "pydantic_core").glob("_pydantic_core.*.so"))
    assert native, "pydantic_core's compiled module is missing"
    assert all(f"cpython-312-{_NATIVE_SUFFIX[architecture]}" in path.name for path in native), native
    shipped = {path.name.removesuffix(".dist-info").rsplit("-", 1)[0].lower().replace("-", "_")
               for path in asset.glob("*.dist-info")}  # fmt: skip
    assert not shipped & RUNTIME_PROVIDED_DISTRIBUTIONS, "boto3 and its closure come with the Lambda runtime"
    assert {"aws_lambda_powertools", "httpx", "pydantic"} <= shipped


@pytest.mark.parametrize("architecture", ["arm64", "x86_64"])
def test_zipped_bundle_fits_the_budget(architecture: str) -> None:
    size = zipped_size(build_lambda_asset(architecture))
    print(f"{architecture} bundle: {size / 1_000_000:.1f} MB zipped")
    assert size <= MAX_ZIPPED_BYTES


def test_dependencies_are_cached_by_requirements_and_architecture() -> None:
    requirements = REPO_ROOT / "requirements.txt"
    first = build_dependencies("arm64", requirements)
    started = time.monotonic()
    again = build_dependencies("arm64", requirements)
    assert again == first
    assert time.monotonic() - started < 1, "a cached build must not run pip"
    assert build_dependencies("x86_64", requirements) != first


def test_code_changes_reach_the_asset(tmp_path: Path) -> None:
    package = tmp_path / "lambdas"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "marker.py").write_text("VALUE = 1\n")
    asset = build_lambda_asset("arm64", package=package, asset=tmp_path / "asset")
    assert (asset / "lambdas" / "marker.py").read_text() == "VALUE = 1\n"
    (package / "marker.py").unlink()
    asset = build_lambda_asset("arm64", package=package, asset=tmp_path / "asset")
    assert not (asset / "lambdas" / "marker.py").exists(), "a deleted module must leave the asset"


def test_architectures_produce_different_assets(staging: Synthesized, dev: Synthesized) -> None:
    assert staging.settings.lambda_architecture != dev.settings.lambda_architecture

    def code_keys(synthesized: Synthesized) -> set[str]:
        functions = synthesized.resources("provisioning", "AWS::Lambda::Function")
        return {function["Properties"]["Code"]["S3Key"] for function in functions.values()}

    assert len(code_keys(staging)) == 1, "every function shares one bundle"
    assert code_keys(staging) != code_keys(dev)
