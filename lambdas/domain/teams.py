"""The team catalog: which LiteLLM teams may hold keys, with their models and budgets."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

TEAM_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class TeamPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[str, ...] = Field(min_length=1)
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
    "platform": {"models": ["fake-gpt", "other-model"], "max_budget": 100.0, "budget_duration": "30d"},
    "research": {"models": ["fake-gpt", "priced-gpt"], "max_budget": 50.0, "budget_duration": "30d"},
}
