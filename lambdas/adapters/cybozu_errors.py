"""Error answers of cybozu.com's APIs (kintone's REST API and the User API alike): `{code, id, message}`."""

from __future__ import annotations

import httpx


def error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:  # a proxy's HTML error page, or an empty body: no cybozu code
        return ""
    return str(body.get("code", "")) if isinstance(body, dict) else ""


def error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:  # not cybozu's JSON: the HTTP reason is all there is
        return response.reason_phrase
    return str(body.get("message", "")) if isinstance(body, dict) else response.reason_phrase
