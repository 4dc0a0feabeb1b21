"""`make smoke`'s logic, run against the local stack: what it will check on AWS is known to work here."""

from __future__ import annotations

import httpx
import pytest

from ops.smoke import SmokeError, SmokeTarget, SmokeTest
from tests.integration.conftest import APP_ID, LocalStack

pytestmark = pytest.mark.integration


def target(stack: LocalStack, **overrides: object) -> SmokeTarget:
    values = {
        "gateway_url": stack.litellm.base_url,
        "kintone_base_url": stack.kintone_url,
        "kintone_app_id": APP_ID,
        "kintone_api_token": stack.api_token,
        "team": "platform",
        "owner": "taro",  # a member of platform in the local directory
    }
    return SmokeTarget(**{**values, **overrides})


def test_smoke_issues_chats_revokes_and_sees_the_key_refused(local_stack: LocalStack) -> None:
    said: list[str] = []
    report = SmokeTest(target(local_stack), say=said.append).run()
    assert [name for name, _ in report.steps] == [
        "gateway health",
        "test record saved",
        "key issued to the record",
        "chat with the key",
        "revoke asked on the record",
        "key stopped working",
        "test record deleted",
    ]
    assert not any("sk-" in line for line in said), "the smoke test never prints the key"


def test_smoke_reports_a_failed_record_with_its_message_and_cleans_up(local_stack: LocalStack) -> None:
    said: list[str] = []
    with pytest.raises(SmokeError, match=r"the record failed: .*no-such-team"):
        SmokeTest(target(local_stack, team="no-such-team"), say=said.append).run()
    assert said[-1].startswith("✓ test record deleted")


def test_smoke_reports_an_unreachable_gateway(local_stack: LocalStack) -> None:
    with pytest.raises((SmokeError, httpx.HTTPError)):
        SmokeTest(target(local_stack, gateway_url="http://127.0.0.1:9"), say=lambda line: None).run()
