"""The explorer's proof: the invariants hold on every schedule it runs (see explorer.py)."""

from __future__ import annotations

import os
import time

import pytest

from lambdas.domain import reconciliation, rotation
from lambdas.domain.key_request import RecordStatus
from tests.unit.fakes import FakeStateStore
from tests.unit.schedules import explorer

# Seeded random schedules with crashes; EXPLORER_SCHEDULES asks for more on a longer run.
RANDOM_SCHEDULES = int(os.environ.get("EXPLORER_SCHEDULES", "10000"))
COVERED: dict[str, tuple[int, float]] = {
    "every interleaving of two actors with one preemption": (0, 0.0),
    "seeded random schedules of up to three actors, with crashes": (0, 0.0),
}


def test_every_interleaving_of_two_actors_that_switches_once() -> None:
    started, count = time.perf_counter(), 0
    for scenario in explorer.SCENARIOS:
        for actors in explorer.actor_sets(scenario):
            if len(actors) == 2:
                count += sum(1 for _ in explorer.every_interleaving(scenario, actors, max_preemptions=1))
    COVERED["every interleaving of two actors with one preemption"] = (count, time.perf_counter() - started)
    assert count > 500  # the search really ran


def test_seeded_random_schedules_of_up_to_three_actors_with_crashes() -> None:
    started = time.perf_counter()
    crashes = 0
    for seed in range(RANDOM_SCHEDULES):
        crashes += explorer.random_schedule(seed).crashes
    COVERED["seeded random schedules of up to three actors, with crashes"] = (
        RANDOM_SCHEDULES,
        time.perf_counter() - started,
    )
    assert crashes > RANDOM_SCHEDULES // 2  # crashes really happened


# -- the explorer finds the defects it was built for -------------------------------------------------


def retire_by_alias(self) -> int:
    """Defect 7 as it was: the retiring alias, whatever key holds it now."""
    due = self._state_store.due_retirements(self._clock())
    for retirement in due:
        self._gateway.delete_keys([retirement.key_alias])
        self._state_store.clear_retirement(retirement)
    return len(due)


def unconditional_put(self, state, expected):
    """Defect 1 as it was: a state write that overwrites whatever another actor stored meanwhile."""
    self.states[(state.app_id, state.record_id)] = state
    return state


def skip_failed_records(self, ref, status, text, api_key=None):
    """Defect 2 as it was: the rotation does not show its new key on a Failed record."""
    raw = self._records.get_record(ref)
    if raw is not None and raw["status"]["value"] == RecordStatus.FAILED:
        return int(raw["$revision"]["value"]), False
    return original_write_back(self, ref, status, text, api_key)


original_write_back = rotation.KeyRotator._write_back


@pytest.mark.parametrize(
    ("defect", "target", "name", "replacement"),
    [
        ("1", FakeStateStore, "put", unconditional_put),
        ("2", rotation.KeyRotator, "_write_back", skip_failed_records),
        ("7", reconciliation.Reconciler, "retire_due_keys", retire_by_alias),
    ],
)
def test_a_reintroduced_defect_fails_a_schedule_that_prints_its_steps_and_replays_from_its_seed(
    monkeypatch: pytest.MonkeyPatch, defect: str, target: type, name: str, replacement
) -> None:
    monkeypatch.setattr(target, name, replacement)
    failure = None
    for seed in range(3000):
        try:
            explorer.random_schedule(seed)
        except explorer.ScheduleError as error:
            failure = (seed, str(error))
            break
    assert failure is not None, f"defect {defect} went unnoticed"
    seed, text = failure
    assert f"schedule seed={seed}:" in text
    assert "    1. " in text  # a numbered list of steps
    assert f"--seed {seed}" in text
    with pytest.raises(explorer.ScheduleError) as again:
        explorer.random_schedule(seed)
    assert str(again.value) == text  # the seed replays the same schedule
