"""Budget alerts: one comment per event and key on the key's record, to the person who must act."""

from __future__ import annotations

import pytest

from lambdas.domain.alerts import AlertConfig, AlertOutcome, BudgetAlert, BudgetAlerts
from lambdas.domain.key_request import key_hash
from lambdas.domain.provisioning import Outcome
from lambdas.domain.teams import LOCAL_TEAM_CATALOG, TeamCatalog
from tests.unit.fakes import FakeAlertClaims, kintone_record
from tests.unit.test_rotation import APP, World

CATALOG = {**LOCAL_TEAM_CATALOG, "research": {**LOCAL_TEAM_CATALOG["research"], "contact": "hanako"}}


def setup(team: str = "platform") -> tuple[World, BudgetAlerts, FakeAlertClaims, str]:
    world = World()
    world.directory.move("taro", ["platform", "research"])  # the requester may hold keys of either team
    ref = world.records.add(APP, kintone_record("3", team=team, models=["fake-gpt"]))
    assert world.converge(ref).outcome == Outcome.ISSUED
    claims = FakeAlertClaims()
    alerts = BudgetAlerts(
        AlertConfig(
            app_id=APP,
            key_alias_prefix="kintone",
            team_catalog=TeamCatalog.model_validate(CATALOG),
            language="en",
            repeat_after_seconds=3600,
        ),
        records=world.records,
        keys=world.gateway,
        state_store=world.state_store,
        claims=claims,
        clock=lambda: claims.now,
    )
    token = key_hash(world.gateway.keys[f"kintone-{APP}-3"].api_key)
    world.records.comments.clear()
    return world, alerts, claims, token


def key_alert(token: str, event: str = "budget_crossed", **fields) -> BudgetAlert:
    values = {
        "event": event,
        "event_group": "key",
        "event_message": "Key Budget: Budget Crossed",
        "spend": 10.5,
        "max_budget": 10.0,
        "token": token,
        "key_alias": f"kintone-{APP}-3",
        "team_id": "platform",
        **fields,
    }
    return BudgetAlert.model_validate(values)


def test_a_key_alert_becomes_one_comment_mentioning_the_requester() -> None:
    world, alerts, _claims, token = setup()

    assert alerts.handle(key_alert(token)) == AlertOutcome.COMMENTED
    assert alerts.handle(key_alert(token)) == AlertOutcome.DUPLICATE

    [(ref, text, mention)] = world.records.comments
    assert (ref.record_id, mention) == ("3", "taro")
    assert (
        text == "This key's budget is used up (spend 10.50 of 10.00). Requests are refused until it resets."
    )


def test_a_team_alert_names_no_alias_and_mentions_the_teams_contact() -> None:
    world, alerts, _claims, token = setup(team="research")
    alert = BudgetAlert.model_validate(
        {
            "event": "budget_crossed",
            "event_group": "team",
            "spend": 51,
            "max_budget": 50,
            "token": token,
            "team_id": "research",
            "event_message": "Team Budget: Budget Crossed",
        }
    )

    assert alerts.handle(alert) == AlertOutcome.COMMENTED

    [(ref, text, mention)] = world.records.comments
    assert (ref.record_id, mention) == ("3", "hanako")
    assert text.startswith("Team 'research''s budget is used up")


def test_each_threshold_level_and_each_event_comments_once() -> None:
    world, alerts, _claims, token = setup()
    fifteen = key_alert(
        token, "threshold_crossed", event_message="15% or less of budget remaining", spend=8.6
    )
    five = key_alert(token, "threshold_crossed", event_message="5% or less of budget remaining", spend=9.6)
    projected = key_alert(token, "projected_limit_exceeded", projected_exceeded_date="2026-12-20")

    outcomes = [alerts.handle(alert) for alert in (fifteen, fifteen, five, projected, projected)]

    commented, duplicate = AlertOutcome.COMMENTED, AlertOutcome.DUPLICATE
    assert outcomes == [commented, duplicate, commented, commented, duplicate]
    assert "2026-12-20" in world.records.comments[-1][1]


def test_the_same_alert_comments_again_once_the_repeat_window_is_over() -> None:
    world, alerts, claims, token = setup()
    alerts.handle(key_alert(token))
    claims.now += 3601

    assert alerts.handle(key_alert(token)) == AlertOutcome.COMMENTED
    assert len(world.records.comments) == 2


def test_a_failed_comment_releases_the_claim_so_a_repeat_gets_through() -> None:
    world, alerts, _claims, token = setup()
    world.records.fail_comments = True
    with pytest.raises(RuntimeError):
        alerts.handle(key_alert(token))
    world.records.fail_comments = False

    assert alerts.handle(key_alert(token)) == AlertOutcome.COMMENTED


@pytest.mark.parametrize(
    ("event", "alias", "expected"),
    [
        ("key_created", f"kintone-{APP}-3", AlertOutcome.IGNORED),
        ("spend_tracked", f"kintone-{APP}-3", AlertOutcome.IGNORED),
        ("budget_crossed", "someone-elses-key", AlertOutcome.NOT_OURS),
        ("budget_crossed", f"kintone-{APP}-3-next", AlertOutcome.NOT_OURS),
    ],
)
def test_other_events_and_other_keys_comment_nothing(event: str, alias: str, expected: AlertOutcome) -> None:
    world, alerts, _claims, token = setup()

    assert alerts.handle(key_alert(token, event, key_alias=alias)) == expected
    assert world.records.comments == []
