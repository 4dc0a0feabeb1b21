"""kintone's app-settings REST API, for one app: form fields, record and app permissions, deploy.

Writes go to the preview (`/k/v1/preview/...`), each with the revision the previous call returned,
so a change someone makes in the settings screen meanwhile fails the run instead of being
overwritten; the deploy then moves the preview to the live app. Every call needs app-management
permission: an API token with "Manage app" (アプリ管理) permission, or a user who may manage the app.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import httpx

from lambdas.domain.redaction import redact, register_secret
from ops.app_plan import AppSettings, CurrentField
from ops.app_spec import AppRight, FieldSpec, RecordRight, options_property

DEPLOY_POLL_SECONDS = 1.0


class KintoneSettingsError(RuntimeError):
    """kintone refused or failed a settings call; the message says what to check."""


class DeployError(KintoneSettingsError):
    """The deploy ended in FAIL or CANCEL, or did not finish in time."""


def token_auth(api_token: str) -> dict[str, str]:
    register_secret(api_token)
    return {"X-Cybozu-API-Token": api_token}


def password_auth(login: str, password: str) -> dict[str, str]:
    register_secret(password)
    encoded = base64.b64encode(f"{login}:{password}".encode()).decode()
    register_secret(encoded)
    return {"X-Cybozu-Authorization": encoded}


class KintoneAppSettings:
    def __init__(
        self,
        base_url: str,
        app_id: str,
        auth_headers: dict[str, str],
        timeout_seconds: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.app_id = app_id
        self._client = client or httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
            headers=auth_headers,
        )

    def read(self, *, preview: bool) -> AppSettings:
        prefix = "/k/v1/preview" if preview else "/k/v1"
        form = self._call("GET", f"{prefix}/app/form/fields.json", params={"app": self.app_id})
        record_acl = self._call("GET", f"{prefix}/record/acl.json", params={"app": self.app_id})
        app_acl = self._call("GET", f"{prefix}/app/acl.json", params={"app": self.app_id})
        return AppSettings(
            fields={code: _current_field(code, field) for code, field in form["properties"].items()},
            record_rights=tuple(RecordRight.model_validate(right) for right in record_acl["rights"]),
            app_rights=tuple(AppRight.model_validate(right) for right in app_acl["rights"]),
            revision=str(form.get("revision", "-1")),
        )

    def add_fields(self, fields: tuple[FieldSpec, ...], revision: str) -> str:
        properties = {field.code: field.properties() for field in fields}
        return self._write("POST", "/k/v1/preview/app/form/fields.json", {"properties": properties}, revision)

    def set_options(self, fields: tuple[FieldSpec, ...], revision: str) -> str:
        properties = {
            field.code: {"type": field.type, "options": options_property(field.options)} for field in fields
        }
        return self._write("PUT", "/k/v1/preview/app/form/fields.json", {"properties": properties}, revision)

    def set_record_rights(self, rights: tuple[RecordRight, ...], revision: str) -> str:
        body = {"rights": [right.as_kintone() for right in rights]}
        return self._write("PUT", "/k/v1/preview/record/acl.json", body, revision)

    def set_app_rights(self, rights: tuple[AppRight, ...], revision: str) -> str:
        body = {"rights": [right.as_kintone() for right in rights]}
        return self._write("PUT", "/k/v1/preview/app/acl.json", body, revision)

    def deploy(
        self,
        revision: str,
        timeout_seconds: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Deploys the preview and waits until kintone reports SUCCESS."""
        self._call(
            "POST",
            "/k/v1/preview/app/deploy.json",
            json={"apps": [{"app": self.app_id, "revision": revision}], "revert": False},
        )
        deadline = clock() + timeout_seconds
        while True:
            status = self.deploy_status()
            if status == "SUCCESS":
                return
            if status in ("FAIL", "CANCEL"):
                raise DeployError(
                    f"kintone reports the deploy of app {self.app_id} as {status}; the live app keeps its "
                    "previous settings. Open the app's settings screen to see the problem, then run again"
                )
            if clock() >= deadline:
                raise DeployError(
                    f"the deploy of app {self.app_id} is still {status} after {timeout_seconds:.0f} s; "
                    "check the app's settings screen, then run again (a second run changes only what is left)"
                )
            sleep(DEPLOY_POLL_SECONDS)  # kintone deploys asynchronously; poll its status

    def deploy_status(self) -> str:
        body = self._call("GET", "/k/v1/preview/app/deploy.json", params={"apps[0]": self.app_id})
        for app in body["apps"]:
            if str(app["app"]) == self.app_id:
                return str(app["status"])
        raise KintoneSettingsError(f"kintone's deploy status does not mention app {self.app_id}")

    def _write(self, method: str, path: str, body: dict[str, Any], revision: str) -> str:
        answer = self._call(method, path, json={"app": self.app_id, **body, "revision": revision})
        return str(answer.get("revision", "-1"))

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as error:  # timeouts, refused and reset connections
            raise KintoneSettingsError(f"kintone {method} {path} failed: {type(error).__name__}") from None
        if response.is_success:
            return response.json()
        raise KintoneSettingsError(self._explain(method, path, response))

    def _explain(self, method: str, path: str, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:  # a proxy's HTML error page: its status is all there is to say
            body = {}
        code = str(body.get("code", "")) if isinstance(body, dict) else ""
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
        what = f"kintone {method} {path} answered {response.status_code} {code}: {redact(message)}"
        if response.status_code == 401:
            return f"{what}. The credential was refused: check the login name and password, or the API token"
        if response.status_code == 403:
            return (
                f"{what}. The credential may not manage app {self.app_id}: an API token needs the "
                "'Manage app' (アプリ管理) permission; a user needs app management permission on the app"
            )
        if response.status_code == 409 or code == "GAIA_CO02":
            return f"{what}. Someone changed the app's settings during this run: run it again"
        return what


def _current_field(code: str, field: dict[str, Any]) -> CurrentField:
    options = field.get("options") or {}
    ordered = sorted(options.values(), key=lambda option: int(option.get("index", 0)))
    return CurrentField(
        code=code, type=str(field.get("type", "")), options=tuple(option["label"] for option in ordered)
    )
