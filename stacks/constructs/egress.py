"""How the provisioning functions leave the VPC: an HTTP proxy and a private CA, per environment.

With network.https_proxy, the functions get HTTPS_PROXY/NO_PROXY (httpx and boto3 honour them);
NO_PROXY keeps the internal ALB, link-local metadata and, with VPC endpoints, AWS APIs off the
proxy. With gateway.ca_bundle_file, a Lambda layer carries a CA bundle (the public CAs the functions
trust already plus the private CA) and SSL_CERT_FILE points httpx at it, so calls to an ALB whose
certificate comes from a private CA verify instead of failing.
"""

from __future__ import annotations

from pathlib import Path

import certifi
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.config import EnvironmentSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
CA_BUNDLE_PATH = "/opt/ca/bundle.pem"


def egress_environment(settings: EnvironmentSettings, gateway_host: str | None) -> dict[str, str]:
    environment: dict[str, str] = {}
    proxy = settings.network.https_proxy
    if proxy is not None:
        bypass = settings.proxy_bypass(*([gateway_host] if gateway_host else []))
        environment.update({"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "NO_PROXY": bypass})
    if settings.gateway.ca_bundle_file is not None:
        environment["SSL_CERT_FILE"] = CA_BUNDLE_PATH
    return environment


def ca_bundle_layer(
    scope: Construct, construct_id: str, settings: EnvironmentSettings
) -> lambda_.LayerVersion | None:
    """The public CAs plus the configured private CA, built under .build/ for the layer asset."""
    if settings.gateway.ca_bundle_file is None:
        return None
    private_ca = (REPO_ROOT / settings.gateway.ca_bundle_file).read_text(encoding="ascii")
    folder = REPO_ROOT / ".build" / "ca-bundle" / settings.name
    bundle = folder / "ca" / "bundle.pem"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_text(Path(certifi.where()).read_text(encoding="ascii") + "\n" + private_ca, encoding="ascii")
    return lambda_.LayerVersion(
        scope,
        construct_id,
        code=lambda_.Code.from_asset(str(folder)),
        description=f"{settings.resource_prefix}: public CAs and the private CA of the gateway's certificate",
    )
