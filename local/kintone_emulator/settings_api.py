"""kintone's app-settings endpoints: form fields, record and app permissions, and deploy.

They need the app-management permission: an API token given it, or a user whose app permissions
allow managing the app (``appEditable``). Reading the live form fields needs only viewing records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .app_settings import AppSettings
from .errors import invalid_param
from .params import revision_param
from .permissions import Access
from .rest_api import check_app

SettingsRoute = Callable[[dict[str, Any], Access], dict[str, Any]]


class SettingsApi:
    def __init__(self, app_id: str, settings: AppSettings) -> None:
        self._app_id = app_id
        self._settings = settings
        self.routes: dict[tuple[str, str], SettingsRoute] = {
            ("GET", "/k/v1/app/form/fields.json"): self._get_live_fields,
            ("GET", "/k/v1/preview/app/form/fields.json"): self._get_preview_fields,
            ("POST", "/k/v1/preview/app/form/fields.json"): self._add_fields,
            ("PUT", "/k/v1/preview/app/form/fields.json"): self._update_fields,
            ("GET", "/k/v1/record/acl.json"): lambda params, access: self._get_record_acl(
                params, access, False
            ),
            ("GET", "/k/v1/preview/record/acl.json"): lambda params, access: self._get_record_acl(
                params, access, True
            ),
            ("PUT", "/k/v1/record/acl.json"): lambda params, access: self._put_record_acl(
                params, access, True
            ),
            ("PUT", "/k/v1/preview/record/acl.json"): lambda params, access: self._put_record_acl(
                params, access, False
            ),
            ("GET", "/k/v1/app/acl.json"): lambda params, access: self._get_app_acl(params, access, False),
            ("GET", "/k/v1/preview/app/acl.json"): lambda params, access: self._get_app_acl(
                params, access, True
            ),
            ("PUT", "/k/v1/app/acl.json"): lambda params, access: self._put_app_acl(params, access, True),
            ("PUT", "/k/v1/preview/app/acl.json"): lambda params, access: self._put_app_acl(
                params, access, False
            ),
            ("POST", "/k/v1/preview/app/deploy.json"): self._deploy,
            ("GET", "/k/v1/preview/app/deploy.json"): self._deploy_status,
        }

    def _managed(self, params: dict[str, Any], access: Access) -> None:
        """The app is this one and the caller may manage it."""
        check_app(self._app_id, {"app": params.get("app", params.get("id"))})
        access.require_app_right("appEditable")

    # ---- form fields ------------------------------------------------------------------------------

    def _get_live_fields(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        check_app(self._app_id, params)
        access.require_app_right("recordViewable")
        return self._settings.fields_json(preview=False)

    def _get_preview_fields(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        self._managed(params, access)
        return self._settings.fields_json(preview=True)

    def _add_fields(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        self._managed(params, access)
        revision = revision_param(params.get("revision"), "revision")
        return self._settings.add_fields(params.get("properties"), revision)

    def _update_fields(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        self._managed(params, access)
        revision = revision_param(params.get("revision"), "revision")
        return self._settings.update_fields(params.get("properties"), revision)

    # ---- permissions ------------------------------------------------------------------------------

    def _get_record_acl(self, params: dict[str, Any], access: Access, preview: bool) -> dict[str, Any]:
        self._managed(params, access)
        return self._settings.record_acl_json(preview=preview)

    def _put_record_acl(self, params: dict[str, Any], access: Access, live: bool) -> dict[str, Any]:
        self._managed(params, access)
        revision = revision_param(params.get("revision"), "revision")
        return self._settings.set_record_acl(params.get("rights"), revision, live=live)

    def _get_app_acl(self, params: dict[str, Any], access: Access, preview: bool) -> dict[str, Any]:
        self._managed(params, access)
        return self._settings.app_acl_json(preview=preview)

    def _put_app_acl(self, params: dict[str, Any], access: Access, live: bool) -> dict[str, Any]:
        self._managed(params, access)
        revision = revision_param(params.get("revision"), "revision")
        return self._settings.set_app_acl(params.get("rights"), revision, live=live)

    # ---- deploy -----------------------------------------------------------------------------------

    def _deploy(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        apps = params.get("apps")
        if not isinstance(apps, list) or len(apps) != 1 or not isinstance(apps[0], dict):
            raise invalid_param("apps", 'Give this app, as [{"app": ID}] (the emulator has one app).')
        self._managed(apps[0], access)
        revert = params.get("revert") in (True, "true")
        self._settings.deploy(revision_param(apps[0].get("revision"), "apps[0].revision"), revert=revert)
        return {}

    def _deploy_status(self, params: dict[str, Any], access: Access) -> dict[str, Any]:
        apps = params.get("apps")
        if not isinstance(apps, list) or len(apps) != 1:
            raise invalid_param("apps", "Give this app's id, as apps[0]=ID.")
        self._managed({"app": apps[0]}, access)
        return {"apps": [{"app": self._app_id, "status": self._settings.deploy_status()}]}
