"""The cybozu.com directory the local stack and the integration tests give the kintone emulator.

Organizations ``platform`` (with the child ``platform-sre``) and ``research``; users ``taro`` and
``hanako`` in platform, ``jiro`` in research, ``saburo`` in none; ``admin``, a cybozu.com
administrator and the app's creator, in the group ``llm-operators``. Team ``platform`` of the local
catalog is held by organization ``platform``, team ``research`` by ``research``. Passwords are made
at random for each stack; the User API token has the Read scope (the directory adapter only reads).
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

ADMIN_LOGIN = "admin"
OPERATORS_GROUP = "llm-operators"
ORGANIZATIONS = (("platform", None), ("platform-sre", "platform"), ("research", None))
DEMO_USERS: dict[str, tuple[str, ...]] = {  # login -> organizations, which are also the teams
    "taro": ("platform",),
    "hanako": ("platform",),
    "jiro": ("research",),
    "saburo": (),
}
DIRECTORY_READ_SCOPE = "READ"


def new_passwords() -> dict[str, str]:
    """A random password for every user of the directory, admin too."""
    return {login: secrets.token_urlsafe(18) for login in (*DEMO_USERS, ADMIN_LOGIN)}


def new_user_api_token() -> str:
    return secrets.token_urlsafe(32)


def directory_document(passwords: dict[str, str], user_api_token: str) -> dict[str, Any]:
    """The directory, as the emulator's ``--directory`` file and ``Directory.from_document`` take it."""
    return {
        "organizations": [{"code": code, "parent": parent} for code, parent in ORGANIZATIONS],
        "groups": [{"code": OPERATORS_GROUP, "name": "LLM operators"}],
        "users": [
            {
                "code": ADMIN_LOGIN,
                "password": passwords[ADMIN_LOGIN],
                "administrator": True,
                "groups": [OPERATORS_GROUP],
            },
            *(
                {"code": login, "password": passwords[login], "organizations": list(organizations)}
                for login, organizations in DEMO_USERS.items()
            ),
        ],
        "api_tokens": [{"token": user_api_token, "scope": DIRECTORY_READ_SCOPE}],
    }


def demo_users(passwords: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``KINTONE_DEMO_USERS``: login -> {"password", "teams"}."""
    return {
        login: {"password": passwords[login], "teams": list(organizations)}
        for login, organizations in DEMO_USERS.items()
    }


def password_header(login: str, password: str) -> dict[str, str]:
    """kintone's and the User API's password authentication."""
    return {"X-Cybozu-Authorization": base64.b64encode(f"{login}:{password}".encode()).decode()}


def demo_user_headers(stack_env: dict[str, str], login: str) -> dict[str, str]:
    """Sign in as one of the stack's demo users (``KINTONE_DEMO_USERS`` in ``.local/env``)."""
    user = json.loads(stack_env["KINTONE_DEMO_USERS"])[login]
    return password_header(login, user["password"])
