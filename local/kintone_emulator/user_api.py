"""The cybozu.com User API under ``/v1/``: users, organizations and groups, and the administrator's
writes to a user's state and memberships.

Reads need any valid credential; writes need a cybozu.com administrator's password or a
common-administration token with the "Read and Write" scope (user groups: "Dangerous Zone"), as
cybozu documents. Answers and errors have cybozu's shapes: ids are strings, lists come in id order
and pages are cut with ``offset`` and ``size`` (1-100, default 100).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .auth import DirectoryCaller
from .directory import Directory, DirectoryError
from .errors import KintoneError, invalid_input, invalid_param
from .params import int_param

MAX_PAGE_SIZE = 100
MAX_CODES = 100
MAX_USERS_PER_WRITE = 100
MAX_GROUPS_PER_USER = 1_000

UserApiRoute = Callable[[dict[str, Any], DirectoryCaller], dict[str, Any]]


def _no_permission() -> KintoneError:
    return KintoneError(403, "CB_NO02", "You do not have permission to perform this operation.")


def _page(params: dict[str, Any]) -> tuple[int, int]:
    offset = int_param({"offset": params.get("offset") or 0}, "offset", minimum=0)
    size = int_param({"size": params.get("size") or MAX_PAGE_SIZE}, "size")
    if size > MAX_PAGE_SIZE:
        raise invalid_param("size", f"Must be between 1 and {MAX_PAGE_SIZE}.")
    return offset, size


def _code(params: dict[str, Any], key: str = "code") -> str:
    code = params.get(key)
    if not isinstance(code, str) or not code.strip():
        raise invalid_param(key, "Required field.")
    return code


def _code_list(params: dict[str, Any], key: str) -> list[str] | None:
    values = params.get(key)
    if values is None:
        return None
    if not isinstance(values, list) or not all(isinstance(value, str | int) for value in values):
        raise invalid_param(key, "Must be an array.")
    if len(values) > MAX_CODES:
        raise invalid_param(key, f"Up to {MAX_CODES} can be given.")
    return [str(value) for value in values]


def _unknown(kind: str, code: str) -> KintoneError:
    return invalid_param("code", f"The {kind} ({code}) was not found.")


class UserApi:
    def __init__(self, directory: Directory) -> None:
        self._directory = directory
        self.routes: dict[tuple[str, str], UserApiRoute] = {
            ("GET", "/v1/users.json"): self._get_users,
            ("PUT", "/v1/users.json"): self._update_users,
            ("GET", "/v1/user/organizations.json"): self._get_user_organizations,
            ("GET", "/v1/user/groups.json"): self._get_user_groups,
            ("PUT", "/v1/user/groups.json"): self._update_user_groups,
            ("PUT", "/v1/userOrganizations.json"): self._update_user_organizations,
            ("GET", "/v1/organizations.json"): self._get_organizations,
            ("GET", "/v1/organization/users.json"): self._get_organization_users,
            ("GET", "/v1/group/users.json"): self._get_group_users,
        }

    # ---- reads ----------------------------------------------------------------------------------

    def _get_users(self, params: dict[str, Any], _caller: DirectoryCaller) -> dict[str, Any]:
        ids, codes = _code_list(params, "ids"), _code_list(params, "codes")
        if ids is not None and codes is not None:
            raise invalid_input({"ids": ["Give ids or codes, not both."]})
        offset, size = _page(params)
        users = self._directory.users()
        if ids is not None:
            users = [user for user in users if str(user.id) in ids]
        if codes is not None:
            users = [user for user in users if user.code in codes]
        return {"users": [user.as_json() for user in users[offset : offset + size]]}

    def _get_user_organizations(self, params: dict[str, Any], _caller: DirectoryCaller) -> dict[str, Any]:
        code = _code(params)
        try:
            titles = self._directory.organization_titles_of(code)
        except DirectoryError as error:
            raise _unknown("user", code) from error
        return {
            "organizationTitles": [
                {"organization": org.as_json(), "title": None if title is None else {"code": title}}
                for org, title in titles
            ]
        }

    def _get_user_groups(self, params: dict[str, Any], _caller: DirectoryCaller) -> dict[str, Any]:
        code = _code(params)
        try:
            groups = self._directory.groups_of(code)
        except DirectoryError as error:
            raise _unknown("user", code) from error
        return {"groups": [group.as_json() for group in groups]}

    def _get_organizations(self, params: dict[str, Any], _caller: DirectoryCaller) -> dict[str, Any]:
        ids, codes = _code_list(params, "ids"), _code_list(params, "codes")
        if ids is not None and codes is not None:
            raise invalid_input({"ids": ["Give ids or codes, not both."]})
        offset, size = _page(params)
        organizations = self._directory.organizations()
        if ids is not None:
            organizations = [org for org in organizations if str(org.id) in ids]
        if codes is not None:
            organizations = [org for org in organizations if org.code in codes]
        return {"organizations": [org.as_json() for org in organizations[offset : offset + size]]}

    def _get_organization_users(self, params: dict[str, Any], _caller: DirectoryCaller) -> dict[str, Any]:
        code = _code(params)
        if self._directory.organization(code) is None:
            raise _unknown("organization", code)
        offset, size = _page(params)
        members = self._directory.organization_members(code)[offset : offset + size]
        titles = {
            user.code: title
            for user in members
            for org, title in self._directory.organization_titles_of(user.code)
            if org.code == code
        }
        return {
            "userTitles": [
                {
                    "user": user.as_json(),
                    "title": None if titles.get(user.code) is None else {"code": titles[user.code]},
                }
                for user in members
            ]
        }

    def _get_group_users(self, params: dict[str, Any], _caller: DirectoryCaller) -> dict[str, Any]:
        code = _code(params)
        if self._directory.group(code) is None:
            raise _unknown("group", code)
        offset, size = _page(params)
        return {
            "users": [user.as_json() for user in self._directory.group_members(code)[offset : offset + size]]
        }

    # ---- the administrator's writes -------------------------------------------------------------

    def _update_users(self, params: dict[str, Any], caller: DirectoryCaller) -> dict[str, Any]:
        if not caller.can_write:
            raise _no_permission()
        entries = self._entries(params, "users", MAX_USERS_PER_WRITE)
        changes: list[tuple[str, bool | None]] = []
        for index, entry in enumerate(entries):
            code = _code(entry, "code") if isinstance(entry, dict) else None
            if code is None or self._directory.user(code) is None:
                raise invalid_param(f"users[{index}].code", "The user was not found.")
            valid = entry.get("valid")
            if valid is not None and not isinstance(valid, bool):
                raise invalid_param(f"users[{index}].valid", "Must be true or false.")
            changes.append((code, valid))
        for code, valid in changes:  # all checked first: nothing changes when one entry is bad
            if valid is not None:
                self._directory.set_valid(code, valid)
        return {}

    def _update_user_organizations(self, params: dict[str, Any], caller: DirectoryCaller) -> dict[str, Any]:
        if not caller.can_write:
            raise _no_permission()
        entries = self._entries(params, "userOrganizations", MAX_USERS_PER_WRITE)
        changes: list[tuple[str, list[tuple[str, str | None]]]] = []
        for index, entry in enumerate(entries):
            prefix = f"userOrganizations[{index}]"
            code = _code(entry, "code") if isinstance(entry, dict) else None
            if code is None or self._directory.user(code) is None:
                raise invalid_param(f"{prefix}.code", "The user was not found.")
            organizations = entry.get("organizations")
            if not isinstance(organizations, list) or len(organizations) > MAX_CODES:
                raise invalid_param(f"{prefix}.organizations", f"Give an array of up to {MAX_CODES}.")
            memberships: list[tuple[str, str | None]] = []
            for org_index, org in enumerate(organizations):
                org_code = org.get("orgCode") if isinstance(org, dict) else None
                if not isinstance(org_code, str) or self._directory.organization(org_code) is None:
                    raise invalid_param(
                        f"{prefix}.organizations[{org_index}].orgCode", "The organization was not found."
                    )
                title = org.get("titleCode")
                memberships.append((org_code, title if isinstance(title, str) and title else None))
            changes.append((code, memberships))
        for code, memberships in changes:
            self._directory.set_user_organizations(code, memberships)
        return {}

    def _update_user_groups(self, params: dict[str, Any], caller: DirectoryCaller) -> dict[str, Any]:
        if not caller.can_write_dangerously:
            raise _no_permission()
        code = _code(params)
        if self._directory.user(code) is None:
            raise _unknown("user", code)
        groups = params.get("groups")
        if not isinstance(groups, list) or len(groups) > MAX_GROUPS_PER_USER:
            raise invalid_param("groups", f"Give an array of up to {MAX_GROUPS_PER_USER:,} group codes.")
        for index, group in enumerate(groups):
            if not isinstance(group, str) or self._directory.group(group) is None:
                raise invalid_param(f"groups[{index}]", "The group was not found.")
        self._directory.set_user_groups(code, groups)
        return {}

    @staticmethod
    def _entries(params: dict[str, Any], key: str, limit: int) -> Sequence[Any]:
        entries = params.get(key)
        if not isinstance(entries, list) or not entries:
            raise invalid_param(key, "Required field.")
        if len(entries) > limit:
            raise invalid_param(key, f"Up to {limit} can be given at a time.")
        return entries
