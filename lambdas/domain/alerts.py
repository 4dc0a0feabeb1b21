"""Budget alerts from LiteLLM become one comment each on the key's record, mentioning who must act.

LiteLLM's webhook alerting (`alerting: ["webhook"]`, WEBHOOK_URL) posts its `WebhookEvent` as JSON
with no signature and no header of ours, so the URL token is the credential and the payload only
names a key: the record and the person to tell come from our own state and team catalog. LiteLLM
remembers what it sent for a day in one process only (restarts and other tasks send again), so each
alert is claimed once per event, key and budget before it is commented.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from lambdas.domain import messages
from lambdas.domain.ports import RecordRef, StateStore
from lambdas.domain.teams import TeamCatalog
from lambdas.domain.usage import record_id_of_alias

# LiteLLM's budget events that reach a person; the others (key_created, spend_tracked, …) do not.
BUDGET_EVENTS = ("budget_crossed", "threshold_crossed", "projected_limit_exceeded")
TEAM_GROUP = "team"


class BudgetAlert(BaseModel):
    """The fields of LiteLLM's WebhookEvent (litellm/types/integrations/slack_alerting.py) used here."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event: str
    event_group: str
    event_message: str = ""
    spend: float
    max_budget: float | None = None
    token: str | None = None  # the key's SHA-256, as LiteLLM stores it
    key_alias: str | None = None  # absent from team budget alerts
    team_id: str | None = None
    projected_exceeded_date: str | None = None


class AlertOutcome(StrEnum):
    COMMENTED = "commented"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"  # an event nobody needs to be told of here
    NOT_OURS = "not_ours"  # a key of another app or of no record


class KeyDirectory(Protocol):
    def alias_of_hash(self, key_hash: str) -> str | None:
        """The alias of the key with this SHA-256; None if there is no such key."""
        ...


class AlertClaims(Protocol):
    def claim(self, alert_id: str, expires_at: float) -> bool:
        """True for the first claim of `alert_id` until `expires_at`; False when it was claimed."""
        ...

    def release(self, alert_id: str) -> None:
        """Undo a claim whose comment could not be posted, so a repeat of the alert gets through."""
        ...


class Commenter(Protocol):
    def add_comment(self, ref: RecordRef, text: str, mention_user: str) -> None: ...


@dataclass(frozen=True)
class AlertConfig:
    app_id: str
    key_alias_prefix: str
    team_catalog: TeamCatalog
    language: messages.Language
    repeat_after_seconds: int


class BudgetAlerts:
    def __init__(
        self,
        config: AlertConfig,
        records: Commenter,
        keys: KeyDirectory,
        state_store: StateStore,
        claims: AlertClaims,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._records = records
        self._keys = keys
        self._state_store = state_store
        self._claims = claims
        self._clock = clock

    def handle(self, alert: BudgetAlert) -> AlertOutcome:
        if alert.event not in BUDGET_EVENTS:
            return AlertOutcome.IGNORED
        alias = alert.key_alias or (self._keys.alias_of_hash(alert.token) if alert.token else None)
        record_id = (
            record_id_of_alias(self._config.key_alias_prefix, self._config.app_id, alias) if alias else None
        )
        if record_id is None:
            return AlertOutcome.NOT_OURS
        ref = RecordRef(app_id=self._config.app_id, record_id=record_id)
        state = self._state_store.get(ref)
        team = alert.team_id or (state.team if state else "")
        requester = state.requested_by if state else ""
        mention = requester
        if alert.event_group == TEAM_GROUP:
            policy = self._config.team_catalog.get(team)
            mention = (policy.contact if policy else None) or requester

        if not self._claims.claim(
            _alert_id(alert, alias or ""), self._clock() + self._config.repeat_after_seconds
        ):
            return AlertOutcome.DUPLICATE
        try:
            self._records.add_comment(ref, self._text(alert, team), mention)
        except Exception:
            self._claims.release(_alert_id(alert, alias or ""))
            raise
        return AlertOutcome.COMMENTED

    def _text(self, alert: BudgetAlert, team: str) -> str:
        language = self._config.language
        whose = (
            messages.render("budget_of_team", language, team=team)
            if alert.event_group == TEAM_GROUP
            else messages.render("budget_of_key", language)
        )
        return messages.render(
            f"comment_{alert.event}",
            language,
            whose=whose,
            spend=_money(alert.spend),
            max_budget="-" if alert.max_budget is None else _money(alert.max_budget),
            date=alert.projected_exceeded_date or "-",
        )


def _alert_id(alert: BudgetAlert, alias: str) -> str:
    """One per event, entity and budget: a new budget may cross again and is worth a new comment.
    Threshold events carry their level (15 % or 5 % left) in the message only, so it is part of it."""
    level = alert.event_message if alert.event == "threshold_crossed" else ""
    parts = (alert.event, alert.event_group, alert.token or alias, str(alert.max_budget), level)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _money(value: float) -> str:
    return f"{value:,.2f}"
