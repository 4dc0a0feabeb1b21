"""The emulator: one kintone app, its REST API and emulator-only endpoints, behind an HTTP server."""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .admin import AdminApi, error_response
from .app_settings import AppSettings
from .auth import Authenticator
from .directory import Directory
from .errors import KintoneError
from .faults import CONCURRENT_REQUEST_LIMIT, ConcurrencyGate, FaultInjector, FaultRule
from .params import (
    DEFAULT_WAIT_SECONDS,
    request_params,
)
from .permissions import Access
from .records import DELETE_KEY_STYLES, RecordCondition, RecordMatch, RecordStore
from .request_counter import RequestCounter, app_of
from .rest_api import RecordApi
from .schema import DEFAULT_SCHEMA, AppSchema
from .server import EmulatorHTTPServer, Response, url_host
from .settings_api import SettingsApi
from .user_api import UserApi
from .webhooks import WEBHOOKS_PER_MINUTE, WebhookDispatcher

logger = logging.getLogger("kintone_emulator")


class KintoneEmulator:
    """One kintone app and its cybozu.com directory behind an HTTP server on 127.0.0.1.

    kintone REST API, with ``X-Cybozu-API-Token`` (an app token; bypasses permissions; attributed to
    "Administrator") or ``X-Cybozu-Authorization: base64(login:password)`` (a directory user, bound
    by the app's and the records' permissions): ``GET/POST/PUT /k/v1/record.json``,
    ``GET/POST/PUT/DELETE /k/v1/records.json``, ``POST /k/v1/record/comment.json``,
    ``GET /k/v1/record/comments.json``; app settings (``settings_api``): form fields, record and app
    permissions, deploy. User API under ``/v1/`` (``user_api``).

    Emulator endpoints (no auth): ``GET /_emulator/health``; ``GET|POST /_emulator/config``
    ``{webhook_url?, webhook_rate_per_minute?, webhook_enabled?, delete_notification_keys?,
    deploy_seconds?, fail_next_deploy?}``; ``POST /_emulator/records/delete {app, ids}`` (a screen
    delete, with DELETE_RECORD webhooks; takes the user's kintone credentials);
    ``GET /_emulator/records/wait?app=&id=&field=&nonempty=true&equals=&revision_gt=&timeout=``;
    ``GET /_emulator/webhooks``, ``GET /_emulator/webhooks/wait?count=&timeout=``;
    ``GET /_emulator/requests`` (REST requests per app and kintone day, see ``request_counter``);
    ``POST /_emulator/faults {path_prefix (/k/v1/ or /v1/), method?, status?, code?, message?, count?,
    delay_seconds?, truncate_to?}``, ``POST /_emulator/faults/release``, ``DELETE /_emulator/faults``;
    ``POST /_emulator/reset``.
    """

    def __init__(
        self,
        app_id: str = "1",
        api_tokens: Iterable[str] = (),
        webhook_url: str | None = None,
        webhook_rate_per_minute: int = WEBHOOKS_PER_MINUTE,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        schema: AppSchema = DEFAULT_SCHEMA,
        max_concurrent_requests: int = CONCURRENT_REQUEST_LIMIT,
        webhook_timeout_seconds: float = 10.0,
        delete_notification_keys: str = "deleteBy",
        reject_unknown_fields: bool = False,
        directory: Directory | None = None,
        app_management_tokens: Iterable[str] = (),
        app_creator: str | None = None,
    ) -> None:
        if not re.fullmatch(r"[1-9]\d*", str(app_id)):
            raise ValueError("app_id must be a positive whole number")
        if delete_notification_keys not in DELETE_KEY_STYLES:
            raise ValueError(f"delete_notification_keys must be one of {DELETE_KEY_STYLES}")
        self.app_id = str(app_id)
        self.directory = directory if directory is not None else Directory()
        self._authenticator = Authenticator(self.directory, api_tokens, app_management_tokens)
        self._address = (host, port)
        self._dispatcher = WebhookDispatcher(
            url=webhook_url, rate_per_minute=webhook_rate_per_minute, timeout_seconds=webhook_timeout_seconds
        )
        self._store = RecordStore(
            self.app_id,
            schema,
            publish=self._dispatcher.publish,
            reject_unknown_fields=reject_unknown_fields,
            delete_key_style=delete_notification_keys,
            user_name=self._user_name,
        )
        self._faults = FaultInjector()
        self._requests = RequestCounter()
        self._gate = ConcurrencyGate(max_concurrent_requests)
        self._server: EmulatorHTTPServer | None = None
        self._server_thread: threading.Thread | None = None
        self._base_url: str | None = None
        self._app_creator = app_creator
        self._settings = AppSettings(schema, on_deploy=self._store.set_schema)
        self._record_api = RecordApi(self.app_id, self._store, self.directory)
        self._settings_api = SettingsApi(self.app_id, self._settings)
        self._user_api = UserApi(self.directory)
        self._admin_api = AdminApi(self, self._store, self._dispatcher, self._access)

    def _user_name(self, code: str) -> str | None:
        user = self.directory.user(code)
        return None if user is None else user.name

    # ---- life cycle -------------------------------------------------------------------------------

    def start(self) -> str:
        """Starts listening in a background thread and returns the base URL."""
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        self._server = EmulatorHTTPServer(self._address, self)
        host, port = self._server.server_address[:2]
        self._base_url = f"http://{url_host(str(host))}:{port}"
        self._store.base_url = self._base_url
        self._dispatcher.start()
        self._server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="kintone-emulator-http",
            daemon=True,
        )
        self._server_thread.start()
        logger.info("kintone emulator for app %s listening on %s", self.app_id, self._base_url)
        return self._base_url

    def stop(self) -> None:
        """Stops serving and sending webhooks; an emulator is not started again after this."""
        if self._server is None:
            return
        self._store.close()
        self._faults.release()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
        self._dispatcher.stop()
        self._server = None
        logger.info("kintone emulator stopped")

    def __enter__(self) -> KintoneEmulator:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the emulator is not started")
        return self._base_url

    # ---- Python accessors for tests ----------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """Every record, as GET /k/v1/record.json shows it, in record id order."""
        return self._store.all_records()

    def record(self, record_id: int) -> dict[str, Any] | None:
        return self._store.peek(record_id)

    def comments(self, record_id: int) -> list[dict[str, Any]]:
        """The record's comments, oldest first, each with `notified`: whom kintone would notify."""
        return self._store.comments_of(record_id)

    def webhook_log(self) -> list[dict[str, Any]]:
        return self._dispatcher.log()

    def wait_for_webhooks(self, count: int, timeout: float = DEFAULT_WAIT_SECONDS) -> list[dict[str, Any]]:
        """The log once ``count`` notifications have been sent, failed or dropped; TimeoutError if not."""
        log, timed_out = self._dispatcher.wait_finished(count, timeout)
        if timed_out:
            raise TimeoutError(f"{count} webhook notifications did not finish within {timeout} s")
        return log

    def wait_for_record(
        self, record_id: int, condition: RecordCondition, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> RecordMatch | None:
        return self._store.wait_for(record_id, condition, timeout)

    def set_record_times(
        self, record_id: int, *, created_at: float | None = None, updated_at: float | None = None
    ) -> None:
        """Moves a record's CREATED_TIME/UPDATED_TIME (epoch seconds), e.g. to age it for a sweep."""
        self._store.set_times(record_id, created_at=created_at, updated_at=updated_at)

    def settings(self) -> dict[str, Any]:
        return {
            **self._dispatcher.settings(),
            "delete_notification_keys": self._store.delete_key_style,
            "deploy_seconds": self._settings.deploy_seconds,
            "fail_next_deploy": self._settings.fail_next_deploy,
        }

    def replace_api_tokens(self, *api_tokens: str) -> None:
        """An administrator generated these tokens and deleted the others, as rotating a token is done
        in kintone (app settings → API token, then Update App)."""
        self._authenticator.replace_api_tokens(api_tokens)

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Changes ``webhook_url``, ``webhook_rate_per_minute``, ``webhook_enabled``,
        ``delete_notification_keys`` ("deleteBy" or "deletedBy"), ``deploy_seconds`` (how long a
        deploy stays PROCESSING) or ``fail_next_deploy``; returns the settings."""
        unknown = set(settings) - set(self.settings())
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        style = settings.get("delete_notification_keys", self._store.delete_key_style)
        if style not in DELETE_KEY_STYLES:
            raise ValueError(f"delete_notification_keys must be one of {DELETE_KEY_STYLES}")
        deploy_seconds = settings.get("deploy_seconds", self._settings.deploy_seconds)
        if (
            isinstance(deploy_seconds, bool)
            or not isinstance(deploy_seconds, int | float)
            or deploy_seconds < 0
        ):
            raise ValueError("deploy_seconds must be a number of seconds, 0 or more")
        fail_next_deploy = settings.get("fail_next_deploy", self._settings.fail_next_deploy)
        if not isinstance(fail_next_deploy, bool):
            raise TypeError("fail_next_deploy must be true or false")
        self._dispatcher.configure(
            {key: value for key, value in settings.items() if key in self._dispatcher.settings()}
        )
        self._store.delete_key_style = style
        self._settings.deploy_seconds = float(deploy_seconds)
        self._settings.fail_next_deploy = fail_next_deploy
        return self.settings()

    def add_fault(self, **rule: Any) -> list[dict[str, Any]]:
        """The next ``count`` requests whose path starts with ``path_prefix`` (and whose method is
        ``method``, if given) wait ``delay_seconds`` and/or fail with ``status`` and a kintone body."""
        return self._faults.add(FaultRule.from_json(rule))

    def clear_faults(self) -> None:
        self._faults.clear()

    def release_delayed_requests(self) -> None:
        self._faults.release()

    def request_counts(self) -> dict[str, Any]:
        """REST requests received per app and kintone day (from 09:00 JST), and User API requests per
        day: ``{"apps": {app: {day: {"total", "by_api"}}}, "user_api": {day: n}}``."""
        return self._requests.as_json()

    def reset(self) -> None:
        """Forgets records, comments, the webhook log, faults and request counts; record ids start at
        1 again. The app's settings and the directory stay."""
        self._requests.reset()
        self._store.reset()
        self._dispatcher.reset()
        self._faults.clear()

    def wait_for_in_flight(self, count: int, timeout: float = DEFAULT_WAIT_SECONDS) -> bool:
        """Whether ``count`` REST requests were being served at once within ``timeout``."""
        return self._gate.wait_until_running(count, timeout)

    # ---- request handling ---------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        split = urllib.parse.urlsplit(target)
        if split.path.startswith("/_emulator/"):
            return self._admin_api.handle(method, split.path, split.query, headers, body)
        override = headers.get("X-HTTP-Method-Override")
        if method == "POST" and override:  # kintone's way round long URLs: a GET sent as a POST
            method = override.strip().upper()
        if split.path.startswith("/k/v1/"):
            return self._handle_kintone(method, split.path, split.query, headers, body)
        if split.path.startswith("/v1/"):
            self._requests.count_user_api()
            return self._serve(method, split.path, split.query, headers, body, self._serve_user_api)
        return Response(404, {"error": f"no such path: {split.path}"})

    def _handle_kintone(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        running = self._gate.try_enter()
        if running is None:
            response = error_response(
                KintoneError(429, "GAIA_TO04", "Too many concurrent API requests. Try again later.")
            )
            running = self._gate.limit + 1
        else:
            self._count_kintone_request(method, path, query, body)
            try:
                response = self._serve(method, path, query, headers, body, self._serve_kintone)
            finally:
                self._gate.leave()
        response.headers["X-ConcurrencyLimit-Limit"] = str(self._gate.limit)
        response.headers["X-ConcurrencyLimit-Running"] = str(running)
        return response

    def _count_kintone_request(self, method: str, path: str, query: str, body: bytes) -> None:
        try:
            app = app_of(request_params(query, body))
        except KintoneError:  # a body that is not JSON names no app; the request answers the error
            return
        if app is not None:
            self._requests.count_kintone(app, f"{method} {path}")

    def _serve(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        serve: Callable[[str, str, Mapping[str, str], dict[str, Any]], dict[str, Any]],
    ) -> Response:
        """Faults first, as a slow or failing server answers before it looks at the request."""
        try:
            fault = self._take_fault(method, path)
            answer = serve(method, path, headers, request_params(query, body))
            return Response(200, answer if fault is None else fault.truncated(answer))
        except KintoneError as error:
            return error_response(error)

    def _serve_kintone(
        self, method: str, path: str, headers: Mapping[str, str], params: dict[str, Any]
    ) -> dict[str, Any]:
        access = self._access(headers)
        route = self._record_api.routes.get((method, path)) or self._settings_api.routes.get((method, path))
        if route is None:
            raise KintoneError(404, "EMULATOR_NOT_IMPLEMENTED", f"The emulator has no API {method} {path}.")
        return route(params, access)

    def _access(self, headers: Mapping[str, str]) -> Access:
        caller = self._authenticator.kintone_caller(headers)
        return Access(caller, self._settings.live(), self.directory, self._app_creator)

    def _serve_user_api(
        self, method: str, path: str, headers: Mapping[str, str], params: dict[str, Any]
    ) -> dict[str, Any]:
        caller = self._authenticator.directory_caller(headers)
        route = self._user_api.routes.get((method, path))
        if route is None:
            raise KintoneError(404, "EMULATOR_NOT_IMPLEMENTED", f"The emulator has no API {method} {path}.")
        return route(params, caller)

    def _take_fault(self, method: str, path: str) -> FaultRule | None:
        taken = self._faults.take(method, path)
        if taken is None:
            return None
        rule, release = taken
        if rule.delay_seconds:
            release.wait(rule.delay_seconds)
        error = rule.error()
        if error is not None:
            raise error
        return rule
