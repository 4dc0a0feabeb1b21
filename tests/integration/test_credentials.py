"""Rotating a credential on the live local stack: the pipeline keeps issuing keys, with no restart.

The worker's clients used to hold the kintone API token and the LiteLLM master key read when their
container started, so after a rotation every worker failed until its container was recycled.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.conftest import LocalStack

pytestmark = pytest.mark.integration


def new_token() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))


@pytest.fixture
def stack_with_kintone_token_restored(local_stack: LocalStack) -> Iterator[LocalStack]:
    original = local_stack.api_token
    yield local_stack
    local_stack.emulator.replace_api_tokens(original)
    local_stack.put_secret(local_stack.resources.kintone_api_token_secret_id, original)
    local_stack.api_token = original


def test_a_rotated_kintone_token_is_picked_up_without_a_restart(
    stack_with_kintone_token_restored: LocalStack,
) -> None:
    stack = stack_with_kintone_token_restored
    before = stack.wait_for_status(stack.save_record(key_name="before the rotation"), "Issued")
    assert before["api_key"]["value"]  # the worker holds the old token now

    rotated = new_token()
    stack.put_secret(stack.resources.kintone_api_token_secret_id, rotated)
    stack.emulator.replace_api_tokens(rotated)  # the old token is deleted in kintone
    stack.api_token = rotated

    record_id = stack.save_record(key_name="after the rotation")
    record = stack.wait_for_status(record_id, "Issued")
    assert stack.chat_status(record["api_key"]["value"]) == 200
    assert stack.delivery_that_converged(record_id) == 1  # the refused call was repeated at once


@pytest.fixture
def stack_on_an_admin_key(local_stack: LocalStack) -> Iterator[tuple[LocalStack, str]]:
    """The pipeline on a LiteLLM admin key (a key of a proxy_admin user), which can be rotated
    without restarting LiteLLM, unlike the master key itself; put back to the master key after."""
    admin_key = local_stack.new_litellm_admin_key()
    local_stack.put_secret(local_stack.resources.litellm_master_key_secret_id, admin_key)
    yield local_stack, admin_key
    local_stack.put_secret(local_stack.resources.litellm_master_key_secret_id, local_stack.litellm.master_key)


def test_a_rotated_litellm_admin_key_is_picked_up_without_a_restart(
    stack_on_an_admin_key: tuple[LocalStack, str],
) -> None:
    stack, old_key = stack_on_an_admin_key
    first = stack.save_record(key_name="on the first admin key")
    stack.wait_for_status(first, "Issued")

    rotated = stack.new_litellm_admin_key()
    stack.put_secret(stack.resources.litellm_master_key_secret_id, rotated)
    stack.delete_litellm_key(old_key)  # the old one stops working at once

    record_id = stack.save_record(key_name="after the rotation")
    record = stack.wait_for_status(record_id, "Issued")
    assert stack.chat_status(record["api_key"]["value"]) == 200
    assert stack.delivery_that_converged(record_id) == 1
    answer = httpx.get(
        f"{stack.litellm.base_url}/key/info",
        headers={"Authorization": f"Bearer {old_key}"},
        timeout=10,
    )
    assert answer.status_code in (400, 401, 403)  # the old key really was refused
