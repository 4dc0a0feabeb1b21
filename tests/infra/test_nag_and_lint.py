"""cdk-nag AwsSolutions leaves no finding unacknowledged; cfn-lint passes every synthesized template."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable

import pytest
from cfnlint.api import lint
from cfnlint.config import ManualArgs

from tests.infra.conftest import ENVIRONMENTS, EXISTING_GATEWAY, Synthesized, key_secrets_arn

SynthesizedBy = Callable[[str], Synthesized]

pytestmark = pytest.mark.infra

# cfn-lint findings the CDK produces by design, with why they are accepted:
# W3005: the CDK adds an explicit DependsOn next to a GetAtt (Lambda functions on their roles).
# W3010: stacks with an explicit account and region get their zones from cdk.context.json.
CFN_LINT_ACCEPTED = ["W3005", "W3010"]
SYNTHESIZED = [*ENVIRONMENTS, EXISTING_GATEWAY]

# Every acknowledged cdk-nag rule, reviewed; a new acknowledgement must be added here on purpose.
ACKNOWLEDGED_RULES = {
    "AwsSolutions-APIG3",
    "AwsSolutions-APIG4",
    "AwsSolutions-APIG6",
    "AwsSolutions-COG4",
    "AwsSolutions-EC23",
    "AwsSolutions-ECS2",
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
    "AwsSolutions-IAM5[Resource::*]",
    "AwsSolutions-IAM5[Resource::<key secrets>]",
    "AwsSolutions-IAM5[Resource::arn:aws:bedrock:*::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0]",
    "AwsSolutions-IAM5[Resource::arn:aws:bedrock:*::foundation-model/anthropic.claude-sonnet-4-6]",
    "AwsSolutions-L1",
    "AwsSolutions-RDS6",
    "AwsSolutions-RDS10",
    "AwsSolutions-SMG4",
}


@pytest.mark.parametrize("name", SYNTHESIZED)
def test_cdk_nag_reports_no_unacknowledged_finding(synthesized: SynthesizedBy, name: str) -> None:
    report = json.loads((synthesized(name).outdir / "validation-report.json").read_text())
    violations = [
        (violation["ruleName"], construct["constructPath"])
        for plugin in report["pluginReports"]
        for violation in plugin.get("violations", [])
        for construct in violation["violatingConstructs"]
    ]
    assert violations == []


def acknowledgements(synthesized: Synthesized) -> dict[str, list[tuple[str, str]]]:
    """Acknowledged rule -> [(construct path, reason)] from the cloud assembly's metadata."""
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    key_secrets = f"Resource::{key_secrets_arn(synthesized.settings)}"
    for metadata_file in synthesized.outdir.glob("*.metadata.json"):
        for path, entries in json.loads(metadata_file.read_text()).items():
            for entry in entries:
                if entry["type"] != "aws:cdk:acknowledged-rules":
                    continue
                for acknowledged, reason in entry["data"].items():
                    rule = acknowledged.removeprefix("Annotation::")
                    # The CDK acknowledges some of its own CloudFormation-Validate findings: not ours.
                    if rule.startswith("AwsSolutions-"):
                        found[rule.replace(key_secrets, "Resource::<key secrets>")].append((path, reason))
    return found


@pytest.mark.parametrize("name", SYNTHESIZED)
def test_every_acknowledgement_is_reviewed_and_explained(synthesized: SynthesizedBy, name: str) -> None:
    found = acknowledgements(synthesized(name))
    assert set(found) <= ACKNOWLEDGED_RULES, set(found) - ACKNOWLEDGED_RULES
    for rule, places in found.items():
        for path, reason in places:
            assert len(reason) >= 60 and reason.endswith("."), f"{rule} at {path}: {reason!r}"


@pytest.mark.parametrize("name", SYNTHESIZED)
def test_cfn_lint_passes_every_synthesized_template(synthesized: SynthesizedBy, name: str) -> None:
    synthesized_environment: Synthesized = synthesized(name)
    templates = sorted(synthesized_environment.outdir.glob("*.template.json"))
    assert len(templates) == len(synthesized_environment.templates)
    config = ManualArgs(regions=[synthesized_environment.settings.region], ignore_checks=CFN_LINT_ACCEPTED)
    for template in templates:
        matches = lint(template.read_text(), config=config)
        assert [str(match) for match in matches] == [], template.name
