"""Who may hold a team's keys: the active members of the organizations and groups the catalog names.

Two ways to ask the directory, for two jobs:
- `standing` asks about one owner (two or three User API calls): issuing a key, and confirming an
  offboarding before a key is revoked;
- `TeamRosters` reads each team's member lists once per sweep (one call per 100 members of each
  organization or group), so checking every issued key costs calls per team, not per owner.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from enum import StrEnum

from lambdas.domain.ports import Directory, DirectoryOrganization, DirectoryUser, KeyState
from lambdas.domain.teams import MemberOrganization, TeamCatalog, TeamMembers

# kintone names the creator of a record added with an API token "Administrator": not a person.
CREATOR_OF_API_WRITES = "Administrator"
ORGANIZATION_TREE_CACHE_SECONDS = 300


class Standing(StrEnum):
    MEMBER = "member"
    NOT_MEMBER = "not_member"
    DEACTIVATED = "deactivated"
    NO_SUCH_USER = "no_such_user"  # deleted, or never existed


class OrganizationTree:
    """Parents of every organization, read when a team includes sub-organizations, kept a few minutes."""

    def __init__(self, directory: Directory, clock: Callable[[], float] = time.monotonic) -> None:
        self._directory = directory
        self._clock = clock
        self._parents: dict[str, str | None] = {}
        self._read_at: float | None = None

    def ancestors_and_self(self, code: str) -> set[str]:
        parents = self._current()
        lineage: set[str] = set()
        while code and code not in lineage:  # a loop in the tree ends the walk
            lineage.add(code)
            code = parents.get(code) or ""
        return lineage

    def descendants_and_self(self, code: str) -> set[str]:
        parents = self._current()
        found = {code}
        grew = True
        while grew:
            children = {child for child, parent in parents.items() if parent in found} - found
            found |= children
            grew = bool(children)
        return found

    def _current(self) -> dict[str, str | None]:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= ORGANIZATION_TREE_CACHE_SECONDS:
            self._parents = _parents_of(self._directory.organizations())
            self._read_at = now
        return self._parents


class Memberships:
    def __init__(self, directory: Directory, clock: Callable[[], float] = time.monotonic) -> None:
        self._directory = directory
        self._tree = OrganizationTree(directory, clock)

    def standing(self, owner: str, members: TeamMembers) -> Standing:
        """Whether `owner` may hold a key of the team with these members, asked about them alone."""
        if not owner or owner == CREATOR_OF_API_WRITES:
            return Standing.NO_SUCH_USER
        user = next((user for user in self._directory.users([owner]) if user.code == owner), None)
        if user is None:
            return Standing.NO_SUCH_USER
        if not user.valid:
            return Standing.DEACTIVATED
        if members.organizations and self._in_organizations(owner, members.organizations):
            return Standing.MEMBER
        if members.groups and set(self._directory.groups_of(owner)) & set(members.groups):
            return Standing.MEMBER
        return Standing.NOT_MEMBER

    def rosters(self) -> TeamRosters:
        """A reader of whole member lists for one sweep."""
        return TeamRosters(self._directory, self._tree)

    def _in_organizations(self, owner: str, wanted: Iterable[MemberOrganization]) -> bool:
        belongs = set(self._directory.organizations_of(owner))
        wanted = tuple(wanted)
        if belongs & {organization.code for organization in wanted}:
            return True
        with_subs = {organization.code for organization in wanted if organization.include_subs}
        if not with_subs or not belongs:
            return False
        return any(self._tree.ancestors_and_self(code) & with_subs for code in belongs)


class TeamRosters:
    """Member lists read once each within one sweep (teams may share organizations and groups)."""

    def __init__(self, directory: Directory, tree: OrganizationTree) -> None:
        self._directory = directory
        self._tree = tree
        self._organizations: dict[str, list[DirectoryUser]] = {}
        self._groups: dict[str, list[DirectoryUser]] = {}

    def members(self, members: TeamMembers) -> dict[str, bool]:
        """Login name → valid, for everyone in the team's organizations and groups."""
        roster: dict[str, bool] = {}
        for organization in members.organizations:
            codes = (
                self._tree.descendants_and_self(organization.code)
                if organization.include_subs
                else {organization.code}
            )
            for code in sorted(codes):
                if code not in self._organizations:
                    self._organizations[code] = self._directory.organization_members(code)
                _add(roster, self._organizations[code])
        for group in members.groups:
            if group not in self._groups:
                self._groups[group] = self._directory.group_members(group)
            _add(roster, self._groups[group])
        return roster


def owners_who_left(
    states: Iterable[KeyState], catalog: TeamCatalog, memberships: Memberships
) -> list[KeyState]:
    """Issued keys whose owner is missing or inactive in their team's member lists.

    Candidates only: the worker asks about each owner alone before it revokes, as a list read while
    people move may miss someone. Any directory failure raises, so a failed read revokes nothing.
    """
    rosters = memberships.rosters()
    by_team: dict[str, dict[str, bool]] = {}
    left = []
    for state in states:
        policy = catalog.get(state.team)
        if policy is None:
            continue  # a team taken out of the catalog is the platform team's call, not an offboarding
        if state.team not in by_team:
            by_team[state.team] = rosters.members(policy.members)
        if by_team[state.team].get(state.owner or state.requested_by) is not True:
            left.append(state)
    return left


def _add(roster: dict[str, bool], users: list[DirectoryUser]) -> None:
    for user in users:
        roster[user.code] = user.valid


def _parents_of(organizations: list[DirectoryOrganization]) -> dict[str, str | None]:
    return {organization.code: organization.parent_code for organization in organizations}
