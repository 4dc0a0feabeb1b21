"""Injected faults and kintone's limit on concurrent requests."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

from .errors import KintoneError

CONCURRENT_REQUEST_LIMIT = 100  # per domain, as kintone documents
MAX_FAULT_DELAY_SECONDS = 60.0
FAULT_PATH_PREFIXES = ("/k/v1/", "/v1/")


# Codes that kintone answers with these statuses; other injected statuses get EMULATOR_FAULT.
_FAULT_CODES = {401: "CB_AU01", 403: "CB_NO02", 404: "GAIA_RE01", 409: "GAIA_CO02", 429: "GAIA_TO04"}


@dataclasses.dataclass
class FaultRule:
    path_prefix: str
    method: str | None
    status: int | None
    code: str | None
    message: str | None
    remaining: int
    delay_seconds: float
    truncate_to: int | None = None  # a partial answer: the answer's list cut to this many entries

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path_prefix) and self.method in (None, method)

    def error(self) -> KintoneError | None:
        if self.status is None:
            return None
        code = self.code or _FAULT_CODES.get(self.status, "EMULATOR_FAULT")
        return KintoneError(self.status, code, self.message or "Injected by the kintone emulator.")

    def truncated(self, body: Any) -> Any:
        """The answer with its list (``users``, ``records``, ...) cut short, still a 200."""
        if self.truncate_to is None or not isinstance(body, dict):
            return body
        return {
            key: value[: self.truncate_to] if isinstance(value, list) else value
            for key, value in body.items()
        }

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> FaultRule:
        unknown = set(body) - {
            "path_prefix",
            "method",
            "status",
            "code",
            "message",
            "count",
            "delay_seconds",
            "truncate_to",
        }
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        path_prefix, method, status = body.get("path_prefix"), body.get("method"), body.get("status")
        count, delay = body.get("count", 1), body.get("delay_seconds", 0)
        if not isinstance(path_prefix, str) or not path_prefix.startswith(FAULT_PATH_PREFIXES):
            raise ValueError("path_prefix must start with /k/v1/ (kintone) or /v1/ (the User API)")
        if method is not None and method not in ("GET", "POST", "PUT", "DELETE"):
            raise ValueError("method must be GET, POST, PUT or DELETE")
        if status is not None and (
            isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599
        ):
            raise ValueError("status must be an HTTP error status (400-599)")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a whole number, 1 or more")
        if (
            isinstance(delay, bool)
            or not isinstance(delay, (int, float))
            or not 0 <= delay <= MAX_FAULT_DELAY_SECONDS
        ):
            raise ValueError(f"delay_seconds must be between 0 and {MAX_FAULT_DELAY_SECONDS:g}")
        truncate_to = body.get("truncate_to")
        if truncate_to is not None and (
            isinstance(truncate_to, bool) or not isinstance(truncate_to, int) or truncate_to < 0
        ):
            raise ValueError("truncate_to must be a whole number, 0 or more")
        if truncate_to is not None and status is not None:
            raise ValueError("a truncated answer is a success: give truncate_to or status, not both")
        if status is None and delay == 0 and truncate_to is None:
            raise ValueError(
                "give a status, a delay_seconds, a truncate_to, or a delay with one of the others"
            )
        code, message = body.get("code"), body.get("message")
        if not isinstance(code, str | None) or not isinstance(message, str | None):
            raise TypeError("code and message must be strings")
        return cls(path_prefix, method, status, code, message, count, float(delay), truncate_to)


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._release = threading.Event()

    def add(self, rule: FaultRule) -> list[dict[str, Any]]:
        with self._lock:
            self._rules.append(rule)
            return [existing.as_json() for existing in self._rules]

    def take(self, method: str, path: str) -> tuple[FaultRule, threading.Event] | None:
        """The first rule that matches, used up by one, with the event that ends its delay early."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    return rule, self._release
            return None

    def release(self) -> None:
        """Lets every request held by a delay fault go on now."""
        with self._lock:
            self._release.set()
            self._release = threading.Event()

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
        self.release()


class ConcurrencyGate:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._cond = threading.Condition()
        self._running = 0

    def try_enter(self) -> int | None:
        with self._cond:
            if self._running >= self.limit:
                return None
            self._running += 1
            self._cond.notify_all()
            return self._running

    def leave(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    @property
    def running(self) -> int:
        with self._cond:
            return self._running

    def wait_until_running(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._running >= count, timeout)
