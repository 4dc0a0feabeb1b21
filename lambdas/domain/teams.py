"""The team catalog: which LiteLLM teams may hold keys, with their models, budgets and members."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

TEAM_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# cybozu organization and group codes: up to 100 characters, no whitespace.
DIRECTORY_CODE_PATTERN = r"^\S{1,100}$"


class MemberOrganization(BaseModel):
    """A cybozu organization whose members may hold the team's keys, with its descendants or not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=DIRECTORY_CODE_PATTERN)
    include_subs: bool = False


class TeamMembers(BaseModel):
    """Who may hold the team's keys: the members of these organizations and groups."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    organizations: tuple[MemberOrganization, ...] = ()
    groups: tuple[str, ...] = ()

    @field_validator("groups")
    @classmethod
    def _valid_group_codes(cls, groups: tuple[str, ...]) -> tuple[str, ...]:
        for code in groups:
            if not re.match(DIRECTORY_CODE_PATTERN, code):
                raise ValueError(f"group code {code!r} must be 1 to 100 characters without spaces")
        return groups

    @model_validator(mode="after")
    def _someone(self) -> TeamMembers:
        if not self.organizations and not self.groups:
            raise ValueError("name at least one organization or group whose members may hold the keys")
        return self


class TeamPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[str, ...] = Field(min_length=1)
    members: TeamMembers
    max_budget: float | None = Field(default=None, gt=0)
    budget_duration: str | None = Field(default=None, pattern=r"^[0-9]+[smhd]$|^[0-9]+mo$")
    rpm_limit: int | None = Field(default=None, gt=0)
    tpm_limit: int | None = Field(default=None, gt=0)
    # The kintone login name told when the team's budget runs out (budget alerts).
    contact: str | None = Field(default=None, min_length=1, max_length=128)


class TeamCatalog(RootModel[dict[str, TeamPolicy]]):
    """Team name (as written in the kintone record and used as LiteLLM team_id) → policy."""

    model_config = ConfigDict(frozen=True)

    @field_validator("root")
    @classmethod
    def _valid_names(cls, teams: dict[str, TeamPolicy]) -> dict[str, TeamPolicy]:
        if not teams:
            raise ValueError("the catalog names no team")
        for name in teams:
            if not re.match(TEAM_NAME_PATTERN, name):
                raise ValueError(f"team name {name!r} must match {TEAM_NAME_PATTERN}")
        return teams

    def get(self, name: str) -> TeamPolicy | None:
        return self.root.get(name)

    def names(self) -> list[str]:
        return sorted(self.root)


LOCAL_TEAM_CATALOG = {
    "platform": {
        "models": ["fake-gpt", "other-model"],
        "members": {"organizations": [{"code": "platform", "include_subs": False}]},
        "max_budget": 100.0,
        "budget_duration": "30d",
    },
    "research": {
        "models": ["fake-gpt", "priced-gpt"],
        "members": {"organizations": [{"code": "research", "include_subs": False}]},
        "max_budget": 50.0,
        "budget_duration": "30d",
    },
}
