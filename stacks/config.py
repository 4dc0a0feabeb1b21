"""Per-environment settings of the platform, read from `cdk.json` context and validated here.

`cdk.json` holds one entry per environment under the context key `environments`; the deployer
picks one with `-c env=NAME`. Every problem is reported with the environment and the dotted path
of the setting, so a typo fails synth with a message that says where to look.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lambdas.domain.settings import FieldCodes
from lambdas.domain.teams import TeamCatalog

ENVIRONMENTS_CONTEXT_KEY = "environments"
ENVIRONMENT_SELECTOR_CONTEXT_KEY = "env"

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)  # fmt: skip

# LiteLLM releases that must never run: compromised on the registry, or pulled by the maintainers.
BLOCKED_LITELLM_VERSIONS = {
    "1.82.7": "a compromised release",
    "1.82.8": "a compromised release",
    "1.107.0": "a release pulled by its maintainers",
}

Architecture = Literal["arm64", "x86_64"]
LAMBDA_ENVIRONMENT_BUDGET_BYTES = 2500

# Bedrock model families past their end of life or marked legacy: new accounts cannot use them.
LEGACY_BEDROCK_MODELS = re.compile(r"anthropic\.claude-(v2|instant|3-|3-5-|3-7-|sonnet-4-2025|opus-4-2025)")
# Cross-region inference profiles start with a geography; newer models serve on-demand only through them.
INFERENCE_PROFILE = re.compile(
    r"^(us|us-gov|eu|apac|jp|au|ca|global)\.(?P<model>[a-z0-9-]+\.[A-Za-z0-9.:-]+)$"
)
# Where cybozu.com publishes the addresses its servers (webhooks, kintone.proxy) connect from.
CYBOZU_OUTBOUND_ADDRESSES_PAGE = (
    "https://jp.cybozu.help/general/ja/admin/list_security/list_access/outbound_ipaddress.html"
)


_REPOSITORY = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """The selected environment is unknown or one of its settings is invalid."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _cidr(value: str) -> str:
    network = ipaddress.ip_network(value, strict=True)
    if network.prefixlen == 0:
        raise ValueError(f"{value} opens the network to every address; name the office networks instead")
    return str(network)


class NetworkSettings(_Settings):
    """A new VPC, or an existing one (for example the VPC connected to the office) given by id."""

    vpc_id: str | None = Field(default=None, pattern=r"^vpc-[0-9a-f]{8,17}$")
    # With vpc_id: the private subnets the gateway and the functions run in, one per zone, in order.
    availability_zones: tuple[str, ...] = ()
    private_subnet_ids: tuple[str, ...] = ()
    private_subnet_route_table_ids: tuple[str, ...] = ()
    # With vpc_id and vpc_endpoints: the VPC's CIDR, which the endpoints admit HTTPS from.
    vpc_cidr: str | None = None
    # Without vpc_id: the VPC to create.
    new_vpc_cidr: str = "10.80.0.0/16"
    max_azs: int = Field(default=2, ge=2, le=3)
    nat_gateways: int = Field(default=1, ge=1, le=3)
    # Networks whose people and tools may reach the gateway (its API and admin UI) on the internal ALB.
    office_cidrs: tuple[str, ...] = ()
    # With vpc_id: the public addresses its traffic leaves by (for kintone's IP restriction), if known.
    egress_public_ips: tuple[str, ...] = ()
    # Interface endpoints (Secrets Manager, SQS, STS, CloudWatch Logs, Bedrock runtime) and gateway
    # endpoints (S3, DynamoDB) in the VPC, so AWS calls need no NAT or proxy.
    vpc_endpoints: bool = False
    # An HTTP proxy for everything leaving the VPC (functions and gateway tasks), e.g. http://proxy:3128.
    https_proxy: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(:[0-9]+)?/?$")
    # Hosts that bypass the proxy, added to the ones the platform always needs (see proxy_bypass()).
    no_proxy: tuple[str, ...] = ()

    @field_validator("egress_public_ips")
    @classmethod
    def _valid_ips(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(ipaddress.ip_address(value)) for value in values)

    @field_validator("new_vpc_cidr", "vpc_cidr")
    @classmethod
    def _valid_vpc_cidr(cls, value: str | None) -> str | None:
        return None if value is None else _cidr(value)

    @field_validator("office_cidrs")
    @classmethod
    def _valid_office_cidrs(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_cidr(value) for value in values)

    @field_validator("private_subnet_ids")
    @classmethod
    def _valid_subnet_ids(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if not re.fullmatch(r"subnet-[0-9a-f]{8,17}", value):
                raise ValueError(f"{value!r} is not a subnet id")
        return values

    @model_validator(mode="after")
    def _existing_vpc_is_complete(self) -> NetworkSettings:
        if self.vpc_id is None:
            if self.availability_zones or self.private_subnet_ids or self.private_subnet_route_table_ids:
                raise ValueError("availability_zones and private_subnet_* apply only with vpc_id")
            if self.egress_public_ips or self.vpc_cidr:
                raise ValueError("egress_public_ips and vpc_cidr apply only with vpc_id")
            return self
        if not self.private_subnet_ids or len(self.private_subnet_ids) != len(self.availability_zones):
            raise ValueError(
                "with vpc_id, give one private subnet id per availability zone, in the same order"
            )
        if self.vpc_endpoints and self.vpc_cidr is None:
            raise ValueError("with vpc_id, vpc_endpoints needs vpc_cidr (the endpoints admit HTTPS from it)")
        if self.private_subnet_route_table_ids and len(self.private_subnet_route_table_ids) != len(
            self.private_subnet_ids
        ):
            raise ValueError("private_subnet_route_table_ids must match private_subnet_ids one for one")
        return self

    @property
    def uses_existing_vpc(self) -> bool:
        return self.vpc_id is not None


class GatewaySettings(_Settings):
    """The LiteLLM gateway: created here, or an existing deployment reached by URL."""

    create: bool = True
    # The provisioning functions send LiteLLM's master key to this URL: HTTPS only.
    existing_url: str | None = None
    # Pinned by release tag; moving tags (latest, main-stable) would change the gateway under us.
    image: str = "ghcr.io/berriai/litellm:v1.108.7"
    cpu_architecture: Architecture = "x86_64"
    task_cpu: Literal[512, 1024, 2048, 4096] = 1024
    # LiteLLM's resident memory is about 750 MiB; leave headroom for request bursts.
    task_memory_mib: int = Field(default=2048, ge=1024, le=30720)
    min_tasks: int = Field(default=1, ge=1, le=20)
    max_tasks: int = Field(default=2, ge=1, le=20)
    database_min_acu: float = Field(default=0.5, ge=0.5, le=256)
    database_max_acu: float = Field(default=2, ge=1, le=256)
    database_readers: int = Field(default=0, ge=0, le=3)
    # HTTPS on the internal ALB (required with create): an ACM certificate for domain_name, which the
    # office DNS points at the ALB. There is no plain-HTTP listener: the master key travels over it.
    certificate_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/"
    )
    domain_name: str | None = Field(default=None, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9-]+)+$")
    # What the gateway serves: model name (what keys and the team catalog use) -> Bedrock model or
    # cross-region inference profile id. The task role may invoke exactly these.
    models: dict[str, str] = Field(default_factory=dict)
    # The cheapest model, for the rotator's test request when a key may use it.
    test_model: str | None = None
    # Non-streamed completions of long prompts can take minutes before the first byte.
    load_balancer_idle_timeout_seconds: int = Field(default=600, ge=60, le=4000)
    # LiteLLM (uvicorn) must keep idle connections open longer than the ALB, or the ALB reuses a
    # connection the task just closed and answers 502.
    keepalive_seconds: int = Field(default=630, ge=61, le=4100)
    # From task start to the first ALB health verdict: image pull, LiteLLM's import and its first
    # database migration on a cold Aurora (see docs/deployment.md for the measurement).
    health_check_grace_seconds: int = Field(default=300, ge=60, le=1800)
    # LiteLLM deletes older spend logs (general_settings.maximum_spend_logs_retention_period).
    spend_logs_retention: str = Field(default="90d", pattern=r"^[1-9][0-9]*d$")
    # The CloudWatch agent beside LiteLLM that ships its Prometheus metrics; pinned like LiteLLM.
    metrics_agent_image: str = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.300045.0b810"
    # A PEM file (relative to the repository) of the private CA that issued the ALB's certificate;
    # the functions then trust it in addition to the public CAs.
    ca_bundle_file: str | None = None

    @field_validator("models")
    @classmethod
    def _current_bedrock_models(cls, models: dict[str, str]) -> dict[str, str]:
        for name, model_id in models.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", name):
                raise ValueError(f"model name {name!r} must be lower-case letters, digits, '.', '_' or '-'")
            if LEGACY_BEDROCK_MODELS.search(model_id):
                raise ValueError(
                    f"{name}: {model_id} is a legacy or retired Bedrock model; use a current one"
                )
            if not INFERENCE_PROFILE.match(model_id):
                raise ValueError(
                    f"{name}: {model_id} is not a cross-region inference profile id (jp., apac., global.); "
                    "current models serve on-demand only through one"
                )
        return models

    @field_validator("image", "metrics_agent_image")
    @classmethod
    def _pinned_release(cls, image: str) -> str:
        match = re.fullmatch(r"[a-z0-9.-]+(?::[0-9]+)?(?:/[a-z0-9._-]+)+:(?P<tag>[A-Za-z0-9._-]+)", image)
        if match is None:
            raise ValueError("must be REGISTRY/REPOSITORY:TAG with an explicit release tag")
        version = re.search(r"(\d+\.\d+\.\d+)", match["tag"])
        if version is None:
            raise ValueError(f"tag {match['tag']!r} is not a release; pin a release tag such as v1.108.7")
        if version[1] in BLOCKED_LITELLM_VERSIONS:
            raise ValueError(f"LiteLLM {version[1]} is {BLOCKED_LITELLM_VERSIONS[version[1]]}; pin another")
        return image

    @field_validator("existing_url")
    @classmethod
    def _https_url(cls, url: str | None) -> str | None:
        if url is None:
            return url
        if not url.startswith("https://"):
            raise ValueError(
                f"{url!r} must start with https://: the provisioning functions send LiteLLM's master key "
                "to it, which must never travel in plain HTTP"
            )
        if not re.fullmatch(r"https://[^\s/:]+(:[0-9]+)?/?", url):
            raise ValueError(f"{url!r} is not https://HOST[:PORT] (no path)")
        return url

    @model_validator(mode="after")
    def _consistent(self) -> GatewaySettings:
        if self.create and self.existing_url:
            raise ValueError("existing_url applies only when create is false")
        if not self.create and not self.existing_url:
            raise ValueError("existing_url is required when create is false")
        if (self.certificate_arn is None) != (self.domain_name is None):
            raise ValueError("certificate_arn and domain_name go together")
        if self.create and self.certificate_arn is None:
            raise ValueError(
                "a created gateway needs certificate_arn and domain_name: it serves HTTPS only, because "
                "the provisioning functions send LiteLLM's master key to it"
            )
        if not self.create and self.certificate_arn is not None:
            raise ValueError("certificate_arn and domain_name apply only when create is true")
        if self.min_tasks > self.max_tasks:
            raise ValueError("min_tasks must not exceed max_tasks")
        if self.database_min_acu > self.database_max_acu:
            raise ValueError("database_min_acu must not exceed database_max_acu")
        if self.create and not self.models:
            raise ValueError("a created gateway needs models: model name -> Bedrock inference profile id")
        if not self.create and self.models:
            raise ValueError("models apply only when create is true (an existing gateway serves its own)")
        if self.test_model is not None and self.create and self.test_model not in self.models:
            raise ValueError(f"test_model {self.test_model!r} is not one of models")
        if self.keepalive_seconds <= self.load_balancer_idle_timeout_seconds:
            raise ValueError(
                "keepalive_seconds must exceed load_balancer_idle_timeout_seconds: the ALB must close idle "
                "connections before LiteLLM does, or clients get 502s"
            )
        if self.ca_bundle_file is not None and not (_REPOSITORY / self.ca_bundle_file).is_file():
            raise ValueError(f"ca_bundle_file {self.ca_bundle_file!r} is not a file of the repository")
        return self


class KintoneSettings(_Settings):
    domain: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9-]+)+$")
    app_id: int = Field(gt=0)
    field_codes: FieldCodes = FieldCodes()
    message_language: Literal["ja", "en"] = "ja"
    # The directory (cybozu.com User API) is read with a common-administration API token (Read scope)
    # kept in the cybozu-user-api secret; or, when this login name is set, with that user's password.
    user_api_login: str | None = Field(default=None, pattern=r"^\S{1,128}$")
    # The cybozu group (its code) that sees and edits every record and alone manages the app;
    # `python -m ops.kintone_app` writes it into the app's permissions.
    operators_group: str = Field(pattern=r"^\S{1,100}$")
    # REST requests the app may make a day (10,000 on the Standard course, 100,000 on Wide), and the
    # share of them at which the budget alarm fires.
    daily_request_budget: int = Field(default=10_000, ge=100)
    request_budget_alarm_share: float = Field(default=0.8, gt=0, le=1)

    @field_validator("operators_group")
    @classmethod
    def _not_everyone(cls, code: str) -> str:
        if code.lower() == "everyone":
            raise ValueError("'everyone' would let every user see every key; name the operators' own group")
        return code


class ApiSettings(_Settings):
    # kintone sends at most 60 webhooks a minute per domain; the limits leave room for bursts.
    throttle_rate_per_second: float = Field(default=5, gt=0, le=1000)
    throttle_burst: int = Field(default=20, ge=1, le=5000)
    max_webhook_body_bytes: int = Field(default=1_048_576, ge=1024, le=10_485_760)
    # Who may call the webhook endpoint (API Gateway resource policy on aws:SourceIp): cybozu.com's
    # outbound ranges, published at CYBOZU_OUTBOUND_ADDRESSES_PAGE. Empty: anyone with the URL token.
    allowed_source_cidrs: tuple[str, ...] = ()
    # A WAF web ACL on the stage as well: the same allow-list plus a rate limit, with WAF's metrics.
    waf: bool = False

    @field_validator("allowed_source_cidrs")
    @classmethod
    def _valid_source_cidrs(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_cidr(value) for value in values)

    @model_validator(mode="after")
    def _waf_needs_the_list(self) -> ApiSettings:
        if self.waf and not self.allowed_source_cidrs:
            raise ValueError("waf needs allowed_source_cidrs: the web ACL admits only those ranges")
        return self


class EnvironmentSettings(_Settings):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,19}$")
    account: str = Field(pattern=r"^\d{12}$")
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    network: NetworkSettings = NetworkSettings()
    # Required: a created gateway needs its certificate and name, an existing one its URL.
    gateway: GatewaySettings
    kintone: KintoneSettings
    team_catalog: TeamCatalog
    alarm_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    lambda_architecture: Architecture = "arm64"
    log_retention_days: int = 90
    # How often each issued key is replaced by the rotator (Secrets Manager rotation schedule).
    key_rotation_days: int = Field(default=90, ge=1, le=365)
    key_secret_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9/_+=.@-]+/$")
    # LiteLLM key aliases are <prefix>-<app>-<record> and unique per gateway: environments sharing
    # one gateway need different prefixes.
    key_alias_prefix: str = Field(default="kintone", pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")
    secret_recovery_window_days: int = Field(default=7, ge=7, le=30)
    # Every minute: a record whose webhook kintone dropped is keyed within 2 minutes, for one kintone
    # request a run (1,440 a day); see the README's request budget for the trade-off.
    reconcile_every_minutes: int = Field(default=1, ge=1, le=60)
    # How often the spend sync copies each key's spend into its record (EventBridge: at least 1 minute).
    spend_sync_minutes: int = Field(default=5, ge=1, le=60)
    # Defaults and bounds as in lambdas/domain/settings.py (tests/infra checks they stay equal).
    # Rotator: how long the replaced key keeps working after a rotation.
    rotation_grace_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)
    # Reconciler: how far before its last run it looks again (kintone times are to the minute), how
    # often it lists every record (0: every run), and when it refuses to revoke at once: more than
    # mass_revoke_floor keys and more than max_revoke_share of the issued keys.
    reconcile_lookback_seconds: int = Field(default=120, ge=60, le=86_400)
    reconcile_full_sweep_seconds: int = Field(default=3600, ge=0, le=86_400)
    max_revoke_share: float = Field(default=0.2, gt=0, le=1)
    mass_revoke_floor: int = Field(default=5, ge=0)
    worker_max_concurrency: int = Field(default=5, ge=2, le=100)
    http_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    api: ApiSettings = ApiSettings()
    oldest_message_alarm_seconds: int = Field(default=300, ge=60)
    audit_log_retention_days: int = Field(default=365, ge=90, le=3653)
    # Keep data stores (table, database, buckets) when the stack is deleted or they are replaced.
    retain_data: bool = True
    # Environments whose webhook endpoint must be limited to cybozu.com's addresses.
    requires_source_allow_list: bool = False
    # A team whose remaining budget falls below this share of its max_budget raises an alarm.
    team_budget_alarm_share: float = Field(default=0.1, gt=0, lt=1)
    # The gateway's failed requests above this share of all requests (5 minutes) raise an alarm.
    gateway_error_rate_alarm: float = Field(default=0.05, gt=0, le=1)

    @field_validator("log_retention_days")
    @classmethod
    def _supported_retention(cls, days: int) -> int:
        if days not in LOG_RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs supports only {', '.join(map(str, LOG_RETENTION_DAYS))} days")
        return days

    @model_validator(mode="after")
    def _fits_lambda_environment(self) -> EnvironmentSettings:
        # Lambda allows 4 KB of environment variables per function; the rest are ids and small values.
        size = len(self.team_catalog.model_dump_json()) + len(self.kintone.field_codes.model_dump_json())
        if size > LAMBDA_ENVIRONMENT_BUDGET_BYTES:
            raise ValueError(
                f"team_catalog and kintone.field_codes take {size} bytes of the functions' environment; "
                f"keep them under {LAMBDA_ENVIRONMENT_BUDGET_BYTES}"
            )
        return self

    @model_validator(mode="after")
    def _certificate_of_this_environment(self) -> EnvironmentSettings:
        arn = self.gateway.certificate_arn
        if arn is not None:
            _, _, _, region, account, _ = arn.split(":", 5)
            if (region, account) != (self.region, self.account):
                raise ValueError(
                    f"gateway.certificate_arn is in {region}/{account}; the ALB can use only a "
                    f"certificate of its own region and account ({self.region}/{self.account})"
                )
        return self

    @model_validator(mode="after")
    def _webhook_allow_list(self) -> EnvironmentSettings:
        if self.requires_source_allow_list and not self.api.allowed_source_cidrs:
            raise ValueError(
                f"environment '{self.name}' requires api.allowed_source_cidrs: cybozu.com's outbound ranges "
                f"from {CYBOZU_OUTBOUND_ADDRESSES_PAGE}"
            )
        return self

    @model_validator(mode="after")
    def _test_model_allowed(self) -> EnvironmentSettings:
        test_model = self.gateway.test_model
        if test_model is not None and not any(
            test_model in self.team_catalog.get(team).models for team in self.team_catalog.names()
        ):
            raise ValueError(f"gateway.test_model {test_model!r} is allowed to no team")
        return self

    @property
    def resource_prefix(self) -> str:
        return f"kintone-llm-{self.name}"

    @property
    def key_secrets_prefix(self) -> str:
        """Where the worker keeps one secret per issued key; its IAM permissions stop at this prefix."""
        return self.key_secret_prefix or f"kintone-llm-keys/{self.name}/"

    def proxy_bypass(self, *hosts: str) -> str:
        """NO_PROXY: the configured hosts plus what must never go through a proxy (link-local task
        metadata and credentials, the task's own sidecars, the internal ALB and AWS endpoints in the VPC)."""
        always = ["localhost", "127.0.0.1", "169.254.169.254", "169.254.170.2"]
        if self.network.vpc_endpoints:
            always.append(f".{self.region}.amazonaws.com")
        return ",".join(dict.fromkeys([*always, *hosts, *self.network.no_proxy]))


def load_environment_settings(environments: object, name: object) -> EnvironmentSettings:
    """The validated settings of environment `name` from the `environments` context value."""
    if not isinstance(environments, Mapping) or not environments:
        raise ConfigError(
            f"cdk.json context has no '{ENVIRONMENTS_CONTEXT_KEY}' object naming the environments"
        )
    known = ", ".join(sorted(environments))
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"choose an environment with -c {ENVIRONMENT_SELECTOR_CONTEXT_KEY}=NAME (one of {known})"
        )
    if name not in environments:
        raise ConfigError(f"unknown environment '{name}': cdk.json defines {known}")
    raw = environments[name]
    if not isinstance(raw, Mapping):
        raise ConfigError(f"environment '{name}': its settings must be an object")
    if "name" in raw:
        raise ConfigError(
            f"environment '{name}': setting 'name' is not a known setting (the key is the name)"
        )
    try:
        return EnvironmentSettings.model_validate({**raw, "name": name})
    except ValidationError as error:
        raise ConfigError(_describe(name, error)) from None


def _describe(environment: str, error: ValidationError) -> str:
    problems = []
    for problem in error.errors():
        path = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if not path:  # a rule across settings: its message names them
            problems.append(message)
        elif problem["type"] == "extra_forbidden":
            problems.append(f"setting '{path}' is not a known setting")
        elif problem["type"] == "missing":
            problems.append(f"setting '{path}' is missing")
        else:
            problems.append(f"setting '{path}' is invalid: {message}")
    return f"environment '{environment}': " + "; ".join(problems)
