"""The local stack's cybozu.com directory, served by the kintone emulator's User API.

Organizations `platform` (with `platform-sre` under it) and `research`; `taro` and `hanako` in
platform, `jiro` in research, `saburo` in none; `admin`, a cybozu.com administrator, in the group
`llm-operators`. The local team catalog gives team platform to organization platform and team
research to organization research. Passwords and the Read-scope API token are random per stack.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

ADMIN_LOGIN = "admin"
OPERATORS_GROUP = "llm-operators"
# Login → the organizations they belong to (each local team is held by the organization of its name).
MEMBERS: dict[str, list[str]] = {
    "taro": ["platform"],
    "hanako": ["platform"],
    "jiro": ["research"],
    "saburo": [],
}
ORGANIZATIONS: list[dict[str, str]] = [
    {"code": "platform", "name": "Platform"},
    {"code": "platform-sre", "name": "Platform SRE", "parent": "platform"},
    {"code": "research", "name": "Research"},
]
USER_API_TOKEN_SECRET = "cybozu_user_api_token"  # noqa: S105 - the name of a stack secret, not one


def password_secret(login: str) -> str:
    return f"password_{login}"


def new_directory_secrets() -> dict[str, str]:
    """Passwords of every local user and a Read-scope User API token, to keep in the stack secrets."""
    alphabet = string.ascii_letters + string.digits
    values = {password_secret(login): secrets.token_urlsafe(18) for login in [*MEMBERS, ADMIN_LOGIN]}
    values[USER_API_TOKEN_SECRET] = "".join(secrets.choice(alphabet) for _ in range(40))
    return values


def directory_document(stack_secrets: dict[str, str]) -> dict[str, Any]:
    """The emulator's `--directory` file."""
    users = [
        {"code": login, "name": login.title(), "password": stack_secrets[password_secret(login)],
         "organizations": organizations}
        for login, organizations in MEMBERS.items()
    ]  # fmt: skip
    users.append(
        {
            "code": ADMIN_LOGIN,
            "name": "Administrator of the directory",
            "password": stack_secrets[password_secret(ADMIN_LOGIN)],
            "administrator": True,
            "groups": [OPERATORS_GROUP],
        }
    )
    return {
        "organizations": ORGANIZATIONS,
        "groups": [{"code": OPERATORS_GROUP, "name": "LLM operators"}],
        "users": users,
        "api_tokens": [{"token": stack_secrets[USER_API_TOKEN_SECRET], "scope": "READ"}],
    }


def demo_users(stack_secrets: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`KINTONE_DEMO_USERS`: login → their password and the local teams they may hold keys of."""
    return {
        login: {"password": stack_secrets[password_secret(login)], "teams": organizations}
        for login, organizations in MEMBERS.items()
    }
