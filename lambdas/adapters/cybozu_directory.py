"""The cybozu.com User API (`https://<domain>.cybozu.com/v1/...`): users, organizations, groups.

Credential: a cybozu.com common-administration API token with the Read scope (`Authorization:
Bearer`), or a user's login name and password (`X-Cybozu-Authorization`). Reading needs no
administrator right. kintone app API tokens cannot call this API.

Lists come in pages of at most 100 (`size`, `offset`). A list is returned whole or not at all: a
page that fails, or an answer without the list it should hold, raises instead of returning less,
because the caller revokes keys on what is missing from these lists. Each call is retried on 429,
5xx and transport faults within the invocation; a refused credential is re-read from its secret.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from lambdas.adapters.credentials import Credential, changed_on_refresh
from lambdas.adapters.retries import DEFAULT_RETRY_POLICY, RetryPolicy, call_with_retries
from lambdas.domain.ports import (
    DirectoryError,
    DirectoryOrganization,
    DirectoryUser,
    TransientError,
)
from lambdas.domain.redaction import redact

PAGE_SIZE = 100  # the User API's largest page, and the most login names one users.json call takes
# 100,000 entries: a server that ignored `offset` would otherwise be paged forever.
MAX_PAGES = 1000


def api_token_headers(api_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token}"}


def password_headers(login: str, password: str) -> dict[str, str]:
    credential = base64.b64encode(f"{login}:{password}".encode()).decode()
    return {"X-Cybozu-Authorization": credential}


class CybozuDirectory:
    def __init__(
        self,
        base_url: str,
        credential: Credential,
        timeout_seconds: float,
        *,
        login: str | None = None,
        transport: httpx.BaseTransport | None = None,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    ):
        """`credential` is a common-administration API token, or with `login` that user's password."""
        self._credential = credential
        self._login = login
        self._timeout_seconds = timeout_seconds
        self._retry_policy = retry_policy
        self._client = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_seconds, connect=min(2.0, timeout_seconds)),
            transport=transport,
        )

    def users(self, codes: Sequence[str]) -> list[DirectoryUser]:
        found: list[DirectoryUser] = []
        unique = list(dict.fromkeys(codes))
        for start in range(0, len(unique), PAGE_SIZE):
            batch = unique[start : start + PAGE_SIZE]
            params = {f"codes[{index}]": code for index, code in enumerate(batch)}
            body = self._get("/v1/users.json", params)
            found.extend(_user(entry) for entry in _list_of(body, "users", "/v1/users.json"))
        return found

    def organizations_of(self, user: str) -> list[str]:
        path = "/v1/user/organizations.json"
        titles = _list_of(self._get(path, {"code": user}), "organizationTitles", path)
        return [_code(_field(title, "organization", path), path) for title in titles]

    def groups_of(self, user: str) -> list[str]:
        path = "/v1/user/groups.json"
        return [_code(group, path) for group in _list_of(self._get(path, {"code": user}), "groups", path)]

    def organization_members(self, code: str) -> list[DirectoryUser]:
        path = "/v1/organization/users.json"
        return [_user(_field(title, "user", path)) for title in self._pages(path, "userTitles", code=code)]

    def group_members(self, code: str) -> list[DirectoryUser]:
        return [_user(entry) for entry in self._pages("/v1/group/users.json", "users", code=code)]

    def organizations(self) -> list[DirectoryOrganization]:
        path = "/v1/organizations.json"
        return [
            DirectoryOrganization(code=_code(entry, path), parent_code=entry.get("parentCode") or None)
            for entry in self._pages(path, "organizations")
        ]

    # -- HTTP ------------------------------------------------------------------------------------

    def _pages(self, path: str, key: str, **params: str) -> Iterator[dict[str, Any]]:
        for page in range(MAX_PAGES):
            entries = _list_of(
                self._get(path, {**params, "size": str(PAGE_SIZE), "offset": str(page * PAGE_SIZE)}),
                key,
                path,
            )
            yield from entries
            if len(entries) < PAGE_SIZE:
                return
        raise DirectoryError(f"cybozu {path} listed more than {MAX_PAGES * PAGE_SIZE} entries")

    def _get(self, path: str, params: dict[str, str]) -> Any:
        def send() -> httpx.Response:
            return self._client.get(path, params=params, headers=self._auth_headers())

        # 429 (too many concurrent requests), 5xx and transport faults end in TransientError.
        response = call_with_retries(
            send,
            describe=f"cybozu GET {path}",
            timeout_seconds=self._timeout_seconds,
            safe_to_repeat=True,
            credential_refused=lambda answer: answer.status_code == 401,
            refresh_credential=lambda: changed_on_refresh(self._credential),
            policy=self._retry_policy,
        )
        if not response.is_success:
            raise DirectoryError(
                f"cybozu GET {path} answered {response.status_code} {_code_of(response)}: "
                f"{redact(_message_of(response))}"
            )
        try:
            return response.json()
        except ValueError:
            # A cut-off body is an incomplete answer, not a refusal: a retry may get it whole.
            raise TransientError(f"cybozu GET {path} answered with a body that is not JSON") from None

    def _auth_headers(self) -> dict[str, str]:
        secret = self._credential.current()
        return api_token_headers(secret) if self._login is None else password_headers(self._login, secret)


def _list_of(body: Any, key: str, path: str) -> list[dict[str, Any]]:
    entries = body.get(key) if isinstance(body, dict) else None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise TransientError(f"cybozu GET {path} answered without a list of {key}")
    return entries


def _field(entry: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    value = entry.get(name)
    if not isinstance(value, dict):
        raise TransientError(f"cybozu GET {path} answered an entry without {name}")
    return value


def _code(entry: dict[str, Any], path: str) -> str:
    code = entry.get("code")
    if not isinstance(code, str) or not code:
        raise TransientError(f"cybozu GET {path} answered an entry without a code")
    return code


def _user(entry: dict[str, Any]) -> DirectoryUser:
    code, valid = entry.get("code"), entry.get("valid")
    if not isinstance(code, str) or not isinstance(valid, bool):
        raise TransientError("cybozu answered a user without its code or valid flag")
    return DirectoryUser(code=code, valid=valid)


def _code_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("code", "")) if isinstance(body, dict) else ""


def _message_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    return str(body.get("message", "")) if isinstance(body, dict) else response.reason_phrase
