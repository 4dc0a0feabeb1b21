"""Webhook notifications, posted the way kintone posts them."""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

logger = logging.getLogger("kintone_emulator")

WEBHOOKS_PER_MINUTE = 60  # kintone's cap; later notifications in the minute are dropped
WEBHOOK_WINDOW_SECONDS = 60.0
WEBHOOK_LOG_CAPACITY = 10_000


@dataclasses.dataclass
class WebhookNotification:
    notification_id: str
    event_type: str
    record_id: str
    url: str
    payload: dict[str, Any]
    saved_at: float  # time.time() of the save that triggered it
    generation: int
    status: str = "pending"  # then "sent", "failed" or "dropped"
    http_status: int | None = None
    error: str | None = None
    sent_at: float | None = None  # time.time() when the POST began

    def as_json(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "type": self.event_type,
            "record_id": self.record_id,
            "status": self.status,
            "http_status": self.http_status,
            "error": self.error,
            "saved_at": self.saved_at,
            "sent_at": self.sent_at,
            "payload": self.payload,
        }


class WebhookDispatcher:
    """Posts notifications in order from one background thread, as kintone does: no signature, no
    custom headers, no retries, and at most ``rate_per_minute`` in any rolling minute; the rest are
    dropped without a word (the log records them as dropped)."""

    def __init__(self, *, url: str | None, rate_per_minute: int, timeout_seconds: float) -> None:
        self._cond = threading.Condition()
        self._url = _checked_webhook_url(url)
        self._rate_per_minute = _checked_rate(rate_per_minute)
        self._enabled = True
        self._timeout_seconds = timeout_seconds
        self._accepted_at: collections.deque[float] = collections.deque()
        self._log: collections.deque[WebhookNotification] = collections.deque(maxlen=WEBHOOK_LOG_CAPACITY)
        self._finished = 0
        self._generation = 0  # bumped by reset() so that queued notifications of before are not sent
        self._closed = False
        self._pending: queue.SimpleQueue[WebhookNotification | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._deliver_all, name="kintone-emulator-webhooks", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._pending.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def settings(self) -> dict[str, Any]:
        with self._cond:
            return {
                "webhook_url": self._url,
                "webhook_rate_per_minute": self._rate_per_minute,
                "webhook_enabled": self._enabled,
            }

    def configure(self, settings: Mapping[str, Any]) -> None:
        with self._cond:
            if "webhook_url" in settings:
                self._url = _checked_webhook_url(settings["webhook_url"])
            if "webhook_rate_per_minute" in settings:
                self._rate_per_minute = _checked_rate(settings["webhook_rate_per_minute"])
            if "webhook_enabled" in settings:
                if not isinstance(settings["webhook_enabled"], bool):
                    raise ValueError("webhook_enabled must be true or false")
                self._enabled = settings["webhook_enabled"]

    def publish(self, event_type: str, record_id: str, payload: dict[str, Any], saved_at: float) -> None:
        with self._cond:
            if not self._enabled or self._url is None:
                return
            notification_id = str(uuid.uuid4())
            notification = WebhookNotification(
                notification_id,
                event_type,
                record_id,
                self._url,
                {"id": notification_id, **payload},
                saved_at,
                self._generation,
            )
            self._log.append(notification)
            if self._over_rate_limit():
                notification.status = "dropped"
                self._finished += 1
                self._cond.notify_all()
                logger.info(
                    "webhook %s for record %s dropped: over the per-minute cap", event_type, record_id
                )
                return
            self._pending.put(notification)

    def log(self) -> list[dict[str, Any]]:
        with self._cond:
            return [notification.as_json() for notification in self._log]

    def wait_finished(self, count: int, timeout: float) -> tuple[list[dict[str, Any]], bool]:
        """Waits until ``count`` notifications are sent, failed or dropped; returns (log, timed out)."""
        with self._cond:
            done = self._cond.wait_for(lambda: self._finished >= count or self._closed, timeout)
            return [notification.as_json() for notification in self._log], not done or self._finished < count

    def reset(self) -> None:
        with self._cond:
            self._generation += 1
            self._log.clear()
            self._finished = 0
            self._accepted_at.clear()
            self._cond.notify_all()

    def _over_rate_limit(self) -> bool:
        now = time.monotonic()
        while self._accepted_at and now - self._accepted_at[0] >= WEBHOOK_WINDOW_SECONDS:
            self._accepted_at.popleft()
        if len(self._accepted_at) >= self._rate_per_minute:
            return True
        self._accepted_at.append(now)
        return False

    def _deliver_all(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(self._timeout_seconds), trust_env=False) as client:
            while (notification := self._pending.get()) is not None:
                self._deliver(client, notification)

    def _deliver(self, client: httpx.Client, notification: WebhookNotification) -> None:
        with self._cond:
            if self._closed or notification.generation != self._generation:
                return
        body = json.dumps(notification.payload, ensure_ascii=False).encode("utf-8")
        sent_at = time.time()
        status, http_status, error = "sent", None, None
        try:
            response = client.post(
                notification.url, content=body, headers={"Content-Type": "application/json"}
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            status, error = "failed", type(exc).__name__
        else:
            http_status = response.status_code
            if not response.is_success:
                status = "failed"
        with self._cond:
            notification.status, notification.http_status = status, http_status
            notification.error, notification.sent_at = error, sent_at
            if notification.generation == self._generation:
                self._finished += 1
            self._cond.notify_all()
        log_level = logging.DEBUG if status == "sent" else logging.WARNING
        logger.log(
            log_level,
            "webhook %s for record %s %s (HTTP %s%s)",
            notification.event_type,
            notification.record_id,
            status,
            http_status,
            f", {error}" if error else "",
        )


def _checked_webhook_url(url: Any) -> str | None:
    if url is None or url == "":
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError("webhook_url must be an http:// or https:// URL")
    return url


def _checked_rate(rate: Any) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
        raise ValueError("webhook_rate_per_minute must be a whole number, 0 or more")
    return rate
