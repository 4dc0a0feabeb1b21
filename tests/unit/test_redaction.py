from __future__ import annotations

from lambdas.domain.redaction import REDACTED, redact, register_secret


def test_litellm_keys_are_scrubbed() -> None:
    assert redact("key sk-abcDEF_123-xyz leaked") == f"key {REDACTED} leaked"


def test_kintone_tokens_are_scrubbed_but_hashes_are_not() -> None:
    token = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0"
    sha256 = "0534eca2ad317c18e4e2506df7b0393d6eb7f0c3bfd0dca6b4d8ea5d198dadcb"
    assert redact(f"token={token} hash={sha256}") == f"token={REDACTED} hash={sha256}"


def test_registered_secrets_are_scrubbed_whatever_their_shape() -> None:
    register_secret("webhook-token_with-odd.shape")
    assert redact("/webhook/webhook-token_with-odd.shape") == f"/webhook/{REDACTED}"
