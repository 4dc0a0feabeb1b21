"""Emulator-only endpoints under ``/_emulator/``: settings, screen actions, waits, faults, reset.

They take no credentials: they are what a test needs to watch and steer, and the emulator listens
on 127.0.0.1 only. The one screen action, deleting records (which fires DELETE_RECORD, as no REST
delete does), takes the user's kintone credentials and their permissions, like the REST API.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import KintoneError
from .params import id_list, int_param, json_object, query_int, wait_seconds
from .permissions import Access
from .records import RecordCondition, RecordStore
from .rest_api import check_app
from .server import Response
from .webhooks import WebhookDispatcher

if TYPE_CHECKING:
    from .emulator import KintoneEmulator

AdminRoute = Callable[[dict[str, str], dict[str, Any]], Response]


def error_response(error: KintoneError) -> Response:
    return Response(error.status, error.response_body(), {"X-Cybozu-Error": error.code})


def _done(action: Callable[[], None]) -> Response:
    action()
    return Response(200, {"ok": True})


class AdminApi:
    def __init__(
        self,
        emulator: KintoneEmulator,
        store: RecordStore,
        dispatcher: WebhookDispatcher,
        access_of: Callable[[Mapping[str, str]], Access],
    ) -> None:
        self._emulator = emulator
        self._access_of = access_of  # who a request's kintone credentials sign in as
        self._app_id = emulator.app_id
        self._store = store
        self._dispatcher = dispatcher
        self._routes: dict[tuple[str, str], AdminRoute] = {
            ("GET", "/_emulator/health"): self._health,
            ("GET", "/_emulator/config"): lambda _query, _body: Response(200, emulator.settings()),
            ("POST", "/_emulator/config"): lambda _query, body: Response(200, emulator.configure(**body)),
            ("GET", "/_emulator/records/wait"): self._wait_record,
            ("GET", "/_emulator/webhooks"): lambda _query, _body: Response(
                200, {"notifications": dispatcher.log()}
            ),
            ("GET", "/_emulator/webhooks/wait"): self._wait_webhooks,
            ("GET", "/_emulator/requests"): lambda _query, _body: Response(200, emulator.request_counts()),
            ("POST", "/_emulator/faults"): lambda _query, body: Response(
                200, {"faults": emulator.add_fault(**body)}
            ),
            ("DELETE", "/_emulator/faults"): lambda _query, _body: _done(emulator.clear_faults),
            ("POST", "/_emulator/faults/release"): lambda _query, _body: _done(
                emulator.release_delayed_requests
            ),
            ("POST", "/_emulator/reset"): lambda _query, _body: _done(emulator.reset),
        }

    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Response:
        route = self._routes.get((method, path))
        if (method, path) == ("POST", "/_emulator/records/delete"):
            route = functools.partial(self._delete_records, headers=headers)
        if route is None:
            return Response(404, {"error": f"no such emulator endpoint: {method} {path}"})
        try:
            return route(dict(urllib.parse.parse_qsl(query)), json_object(body))
        except KintoneError as error:
            return error_response(error)
        except (ValueError, TypeError) as error:  # a bad argument; TypeError for an unknown keyword
            return Response(400, {"error": str(error)})

    def _health(self, _query: dict[str, str], _body: dict[str, Any]) -> Response:
        return Response(
            200,
            {
                "status": "ok",
                "app_id": self._app_id,
                "records": self._store.count(),
                **self._emulator.settings(),
            },
        )

    def _delete_records(
        self, _query: dict[str, str], body: dict[str, Any], *, headers: Mapping[str, str]
    ) -> Response:
        """A user deletes records from the kintone screen: with their password, bound by permissions."""
        access = self._access_of(headers)
        check_app(self._app_id, body)
        ids = id_list(body.get("ids"), "ids")
        # One screen delete after another: each one fires its own DELETE_RECORD.
        self._store.delete_many(
            ids, [None] * len(ids), access.caller.user, notify=True, allowed=access.allowed
        )
        return Response(200, {"ok": True})

    def _wait_record(self, query: dict[str, str], _body: dict[str, Any]) -> Response:
        check_app(self._app_id, query)
        record_id = int_param(query, "id")
        field = query.get("field") or None
        if field is not None and self._store.schema.field(field) is None:
            raise ValueError(f"the app has no field {field!r}")
        condition = RecordCondition(
            field=field,
            nonempty=query.get("nonempty") == "true",
            equals=query.get("equals"),
            revision_gt=query_int(query, "revision_gt"),
        )
        if field is None and condition.revision_gt is None:
            raise ValueError("give a field (with nonempty=true or equals=...) or revision_gt")
        match = self._store.wait_for(record_id, condition, wait_seconds(query))
        if match is None:
            return Response(408, {"matched": False, "record": self._store.peek(record_id)})
        return Response(
            200,
            {
                "matched": True,
                "record": match.record,
                "revision": str(match.revision),
                "matched_revision": str(match.matched_revision),
                "matched_at": match.matched_at,
            },
        )

    def _wait_webhooks(self, query: dict[str, str], _body: dict[str, Any]) -> Response:
        count = query_int(query, "count", default=1) or 0
        log, timed_out = self._dispatcher.wait_finished(count, wait_seconds(query))
        finished = sum(1 for entry in log if entry["status"] != "pending")
        return Response(200, {"notifications": log, "finished": finished, "timed_out": timed_out})
