"""A small directory for the emulator's unit tests, and ways to sign in to it."""

from __future__ import annotations

import base64

from local.kintone_emulator.directory import Directory

ADMIN_PASSWORD = "admin-password-for-tests"
READ_TOKEN = "user-api-read-token"
WRITE_TOKEN = "user-api-read-write-token"
DANGEROUS_TOKEN = "user-api-dangerous-token"


def password_of(login: str) -> str:
    return ADMIN_PASSWORD if login == "admin" else f"password-of-{login}"


def password_headers(login: str, password: str | None = None) -> dict[str, str]:
    credentials = f"{login}:{password_of(login) if password is None else password}"
    return {"X-Cybozu-Authorization": base64.b64encode(credentials.encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def build_directory() -> Directory:
    """platform (with child platform-sre) and research; taro, hanako in platform, jiro in research,
    saburo in none, shiro in platform-sre; admin (a cybozu administrator) in llm-operators."""
    users = [
        {"code": "admin", "administrator": True, "groups": ["llm-operators"]},
        {"code": "taro", "name": "Taro", "organizations": ["platform"]},
        {"code": "hanako", "organizations": ["platform"]},
        {"code": "jiro", "organizations": ["research"]},
        {"code": "saburo"},
        {"code": "shiro", "organizations": ["platform-sre"]},
    ]
    directory = Directory.from_document(
        {
            "organizations": [
                {"code": "platform", "name": "Platform"},
                {"code": "platform-sre", "parent": "platform"},
                {"code": "research"},
            ],
            "groups": [{"code": "llm-operators", "name": "LLM operators"}],
            "users": [{**user, "password": password_of(user["code"])} for user in users],
            "api_tokens": [
                {"token": READ_TOKEN, "scope": "READ"},
                {"token": WRITE_TOKEN, "scope": "READ_WRITE"},
                {"token": DANGEROUS_TOKEN, "scope": "DANGEROUS"},
            ],
        }
    )
    return directory
