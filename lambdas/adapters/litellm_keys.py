"""LiteLLM key-management API: teams and virtual keys.

Facts this relies on (LiteLLM 1.108): `key_alias` is unique and a duplicate answers 400 with
param `key_alias`; an unknown `team_id` is accepted silently, so teams are checked here; `/key/update`
replaces `metadata`; `/key/info?key=<sha256>` answers 404 for an unknown key and 200 with
`status: deleted` for a deleted one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from lambdas.adapters.credentials import Credential, changed_on_refresh
from lambdas.adapters.retries import DEFAULT_RETRY_POLICY, RetryPolicy, call_with_retries
from lambdas.domain.key_request import key_hash
from lambdas.domain.ports import KeyChange, KeySpec, KeyUsage
from lambdas.domain.redaction import redact
from lambdas.domain.teams import TeamPolicy

USAGE_PAGE_SIZE = 100  # the largest page /key/list serves


class LiteLLMError(RuntimeError):
    """LiteLLM refused a request for a reason a retry will not fix."""

    def __init__(self, status: int, error_type: str, param: str, message: str) -> None:
        self.status = status
        self.error_type = error_type
        self.param = param
        super().__init__(f"LiteLLM answered {status} {error_type} (param {param}): {redact(message)}")


class LiteLLMKeyGateway:
    def __init__(
        self,
        base_url: str,
        master_key: Credential,
        timeout_seconds: float,
        client: httpx.Client | None = None,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    ):
        self._master_key = master_key
        self._timeout_seconds = timeout_seconds
        self._retry_policy = retry_policy
        self._client = client or httpx.Client(
            base_url=base_url, timeout=httpx.Timeout(timeout_seconds, connect=min(2.0, timeout_seconds))
        )
        self._known_teams: dict[str, TeamPolicy] = {}
        self._teams_lock = threading.Lock()

    # -- teams -----------------------------------------------------------------------------------

    def ensure_team(self, team_id: str, policy: TeamPolicy) -> None:
        """Create the team, or bring an existing one to the catalog's policy (budget, limits,
        models). Checked once per team and policy in a container's life."""
        if self._known_teams.get(team_id) == policy:
            return
        with self._teams_lock:
            if self._known_teams.get(team_id) == policy:
                return
            # Created outright rather than looked up first: /team/info lists every key of the team
            # and slows down as a team grows, while /team/new answers 400 "already exists" at once.
            body = {"team_id": team_id, "team_alias": team_id, **_team_fields(policy)}
            body = {name: value for name, value in body.items() if value is not None}
            created = self._request("POST", "/team/new", json=body)
            if created.status_code == 400 and "already exists" in created.text:
                self._update_team(team_id, policy)
            else:
                self._raise_for_status(created)
            self._known_teams[team_id] = policy

    def _update_team(self, team_id: str, policy: TeamPolicy) -> None:
        """Send only what differs. /team/update sets exactly the fields it is given (null unsets),
        and a budget_duration sent again restarts the budget period, so an unchanged one is left out."""
        listed = self._request("GET", "/v2/team/list", params={"team_id": team_id})
        self._raise_for_status(listed)
        teams = [team for team in listed.json().get("teams") or [] if team.get("team_id") == team_id]
        stored = teams[0] if teams else {}
        changes = {
            name: value
            for name, value in _team_fields(policy).items()
            if (stored.get(name) or None) != (value or None)
            and not (name == "models" and sorted(stored.get("models") or []) == sorted(value))
        }
        if changes:
            updated = self._request("POST", "/team/update", json={"team_id": team_id, **changes})
            self._raise_for_status(updated)

    # -- keys ------------------------------------------------------------------------------------

    def create_key(self, spec: KeySpec) -> None:
        response = self._generate(spec)
        if self._is_duplicate_alias(response):
            # The alias is held by a key whose value is not in our secret (the secret was lost or
            # replaced). The record must end with exactly one key, so the orphan goes.
            self.delete_keys([spec.alias])
            response = self._generate(spec)
        self._raise_for_status(response)

    def upsert_key(self, spec: KeySpec) -> list[KeyChange]:
        info = self._key_info(spec.api_key)
        if info is None:
            self.create_key(spec)
            return [KeyChange.CREATED]
        if info.get("key_alias") != spec.alias:
            # Our secret's value belongs to a key under another alias: never adopt it.
            raise LiteLLMError(409, "alias_mismatch", "key_alias", "the stored key carries another alias")
        changes: list[KeyChange] = []
        if info.get("team_id") != spec.team_id:
            changes.append(KeyChange.TEAM)
        if tuple(info.get("models") or ()) != spec.models:
            changes.append(KeyChange.MODELS)
        if (info.get("metadata") or {}) != spec.metadata:
            changes.append(KeyChange.METADATA)
        if KeyChange.TEAM in changes:
            # LiteLLM checks the key's current models against the new team and refuses a move
            # while they differ, so the models are cleared (= all of the old team's) first.
            self._raise_for_status(
                self._request("POST", "/key/update", json={"key": spec.api_key, "models": []})
            )
        if changes:
            self._raise_for_status(
                self._request(
                    "POST",
                    "/key/update",
                    json={
                        "key": spec.api_key,
                        "team_id": spec.team_id,
                        "models": list(spec.models),
                        "metadata": spec.metadata,  # replaces, so always the whole dict
                    },
                )
            )
        return changes

    def delete_keys(self, aliases: Sequence[str]) -> bool:
        """One call for all: LiteLLM answers 200 when any of them existed, 404 when none did."""
        response = self._request("POST", "/key/delete", json={"key_aliases": list(aliases)})
        if response.status_code == 404:
            return False
        self._raise_for_status(response)
        return True

    def delete_key_with_hash(self, key_hash: str) -> bool:
        """/key/delete takes LiteLLM's token (the SHA-256) as well as the key; 404 when it is gone."""
        response = self._request("POST", "/key/delete", json={"keys": [key_hash]})
        if response.status_code == 404:
            return False
        self._raise_for_status(response)
        return True

    def alias_of(self, api_key: str) -> str | None:
        return self.alias_of_hash(key_hash(api_key))

    def alias_of_hash(self, key_hash: str) -> str | None:
        info = self._key_info_by_hash(key_hash)
        return None if info is None else info.get("key_alias")

    def rename_key(self, api_key: str, alias: str) -> None:
        response = self._request("POST", "/key/update", json={"key": api_key, "key_alias": alias})
        self._raise_for_status(response)

    def key_works(self, api_key: str, model: str) -> bool:
        """A real, cheap request with the key itself: the proof a user's client would get."""
        response = self._client.post(
            "/chat/completions",
            headers={"Authorization": f"Bearer {api_key}"},
            json={"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1},
        )
        return response.status_code == 200

    # -- usage -----------------------------------------------------------------------------------

    def key_usage(self, alias_contains: str) -> Iterator[KeyUsage]:
        """Spend and budget of the keys whose alias contains `alias_contains` (case-insensitive), a
        page of full key objects per call, oldest first so keys created meanwhile join the end."""
        page = 1
        while True:
            response = self._request(
                "GET",
                "/key/list",
                params={
                    "return_full_object": "true",
                    "key_alias": alias_contains,
                    "substring_matching": "true",
                    "sort_by": "created_at",
                    "sort_order": "asc",
                    "page": page,
                    "size": USAGE_PAGE_SIZE,
                },
            )
            self._raise_for_status(response)
            body = response.json()
            for key in body.get("keys") or []:
                if isinstance(key, dict) and key.get("key_alias") and key.get("token"):
                    yield KeyUsage(
                        key_alias=key["key_alias"],
                        key_hash=key["token"],
                        spend=float(key.get("spend") or 0.0),
                        max_budget=key.get("max_budget"),
                        budget_reset_at=key.get("budget_reset_at"),
                    )
            if page >= int(body.get("total_pages") or 1):
                return
            page += 1

    # -- plumbing --------------------------------------------------------------------------------

    def _generate(self, spec: KeySpec) -> httpx.Response:
        return self._request(
            "POST",
            "/key/generate",
            json={
                "key": spec.api_key,
                "key_alias": spec.alias,
                "team_id": spec.team_id,
                "models": list(spec.models),
                "metadata": spec.metadata,
            },
        )

    def _key_info(self, api_key: str) -> dict[str, Any] | None:
        """The key as LiteLLM stores it (blocked or not); None if it is missing or deleted.

        Looked up by its SHA-256 (LiteLLM's token) with the master key: the key itself never sits
        in a URL, and a key an admin blocked is still found rather than mistaken for a missing one.
        """
        return self._key_info_by_hash(key_hash(api_key))

    def _key_info_by_hash(self, token: str) -> dict[str, Any] | None:
        response = self._request("GET", "/key/info", params={"key": token})
        if response.status_code == 404:
            return None
        self._raise_for_status(response)
        info = response.json().get("info") or {}
        return None if info.get("status") == "deleted" else info

    @staticmethod
    def _is_duplicate_alias(response: httpx.Response) -> bool:
        if response.status_code != 400:
            return False
        error = _error_of(response)
        return error.get("param") == "key_alias"

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, retried on 429, 5xx and transport faults; every call here is safe to repeat (a
        repeated generate meets its own alias and replaces it with the same value). A refused master
        key is re-read from its secret and tried once more."""

        def send() -> httpx.Response:
            headers = {"Authorization": f"Bearer {self._master_key.current()}"}
            return self._client.request(method, path, headers=headers, **kwargs)

        return call_with_retries(
            send,
            describe=f"LiteLLM {method} {path}",
            timeout_seconds=self._timeout_seconds,
            safe_to_repeat=True,
            credential_refused=lambda response: response.status_code in (401, 403),
            refresh_credential=lambda: changed_on_refresh(self._master_key),
            policy=self._retry_policy,
        )

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        if response.is_success:
            return
        error = _error_of(response)
        raise LiteLLMError(
            response.status_code,
            str(error.get("type", "")),
            str(error.get("param", "")),
            str(error.get("message", response.reason_phrase)),
        )


def _team_fields(policy: TeamPolicy) -> dict[str, Any]:
    """The team's settings as LiteLLM names them; None where the catalog sets no limit."""
    return {
        "models": list(policy.models),
        "max_budget": policy.max_budget,
        "budget_duration": policy.budget_duration,
        "rpm_limit": policy.rpm_limit,
        "tpm_limit": policy.tpm_limit,
    }


def _error_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    if isinstance(body, dict) and "detail" in body:  # FastAPI validation error (422)
        return {"type": "validation_error", "message": str(body["detail"])[:500]}
    return {}
