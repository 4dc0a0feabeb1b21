"""kintone REST API client for the records of one app (there is no official Python SDK).

Write-backs go through the bulk endpoint `PUT /k/v1/records.json`, even for one record: unlike
`PUT /k/v1/record.json`, it fires no UPDATE_RECORD webhook, so our own writes do not spend the
domain's 60-webhooks-per-minute budget or loop back to us.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from lambdas.domain.ports import (
    RecordMissingError,
    RecordRef,
    RecordWrite,
    RevisionConflictError,
    TransientError,
)
from lambdas.domain.redaction import redact
from lambdas.domain.request_budget import RequestMeter


class KintoneError(RuntimeError):
    """kintone refused a request for a reason a retry will not fix."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(f"kintone answered {status} {code}: {redact(message)}")


RECORD_NOT_FOUND = "GAIA_RE01"
REVISION_CONFLICT = "GAIA_CO02"


class KintoneRecords:
    def __init__(
        self,
        base_url: str,
        api_token: str,
        timeout_seconds: float,
        client: httpx.Client | None = None,
        meter: RequestMeter | None = None,
    ):
        self._meter = meter
        self._client = client or httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_seconds, connect=min(2.0, timeout_seconds)),
            headers={"X-Cybozu-API-Token": api_token},
        )

    def get_record(self, ref: RecordRef) -> dict[str, Any] | None:
        response = self._request("GET", "/k/v1/record.json", params={"app": ref.app_id, "id": ref.record_id})
        if response.status_code == 404 and _code_of(response) == RECORD_NOT_FOUND:
            return None
        self._raise_for_status(response)
        return response.json()["record"]

    def write_fields(self, ref: RecordRef, revision: int, values: dict[str, str]) -> int:
        body = {
            "app": ref.app_id,
            "records": [
                {
                    "id": ref.record_id,
                    "revision": str(revision),
                    "record": {code: {"value": value} for code, value in values.items()},
                }
            ],
        }
        response = self._request("PUT", "/k/v1/records.json", json=body)
        if response.status_code == 409 and _code_of(response) == REVISION_CONFLICT:
            raise RevisionConflictError(
                f"record {ref.app_id}:{ref.record_id} changed since revision {revision}"
            )
        self._raise_for_status(response)
        return int(response.json()["records"][0]["revision"])

    def write_records(self, app_id: str, writes: Sequence[RecordWrite]) -> dict[str, int]:
        """One `PUT /k/v1/records.json`: kintone applies all of it or none of it."""
        records: list[dict[str, Any]] = []
        for write in writes:
            entry: dict[str, Any] = {
                "id": write.record_id,
                "record": {code: {"value": value} for code, value in write.values.items()},
            }
            if write.revision is not None:
                entry["revision"] = str(write.revision)
            records.append(entry)
        response = self._request("PUT", "/k/v1/records.json", json={"app": app_id, "records": records})
        code = _code_of(response)
        if response.status_code == 409 and code == REVISION_CONFLICT:
            raise RevisionConflictError(f"a record of app {app_id} changed since it was read")
        if response.status_code == 404 and code == RECORD_NOT_FOUND:
            raise RecordMissingError(f"a record of app {app_id} no longer exists")
        self._raise_for_status(response)
        return {str(entry["id"]): int(entry["revision"]) for entry in response.json()["records"]}

    def query_records(self, app_id: str, query: str, fields: list[str]) -> list[dict[str, Any]]:
        params: dict[str, str] = {"app": app_id, "query": query}
        params.update({f"fields[{index}]": field for index, field in enumerate(fields)})
        response = self._request("GET", "/k/v1/records.json", params=params)
        self._raise_for_status(response)
        return response.json()["records"]

    def add_comment(self, ref: RecordRef, text: str, mention_user: str) -> None:
        comment: dict[str, Any] = {"text": text}
        if mention_user:
            comment["mentions"] = [{"code": mention_user, "type": "USER"}]
        response = self._request(
            "POST",
            "/k/v1/record/comment.json",
            json={"app": ref.app_id, "record": ref.record_id, "comment": comment},
        )
        self._raise_for_status(response)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._meter is not None:  # counted before it is sent: a failed request counts too
            app = (kwargs.get("params") or kwargs.get("json") or {}).get("app")
            self._meter.record(str(app))
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as error:  # timeouts, refused and reset connections
            raise TransientError(f"kintone {method} {path} failed: {type(error).__name__}") from None
        # 429: more than 100 concurrent requests on the domain; 5xx: kintone's own trouble.
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(
                f"kintone {method} {path} answered {response.status_code} {_code_of(response)}"
            )
        return response

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        if response.is_success:
            return
        try:
            message = str(response.json().get("message", ""))
        except ValueError:
            message = response.reason_phrase
        raise KintoneError(response.status_code, _code_of(response), message)


def _code_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("code", "")) if isinstance(body, dict) else ""
