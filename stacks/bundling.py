"""Builds the Lambda code asset without Docker: the `lambdas` package plus its pip-installed dependencies.

Dependencies are installed with pip for Lambda's platform (manylinux wheels for the chosen
architecture and CPython 3.12) and cached under `.build/` keyed by a hash of requirements.txt,
the architecture and this bundler's settings, so repeated synths reuse them without network.
The `lambdas` package is copied fresh on every build, so code changes always reach the asset.

Usable as a pre-build step: `python -m stacks.bundling --architecture arm64`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from stacks.config import Architecture

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = REPO_ROOT / ".build"
LAMBDA_PYTHON_VERSION = "3.12"

_PIP_PLATFORMS: dict[str, str] = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}

# The Lambda Python runtime ships boto3 and its dependency closure. Leaving them out keeps the
# bundle well under the 15 MB zipped budget (botocore alone is over 13 MB zipped), and the
# functions only call long-stable APIs (Secrets Manager, SQS, DynamoDB, STS).
RUNTIME_PROVIDED_DISTRIBUTIONS = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python_dateutil", "six", "urllib3"}
)
# Bump when the way dependencies are installed changes, so old caches are not reused.
_BUNDLER_VERSION = "2"
_IGNORED_NAMES = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


class BundlingError(RuntimeError):
    """pip could not install the Lambda dependencies."""


def _dependencies_key(requirements: Path, architecture: Architecture) -> str:
    digest = hashlib.sha256()
    digest.update(requirements.read_bytes())
    for part in (architecture, LAMBDA_PYTHON_VERSION, _PIP_PLATFORMS[architecture], _BUNDLER_VERSION):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:16]


def build_dependencies(architecture: Architecture, requirements: Path) -> Path:
    """Installed dependencies for `architecture`, built once per requirements hash and reused."""
    target = BUILD_ROOT / f"deps-{architecture}-{_dependencies_key(requirements, architecture)}"
    if target.is_dir():
        return target
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"deps-{architecture}-", dir=BUILD_ROOT))
    command = [
        sys.executable, "-m", "pip", "install",
        "--quiet", "--no-input", "--disable-pip-version-check",
        "--target", str(staging),
        "--platform", _PIP_PLATFORMS[architecture],
        "--implementation", "cp",
        "--python-version", LAMBDA_PYTHON_VERSION,
        "--only-binary=:all:",
        # Byte code compiled here would be for this interpreter, not Lambda's 3.12: useless weight.
        "--no-compile",
        "--requirement", str(requirements),
    ]  # fmt: skip
    # The command is built from constants and this repository's paths, never from outside input.
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BundlingError(
            f"pip could not install {requirements.name} for {architecture}:\n{result.stderr[-4000:]}"
        )
    _remove_distributions(staging, RUNTIME_PROVIDED_DISTRIBUTIONS)
    # Console scripts carry this machine's interpreter path in their shebang and are never run.
    shutil.rmtree(staging / "bin", ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:
        # Another build finished first with the same key; its result is identical.
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _remove_distributions(site: Path, names: frozenset[str]) -> None:
    """Delete installed distributions by the files their RECORD lists, then their metadata."""
    for dist_info in site.glob("*.dist-info"):
        name = dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0].lower().replace("-", "_")
        if name not in names:
            continue
        record = dist_info / "RECORD"
        for line in record.read_text().splitlines():
            relative = line.split(",", 1)[0]
            path = site / relative
            if relative and path.is_file():
                path.unlink()
        shutil.rmtree(dist_info)
    for directory in sorted(site.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def build_lambda_asset(
    architecture: Architecture,
    *,
    requirements: Path = REPO_ROOT / "requirements.txt",
    package: Path = REPO_ROOT / "lambdas",
    asset: Path | None = None,
) -> Path:
    """A directory holding the `lambdas` package and its dependencies, ready for `Code.from_asset`."""
    dependencies = build_dependencies(architecture, requirements)
    asset = asset or BUILD_ROOT / f"lambda-asset-{architecture}"
    asset.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"lambda-asset-{architecture}-", dir=asset.parent))
    # Hard links make the copy of the cached dependencies nearly free.
    shutil.copytree(dependencies, staging, dirs_exist_ok=True, copy_function=_link_or_copy)
    shutil.copytree(package, staging / package.name, ignore=_IGNORED_NAMES)
    previous = asset.with_name(asset.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    if asset.exists():
        asset.rename(previous)
    staging.rename(asset)
    shutil.rmtree(previous, ignore_errors=True)
    return asset


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def zipped_size(directory: Path) -> int:
    """Size in bytes of `directory` zipped with deflate, as Lambda receives it."""
    with tempfile.TemporaryFile() as archive:
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(directory.rglob("*")):
                if path.is_file():
                    bundle.write(path, path.relative_to(directory))
        return archive.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", choices=sorted(_PIP_PLATFORMS), required=True)
    arguments = parser.parse_args()
    asset = build_lambda_asset(arguments.architecture)
    print(f"{asset} ({zipped_size(asset) / 1_000_000:.1f} MB zipped)")


if __name__ == "__main__":
    main()
