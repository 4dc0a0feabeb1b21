"""Retrying a transient fault inside the invocation, within the time the invocation has left.

A fault that a second try fixes should cost a fraction of a second, not a redelivery. Each kintone
and LiteLLM call is tried up to `RetryPolicy.attempts` times with exponential backoff and full
jitter, and only while the invocation can still afford another try (its deadline, set by the handler,
minus a sleep and a full timeout). AWS clients get botocore's standard retry mode instead
(`AWS_CLIENT_CONFIG`). What still fails raises TransientError, and SQS redelivers the message.
"""

from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from botocore.config import Config

from lambdas.domain.ports import TransientError

# botocore's standard mode: up to 3 attempts, exponential backoff with jitter, on throttling and
# 5xx codes; timeouts short enough that a hung call cannot eat the worker's 60 s.
AWS_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=10
)

# Monotonic time by which the current invocation must stop retrying; unset outside one (no limit).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("invocation_deadline", default=None)


def set_invocation_deadline(seconds_from_now: float | None) -> None:
    """Called by a handler at the start of an invocation: retries end this many seconds from now."""
    _deadline.set(None if seconds_from_now is None else time.monotonic() + seconds_from_now)


def seconds_left() -> float:
    deadline = _deadline.get()
    return float("inf") if deadline is None else deadline - time.monotonic()


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base_seconds: float = 0.2
    max_seconds: float = 2.0

    def backoff(self, retry: int) -> float:
        """Full jitter: anywhere up to the exponential bound, so retrying callers spread out."""
        return random.uniform(0, min(self.max_seconds, self.base_seconds * 2**retry))  # noqa: S311 - not crypto


DEFAULT_RETRY_POLICY = RetryPolicy()


@dataclass(frozen=True)
class Refusal:
    """Why a try failed, and whether another try may fix it."""

    reason: str
    retriable: bool


def call_with_retries(
    send: Callable[[], httpx.Response],
    *,
    describe: str,
    timeout_seconds: float,
    safe_to_repeat: bool,
    credential_refused: Callable[[httpx.Response], bool],
    refresh_credential: Callable[[], bool],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """Send, retrying transient faults; a refused credential is re-read and tried once more.

    `safe_to_repeat` is False for a call whose effect doubles when repeated (a comment): it is then
    retried only when the request surely did not arrive (connection refused, 429).
    `refresh_credential` re-reads the credential and says whether it changed.
    """
    refreshed = False
    retry = 0
    while True:
        try:
            response = send()
        except httpx.TransportError as error:  # timeouts, refused and reset connections
            not_sent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
            refusal = Refusal(f"{describe} failed: {type(error).__name__}", safe_to_repeat or not_sent)
        else:
            if credential_refused(response) and not refreshed:
                refreshed = True
                if refresh_credential():
                    continue  # a rotated credential: the same request with the new one
                return response
            if response.status_code != 429 and response.status_code < 500:
                return response
            # 429: the service refused before doing anything; 5xx: its own trouble.
            refusal = Refusal(
                f"{describe} answered {response.status_code}",
                safe_to_repeat or response.status_code == 429,
            )
        delay = policy.backoff(retry)
        retry += 1
        affordable = seconds_left() > delay + timeout_seconds
        if not refusal.retriable or retry >= policy.attempts or not affordable:
            raise TransientError(refusal.reason)
        sleep(delay)
