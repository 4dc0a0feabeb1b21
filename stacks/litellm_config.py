"""Reads the gateway's LiteLLM configuration at synth time: checks it and lists the Bedrock models it uses.

Checking here means a malformed file, or a credential written into it, fails `cdk synth`
instead of a running gateway or a commit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

LITELLM_CONFIG_PATH = Path(__file__).resolve().parent.parent / "gateway" / "litellm-config.yaml"

# Settings whose values are credentials; they must name an environment variable, never hold a value.
_CREDENTIAL_KEY = re.compile(r"(^|_)(key|password|secret|token|credentials?)$|^database_url$|^master_key$")
_ENVIRONMENT_REFERENCE = "os.environ/"
# Cross-region inference profiles start with a geography; they route to foundation models elsewhere.
_INFERENCE_PROFILE = re.compile(r"^(us|us-gov|eu|apac|jp|au|ca|global)\.(?P<model>.+)$")


class LiteLLMConfigError(ValueError):
    """The LiteLLM configuration file cannot be used by the gateway."""


@dataclass(frozen=True)
class LiteLLMConfig:
    path: Path
    model_names: tuple[str, ...]
    bedrock_model_ids: tuple[str, ...]

    def bedrock_resource_arns(self, partition: str, region: str, account: str) -> list[str]:
        """The ARNs a task role needs bedrock:InvokeModel* on to serve exactly these models."""
        arns: list[str] = []
        for model_id in self.bedrock_model_ids:
            if model_id.startswith("arn:"):
                arns.append(model_id)
                continue
            profile = _INFERENCE_PROFILE.match(model_id)
            if profile:
                arns.append(f"arn:{partition}:bedrock:{region}:{account}:inference-profile/{model_id}")
                arns.append(f"arn:{partition}:bedrock:*::foundation-model/{profile['model']}")
            else:
                arns.append(f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}")
        return arns


def load_litellm_config(path: Path = LITELLM_CONFIG_PATH) -> LiteLLMConfig:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise LiteLLMConfigError(f"{path.name}: cannot be read as YAML: {error}") from None
    if not isinstance(document, dict):
        raise LiteLLMConfigError(f"{path.name}: must be a mapping")
    literal_credentials = [where for where, value in _credentials(document, "") if not _is_reference(value)]
    if literal_credentials:
        raise LiteLLMConfigError(
            f"{path.name}: {', '.join(literal_credentials)} must name an environment variable "
            f"({_ENVIRONMENT_REFERENCE}NAME), not hold a value"
        )
    models = document.get("model_list")
    if not isinstance(models, list) or not models:
        raise LiteLLMConfigError(f"{path.name}: model_list must list at least one model")
    names: list[str] = []
    bedrock: list[str] = []
    for index, entry in enumerate(models):
        name = entry.get("model_name") if isinstance(entry, dict) else None
        params = entry.get("litellm_params") if isinstance(entry, dict) else None
        model = params.get("model") if isinstance(params, dict) else None
        if not isinstance(name, str) or not isinstance(model, str):
            raise LiteLLMConfigError(
                f"{path.name}: model_list[{index}] needs model_name and litellm_params.model"
            )
        names.append(name)
        if model.startswith("bedrock/"):
            bedrock.append(re.sub(r"^(converse|invoke)/", "", model.removeprefix("bedrock/")))
    general = document.get("general_settings") or {}
    if not str(general.get("master_key", "")).startswith(_ENVIRONMENT_REFERENCE):
        raise LiteLLMConfigError(f"{path.name}: general_settings.master_key must be set from the environment")
    return LiteLLMConfig(path=path, model_names=tuple(dict.fromkeys(names)), bedrock_model_ids=tuple(bedrock))


def _credentials(node: object, where: str) -> Iterator[tuple[str, object]]:
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            if _CREDENTIAL_KEY.search(str(key)) and not isinstance(value, (dict, list)):
                yield path, value
            else:
                yield from _credentials(value, path)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _credentials(item, f"{where}[{index}]")


def _is_reference(value: object) -> bool:
    return value is None or isinstance(value, bool) or str(value).startswith(_ENVIRONMENT_REFERENCE)
