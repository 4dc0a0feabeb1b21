"""The suite-wide leak guard (tests/conftest.py) recognises what it must."""

from __future__ import annotations

from lambdas.domain.redaction import register_secret
from tests.conftest import leaked_credentials


def test_key_shaped_values_are_found() -> None:
    assert leaked_credentials('{"message": "issued sk-g07aXbL1q2w3e4r5t6y7u8i9o0pAsDfGhJkL"}') == ["sk-g07…"]


def test_loaded_secrets_are_found_whatever_their_shape() -> None:
    register_secret("Zq8-webhook-token-of-odd-shape")
    assert leaked_credentials("POST /webhook/Zq8-webhook-token-of-odd-shape") == ["Zq8-we…"]


def test_redacted_output_is_clean() -> None:
    assert leaked_credentials('{"message": "key [REDACTED] issued", "key_prefix": "sk-g07"}') == []
