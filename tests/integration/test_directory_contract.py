"""The fake directory behaves like the real User API client: the same checks against both.

`fake` is tests/unit/fakes.FakeDirectory; `user-api` is CybozuDirectory over HTTP against the
emulator's cybozu.com User API, with a Read-scope common-administration token, changed through the
administrator's User API writes. Both start from the local directory (local/kintone_directory.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from lambdas.adapters.cybozu_directory import CybozuDirectory
from lambdas.domain.membership import Memberships, Standing
from lambdas.domain.ports import Directory, DirectoryError
from lambdas.domain.teams import TeamMembers
from tests.integration.conftest import LocalStack
from tests.unit.fakes import FakeDirectory

pytestmark = pytest.mark.integration


class FixedToken:
    """The session's Read-scope User API token, as SecretCredential would hand it over."""

    def __init__(self, token: str) -> None:
        self._token = token

    def current(self) -> str:
        return self._token

    def refreshed(self) -> str:
        return self._token


@dataclass
class Side:
    directory: Directory
    deactivate: Callable[[str], None]
    reactivate: Callable[[str], None]
    move: Callable[[str, list[str]], None]


@pytest.fixture(params=["fake", "user-api"])
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    if request.param == "fake":
        fake = FakeDirectory()
        yield Side(
            fake,
            fake.deactivate,
            lambda user: fake.valid.__setitem__(user, True),
            fake.move,
        )
        return
    stack: LocalStack = request.getfixturevalue("local_stack")
    real = CybozuDirectory(stack.kintone_url, FixedToken(stack.user_api_token), 5)
    yield Side(
        real,
        stack.deactivate_user,
        lambda user: stack.deactivate_user(user, valid=True),
        lambda user, organizations: stack.move_user(user, *organizations),
    )
    stack.deactivate_user("jiro", valid=True)
    stack.move_user("jiro", "research")


def codes(users) -> set[str]:
    return {user.code for user in users}


def test_users_are_found_by_login_name_with_their_valid_flag(side: Side) -> None:
    found = side.directory.users(["taro", "jiro", "nobody", "taro"])
    assert {(user.code, user.valid) for user in found} == {("taro", True), ("jiro", True)}


def test_a_users_organizations_and_groups(side: Side) -> None:
    assert side.directory.organizations_of("taro") == ["platform"]
    assert side.directory.organizations_of("saburo") == []
    assert "llm-operators" in side.directory.groups_of("admin")
    assert "llm-operators" not in side.directory.groups_of("taro")


def test_member_lists_hold_direct_members_only(side: Side) -> None:
    platform = codes(side.directory.organization_members("platform"))
    assert {"taro", "hanako"} <= platform
    assert not {"jiro", "saburo", "admin"} & platform
    assert codes(side.directory.organization_members("research")) == {"jiro"}
    assert codes(side.directory.organization_members("platform-sre")) == set()
    assert codes(side.directory.group_members("llm-operators")) == {"admin"}


def test_the_organization_tree(side: Side) -> None:
    parents = {org.code: org.parent_code for org in side.directory.organizations()}
    assert parents == {"platform": None, "platform-sre": "platform", "research": None}


@pytest.mark.parametrize(
    "ask",
    [
        lambda directory: directory.organizations_of("nobody"),
        lambda directory: directory.groups_of("nobody"),
        lambda directory: directory.organization_members("no-such-org"),
        lambda directory: directory.group_members("no-such-group"),
    ],
    ids=["user-orgs", "user-groups", "org-members", "group-members"],
)
def test_unknown_codes_are_refused(side: Side, ask) -> None:
    with pytest.raises(DirectoryError):
        ask(side.directory)


def test_a_deactivated_user_stays_listed_as_not_valid(side: Side) -> None:
    side.deactivate("jiro")
    try:
        assert [user.valid for user in side.directory.users(["jiro"])] == [False]
        assert {(user.code, user.valid) for user in side.directory.organization_members("research")} == {
            ("jiro", False)
        }
    finally:
        side.reactivate("jiro")


def test_moving_a_user_replaces_their_organizations(side: Side) -> None:
    side.move("jiro", ["platform"])
    assert side.directory.organizations_of("jiro") == ["platform"]
    assert "jiro" in codes(side.directory.organization_members("platform"))
    assert codes(side.directory.organization_members("research")) == set()


def test_standing_in_a_team_reads_the_same_from_both(side: Side) -> None:
    memberships = Memberships(side.directory)
    platform = TeamMembers.model_validate({"organizations": [{"code": "platform"}]})
    operators = TeamMembers.model_validate({"groups": ["llm-operators"]})

    assert memberships.standing("hanako", platform) == Standing.MEMBER
    assert memberships.standing("jiro", platform) == Standing.NOT_MEMBER
    assert memberships.standing("nobody", platform) == Standing.NO_SUCH_USER
    assert memberships.standing("admin", operators) == Standing.MEMBER
    side.deactivate("jiro")
    try:
        assert memberships.standing("jiro", platform) == Standing.DEACTIVATED
    finally:
        side.reactivate("jiro")
