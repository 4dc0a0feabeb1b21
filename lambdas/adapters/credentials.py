"""Credentials read from Secrets Manager, fresh enough to survive a rotation without a restart.

A Lambda container lives for hours, so a credential read once at start would outlive its rotation.
Every request asks for the credential again: Powertools' cache answers within SECRET_CACHE_SECONDS
and reads the secret anew after that; a request the service refuses as unauthenticated reads it at
once (`refreshed`), so a rotated kintone token or LiteLLM master key costs one retried request.
"""

from __future__ import annotations

from typing import Protocol

from aws_lambda_powertools.utilities import parameters

from lambdas.domain.redaction import register_secret

SECRET_CACHE_SECONDS = 300


def secret_value(secret_id: str, *, force_fetch: bool = False) -> str:
    """A credential from Secrets Manager, cached for a few minutes and registered for redaction."""
    value = parameters.get_secret(secret_id, max_age=SECRET_CACHE_SECONDS, force_fetch=force_fetch)
    if not isinstance(value, str):
        raise TypeError(f"secret {secret_id} does not hold a string")
    register_secret(value)
    return value


class SecretCredential:
    """The current value of one secret, for a client that sends it with every request."""

    def __init__(self, secret_id: str) -> None:
        self._secret_id = secret_id

    def current(self) -> str:
        return secret_value(self._secret_id)

    def refreshed(self) -> str:
        """Read past the cache: the service refused the cached value, which may have been rotated."""
        return secret_value(self._secret_id, force_fetch=True)


class Credential(Protocol):
    def current(self) -> str: ...

    def refreshed(self) -> str: ...


def changed_on_refresh(credential: Credential) -> bool:
    """Re-read the credential past the cache; True when it differs from the one just used."""
    used = credential.current()
    return credential.refreshed() != used
