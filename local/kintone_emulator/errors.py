"""Errors answered the way kintone answers them: a status and a ``{code, id, message}`` body."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any


class KintoneError(Exception):
    """An error answered the way kintone answers it: a status and a ``{code, id, message}`` body."""

    def __init__(
        self, status: int, code: str, message: str, errors: Mapping[str, list[str]] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def response_body(self) -> dict[str, Any]:
        # kintone gives every error response a fresh random id for its support desk.
        body: dict[str, Any] = {"code": self.code, "id": secrets.token_urlsafe(15), "message": self.message}
        if self.errors is not None:
            body["errors"] = {key: {"messages": messages} for key, messages in self.errors.items()}
        return body


def invalid_input(errors: Mapping[str, list[str]]) -> KintoneError:
    return KintoneError(400, "CB_VA01", "Missing or invalid input.", errors)


def invalid_param(key: str, message: str) -> KintoneError:
    return invalid_input({key: [message]})


def record_not_found(record_id: int) -> KintoneError:
    return KintoneError(404, "GAIA_RE01", f"The record (id: {record_id}) was not found.")


def revision_conflict() -> KintoneError:
    return KintoneError(409, "GAIA_CO02", "The revision is not the latest; someone else updated the record.")


def query_error() -> KintoneError:
    return invalid_param("query", "The query is not valid.")


def add_error(errors: dict[str, list[str]], key: str, message: str) -> None:
    errors.setdefault(key, []).append(message)


def no_permission() -> KintoneError:
    return KintoneError(403, "CB_NO02", "No privilege to proceed.")
