"""Scrub credentials from any text that may reach a log line, an exception or a record message."""

from __future__ import annotations

import re
import threading

# LiteLLM virtual and master keys start with "sk-"; kintone API tokens are 40 alphanumerics.
_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-]{4,}")
_KINTONE_TOKEN_PATTERN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{40}(?![A-Za-z0-9])")
REDACTED = "[REDACTED]"

_known_secrets: set[str] = set()
_known_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a credential this process loaded, so it is scrubbed whatever its shape."""
    if len(value) >= 8:
        with _known_secrets_lock:
            _known_secrets.add(value)


def redact(text: str) -> str:
    for secret in tuple(_known_secrets):
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _KEY_PATTERN.sub(REDACTED, text)
    return _KINTONE_TOKEN_PATTERN.sub(REDACTED, text)
