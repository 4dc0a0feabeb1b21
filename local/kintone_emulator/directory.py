"""The cybozu.com directory behind the emulator: users, organizations, groups and their members.

kintone's record permissions, password sign-in and comment mentions read it; the User API under
``/v1/`` (``user_api``) reads and changes it.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .values import format_second

EVERYONE_GROUP = "everyone"  # kintone's built-in group of every user
USER_API_SCOPES = ("READ", "READ_WRITE", "DANGEROUS")  # a common-administration API token's scope


@dataclasses.dataclass(frozen=True)
class User:
    """Who a record, a comment or a deletion is attributed to."""

    code: str
    name: str

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "name": self.name}


# kintone attributes whatever is done with an API token to the built-in administrator account.
API_TOKEN_USER = User("Administrator", "Administrator")


@dataclasses.dataclass
class DirectoryUser:
    id: int
    code: str
    name: str
    password: str | None  # None: the user cannot sign in with a password
    valid: bool = True
    administrator: bool = False  # a cybozu.com administrator
    guest: bool = False
    created_at: float = dataclasses.field(default_factory=time.time)
    modified_at: float = dataclasses.field(default_factory=time.time)

    def as_user(self) -> User:
        return User(self.code, self.name)

    def as_json(self) -> dict[str, Any]:
        """cybozu's User type, with the fields the emulator has (the rest null, as for unset ones)."""
        return {
            "id": str(self.id),
            "code": self.code,
            "ctime": format_second(self.created_at),
            "mtime": format_second(self.modified_at),
            "valid": self.valid,
            "name": self.name,
            "surName": None,
            "givenName": None,
            "surNameReading": None,
            "givenNameReading": None,
            "localName": None,
            "localNameLocale": None,
            "timezone": "Asia/Tokyo",
            "locale": "ja",
            "description": None,
            "phone": None,
            "mobilePhone": None,
            "extensionNumber": None,
            "email": None,
            "callto": None,
            "url": None,
            "employeeNumber": None,
            "birthDate": None,
            "joinDate": None,
            "primaryOrganization": None,
            "sortOrder": None,
            "customItemValues": [],
        }


@dataclasses.dataclass(frozen=True)
class Organization:
    id: int
    code: str
    name: str
    parent_code: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "code": self.code,
            "name": self.name,
            "localName": None,
            "localNameLocale": None,
            "parentCode": self.parent_code,
            "description": None,
        }


@dataclasses.dataclass(frozen=True)
class Group:
    id: int
    code: str
    name: str

    def as_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "code": self.code, "name": self.name, "description": None}


class DirectoryError(ValueError):
    """A change the directory refuses: an unknown code, or a duplicate."""


class Directory:
    """Users, organizations (a tree), groups, memberships and common-administration API tokens.

    Thread-safe; reads return copies or frozen values.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._users: dict[str, DirectoryUser] = {}
        self._organizations: dict[str, Organization] = {}
        self._groups: dict[str, Group] = {}
        self._user_organizations: dict[str, list[tuple[str, str | None]]] = {}  # (org, title)
        self._user_groups: dict[str, list[str]] = {}
        self._api_tokens: dict[str, str] = {}  # token -> scope
        self._next_id = 1

    # ---- building -----------------------------------------------------------------------------

    def add_user(
        self,
        code: str,
        *,
        name: str | None = None,
        password: str | None = None,
        administrator: bool = False,
        valid: bool = True,
        guest: bool = False,
    ) -> DirectoryUser:
        with self._lock:
            if code in self._users:
                raise DirectoryError(f"the user {code!r} already exists")
            user = DirectoryUser(self._new_id(), code, name or code, password, valid, administrator, guest)
            self._users[code] = user
            self._user_organizations[code] = []
            self._user_groups[code] = []
            return dataclasses.replace(user)

    def add_organization(self, code: str, *, name: str | None = None, parent: str | None = None) -> None:
        with self._lock:
            if code in self._organizations:
                raise DirectoryError(f"the organization {code!r} already exists")
            if parent is not None and parent not in self._organizations:
                raise DirectoryError(f"no organization {parent!r} to be the parent of {code!r}")
            self._organizations[code] = Organization(self._new_id(), code, name or code, parent)

    def add_group(self, code: str, *, name: str | None = None) -> None:
        with self._lock:
            if code in self._groups or code == EVERYONE_GROUP:
                raise DirectoryError(f"the group {code!r} already exists")
            self._groups[code] = Group(self._new_id(), code, name or code)

    def add_api_token(self, token: str, scope: str) -> None:
        """A cybozu.com common-administration API token with ``scope`` READ, READ_WRITE or DANGEROUS."""
        if scope not in USER_API_SCOPES:
            raise DirectoryError(f"scope must be one of {USER_API_SCOPES}")
        with self._lock:
            self._api_tokens[token] = scope

    def delete_user(self, code: str) -> None:
        with self._lock:
            self._existing_user(code)
            del self._users[code]
            del self._user_organizations[code]
            del self._user_groups[code]

    # ---- changes the User API makes -------------------------------------------------------------

    def set_valid(self, code: str, valid: bool) -> None:
        with self._lock:
            user = self._existing_user(code)
            user.valid = valid
            user.modified_at = time.time()

    def set_user_organizations(self, code: str, organizations: Iterable[tuple[str, str | None]]) -> None:
        """The full list: an organization left out is one the user leaves."""
        memberships = list(dict.fromkeys(organizations))
        with self._lock:
            self._existing_user(code)
            for org_code, _title in memberships:
                if org_code not in self._organizations:
                    raise DirectoryError(f"no organization {org_code!r}")
            self._user_organizations[code] = memberships

    def set_user_groups(self, code: str, groups: Iterable[str]) -> None:
        """The full list: a group left out is one the user leaves."""
        group_codes = list(dict.fromkeys(groups))
        with self._lock:
            self._existing_user(code)
            for group_code in group_codes:
                if group_code not in self._groups:
                    raise DirectoryError(f"no group {group_code!r}")
            self._user_groups[code] = group_codes

    # ---- reads ----------------------------------------------------------------------------------

    def api_token_scope(self, token: str) -> str | None:
        with self._lock:
            for known, scope in self._api_tokens.items():
                if hmac.compare_digest(known.encode(), token.encode()):
                    return scope
            return None

    def sign_in(self, login: str, password: str) -> DirectoryUser | None:
        """The user, if ``password`` is theirs and they may sign in (not suspended)."""
        with self._lock:
            user = self._users.get(login)
            if user is None or user.password is None or not user.valid:
                return None
            if not hmac.compare_digest(user.password.encode(), password.encode()):
                return None
            return dataclasses.replace(user)

    def user(self, code: str) -> DirectoryUser | None:
        with self._lock:
            user = self._users.get(code)
            return None if user is None else dataclasses.replace(user)

    def users(self) -> list[DirectoryUser]:
        with self._lock:
            return sorted((dataclasses.replace(u) for u in self._users.values()), key=lambda u: u.id)

    def organization(self, code: str) -> Organization | None:
        with self._lock:
            return self._organizations.get(code)

    def organizations(self) -> list[Organization]:
        with self._lock:
            return sorted(self._organizations.values(), key=lambda org: org.id)

    def group(self, code: str) -> Group | None:
        with self._lock:
            return self._groups.get(code)

    def organization_titles_of(self, user_code: str) -> list[tuple[Organization, str | None]]:
        with self._lock:
            self._existing_user(user_code)
            return [
                (self._organizations[org], title)
                for org, title in self._user_organizations[user_code]
                if org in self._organizations
            ]

    def groups_of(self, user_code: str) -> list[Group]:
        with self._lock:
            self._existing_user(user_code)
            return [self._groups[code] for code in self._user_groups[user_code] if code in self._groups]

    def organization_members(self, org_code: str) -> list[DirectoryUser]:
        """Direct members only, as cybozu answers: members of child organizations are not listed."""
        with self._lock:
            return [
                dataclasses.replace(user)
                for user in self.users()
                if any(org == org_code for org, _ in self._user_organizations[user.code])
            ]

    def group_members(self, group_code: str) -> list[DirectoryUser]:
        with self._lock:
            return [dataclasses.replace(u) for u in self.users() if group_code in self._user_groups[u.code]]

    def in_organization(self, user_code: str, org_code: str, *, include_subs: bool) -> bool:
        with self._lock:
            wanted = self._descendants(org_code) if include_subs else {org_code}
            return any(org in wanted for org, _ in self._user_organizations.get(user_code, []))

    def in_group(self, user_code: str, group_code: str) -> bool:
        with self._lock:
            if user_code not in self._users:
                return False
            return group_code == EVERYONE_GROUP or group_code in self._user_groups[user_code]

    # ---- internals ------------------------------------------------------------------------------

    def _new_id(self) -> int:
        new_id = self._next_id
        self._next_id += 1
        return new_id

    def _existing_user(self, code: str) -> DirectoryUser:
        user = self._users.get(code)
        if user is None:
            raise DirectoryError(f"no user {code!r}")
        return user

    def _descendants(self, org_code: str) -> set[str]:
        found = {org_code}
        changed = True
        while changed:
            children = {o.code for o in self._organizations.values() if o.parent_code in found}
            changed = not children <= found
            found |= children
        return found

    # ---- a directory from a file ----------------------------------------------------------------

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Directory:
        """``{"organizations": [{"code", "name"?, "parent"?}], "groups": [{"code", "name"?}],
        "users": [{"code", "name"?, "password"?, "administrator"?, "valid"?, "guest"?,
        "organizations"?: [codes], "groups"?: [codes]}], "api_tokens": [{"token", "scope"}]}``;
        parents come before their children."""
        directory = cls()
        for org in document.get("organizations", []):
            directory.add_organization(org["code"], name=org.get("name"), parent=org.get("parent"))
        for group in document.get("groups", []):
            directory.add_group(group["code"], name=group.get("name"))
        for user in document.get("users", []):
            directory.add_user(
                user["code"],
                name=user.get("name"),
                password=user.get("password"),
                administrator=bool(user.get("administrator", False)),
                valid=bool(user.get("valid", True)),
                guest=bool(user.get("guest", False)),
            )
            directory.set_user_organizations(
                user["code"], [(org, None) for org in user.get("organizations", [])]
            )
            directory.set_user_groups(user["code"], user.get("groups", []))
        for token in document.get("api_tokens", []):
            directory.add_api_token(token["token"], token["scope"])
        return directory

    @classmethod
    def from_file(cls, path: Path) -> Directory:
        return cls.from_document(json.loads(path.read_text(encoding="utf-8")))
