"""A deterministic schedule explorer: the domain's actors interleaved at every call they make to a port.

Each actor (a worker handling a user's save or an owner's departure, the rotator's four steps, a
reconciler sweep with its retirements, a user's bulk delete) runs in its own greenlet over one set
of in-memory fakes. Every
call a service makes to a port first hands control back to the explorer, which picks the actor that
goes next, or crashes the caller there: its invocation dies before the call and runs again from the
start, as SQS redelivers a message, Secrets Manager repeats a rotation step and the schedule runs the
reconciler again. A seed fixes every choice, so a failing schedule replays exactly.

After the actors stop, every schedule is checked against the issue's invariants; then the clock
moves past the grace period, the sweep runs and the worker drains its queue, and every record must
have converged. Run `python -m tests.unit.schedules.explorer --seed N` to print one schedule.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import greenlet

from lambdas.domain.key_request import RecordStatus, key_hash
from lambdas.domain.ports import KeySpec, KeyState, RecordRef
from lambdas.domain.provisioning import every_alias
from lambdas.domain.rotation import RotationRefusedError, RotationStep
from lambdas.domain.teams import LOCAL_TEAM_CATALOG
from lambdas.domain.webhook_events import WorkItem
from tests.unit.fakes import kintone_record
from tests.unit.world import APP, GRACE, World

REF = RecordRef(app_id=APP, record_id="1")
ALIAS = f"kintone-{APP}-1"
SECRET_ID = f"keys/app-{APP}/record-1"
MAX_STEPS = 600  # a schedule longer than this is a livelock
MAX_ATTEMPTS = 4  # deliveries of one message (or tries of one step) within a schedule
CRASH_CHANCE = 0.06
STICKINESS = (0.0, 0.7, 0.9)  # the chance that the actor that ran last goes on
MAX_CRASHES = 2


class ScheduleError(AssertionError):
    """A schedule broke an invariant; its text is the readable schedule and the seed."""


class ProcessCrashError(BaseException):
    """The process running an actor died: no handler of the code under test runs (not an Exception)."""


# -- actors -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """One run of a handler (or one user action), retried as its trigger would retry it."""

    label: str
    call: Callable[[World], object]
    kind: str  # "user" (one step, never crashes), "worker", "rotation", "sweep"


@dataclass(frozen=True)
class Actor:
    name: str
    invocations: tuple[Invocation, ...]


class RecordGoneError(RuntimeError):
    """The user cannot save a record that is gone, and no webhook follows."""


def _user(label: str, action: Callable[[World], object]) -> Invocation:
    def act(world: World) -> None:
        _explorer_of(world).point(Call("user", f"user {label}", crashable=False))
        if (APP, "1") not in world.records.records:
            raise RecordGoneError
        action(world)

    return Invocation(f"user {label}", act, "user")


def _converge(trigger: str) -> Invocation:
    item = WorkItem(app_id=APP, record_id="1", trigger=trigger, received_at=0.0)
    return Invocation(
        f"worker converges ({trigger})", lambda world: world.provisioner.converge(item), "worker"
    )


def _edit(label: str, **values: Any) -> Actor:
    return Actor(
        f"worker after a save ({label})",
        (
            _user(f"saves {label}", lambda world: world.records.edit(REF, **values)),
            _converge("UPDATE_RECORD"),
        ),
    )


def _delete_with_webhook() -> Actor:
    return Actor(
        "worker after a delete",
        (_user("deletes the record", lambda world: world.records.delete(REF)), _converge("DELETE_RECORD")),
    )


def _owner_leaves() -> Actor:
    """The key's owner is deactivated in cybozu.com; a sweep found it and the worker, after asking
    the directory about them again, revokes."""
    return Actor(
        "worker after the owner left",
        (
            _user("'s owner is deactivated", lambda world: world.directory.deactivate("taro")),
            _converge("OFFBOARD"),
        ),
    )


def _rotator(token: str) -> Actor:
    def step(step: RotationStep) -> Invocation:
        return Invocation(step.value, lambda world: world.rotator.run(SECRET_ID, token, step), "rotation")

    return Actor("rotator", tuple(step(each) for each in RotationStep))


SWEEP = Actor(
    "reconciler", (Invocation("sweep and retirement", lambda world: world.reconciler.run(), "sweep"),)
)
BULK_DELETE = Actor(
    "bulk delete", (_user("bulk-deletes the record (no webhook)", lambda w: w.records.delete(REF)),)
)
ISSUE = Actor("worker after an add", (_converge("ADD_RECORD"),))
ROTATOR = _rotator("rotation-2")

WORKERS_ON_A_KEY = (
    _edit("team=research", team="research"),
    _edit("models=other-model", models=["other-model"]),
    _edit("team=research models=priced-gpt", team="research", models=["priced-gpt"]),
    _edit("team=no-such-team", team="no-such-team"),
    _edit("status=Revoke", status="Revoke"),
    _edit("status=Rotate", status="Rotate"),
    _delete_with_webhook(),
    _owner_leaves(),
)


# -- scenarios --------------------------------------------------------------------------------------


def _rotated_once(world: World) -> None:
    """Issued and rotated once; the old key's grace period is over, its retirement due."""
    world.issued()
    world.rotate(REF)
    world.advance(GRACE + 60)


def _failed_with_a_key(world: World) -> None:
    """Issued, then an invalid save: Failed, still showing its working key."""
    world.issued()
    world.records.edit(REF, team="no-such-team")
    world.converge(REF)


def _new_record(world: World) -> None:
    world.records.add(APP, kintone_record("1"))


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: Callable[[World], None]
    workers: tuple[Actor, ...]


SCENARIOS = (
    Scenario("rotated once, retirement due", _rotated_once, WORKERS_ON_A_KEY),
    Scenario(
        "Failed, showing a key",
        _failed_with_a_key,
        (_edit("team=research (fixed)", team="research"), *WORKERS_ON_A_KEY[4:]),
    ),
    Scenario("new record", _new_record, (ISSUE,)),
)


@functools.cache
def actor_sets(scenario: Scenario) -> list[tuple[Actor, ...]]:
    """Every set of two or three actors, with at most one worker: FIFO message groups never run two
    workers on one record at once."""
    others = (ROTATOR, SWEEP, BULK_DELETE)
    sets: list[tuple[Actor, ...]] = []
    for worker in scenario.workers:
        for size in (1, 2):
            sets.extend((worker, *combo) for combo in itertools.combinations(others, size))
    sets.extend(itertools.combinations(others, 2))
    sets.append(others)
    return sets


# -- the explorer ---------------------------------------------------------------------------------


class _Port:
    """A fake as a service sees it: each call is first a step the explorer schedules."""

    def __init__(self, explorer: Explorer, name: str, fake: Any) -> None:
        self._explorer, self._name, self._fake = explorer, name, fake

    def __getattr__(self, method: str) -> Any:
        target = getattr(self._fake, method)

        def call(*args: Any, **kwargs: Any) -> Any:
            self._explorer.point(Call(self._name, method, args))
            return target(*args, **kwargs)

        self.__dict__[method] = call  # found directly from now on
        return call


@dataclass(frozen=True)
class Call:
    """A port call about to be made; put in words only when a schedule is printed."""

    port: str
    method: str
    args: tuple[Any, ...] = ()
    crashable: bool = True

    def __str__(self) -> str:
        return f"{self.port}.{self.method}({_describe(self.args)})" if self.crashable else self.method


@dataclass
class _Running:
    actor: Actor
    thread: greenlet.greenlet
    next_call: Call | None = None
    done: bool = False


@dataclass
class Schedule:
    seed: int
    scenario: Scenario
    actors: tuple[Actor, ...]
    steps: list[tuple[str, str, object]] = field(default_factory=list)  # (actor, what, detail)
    crashes: int = 0

    def render(self) -> str:
        lines = [
            f"schedule seed={self.seed}: {self.scenario.name}; actors: "
            + ", ".join(actor.name for actor in self.actors)
        ]
        lines += [
            f"  {number:3}. {actor}: {what.format(detail)}"
            for number, (actor, what, detail) in enumerate(self.steps, 1)
        ]
        return "\n".join(lines)


class Explorer:
    """Runs one schedule: `choose(n, current)` picks one of n live actors at every decision
    (`current` is the index of the one that ran last, -1 if it has finished)."""

    def __init__(self, choose: Callable[[int, int], int], crash: Callable[[], bool]) -> None:
        self._choose = choose
        self._crash = crash
        self._hub = greenlet.getcurrent()
        self._running: dict[greenlet.greenlet, _Running] = {}
        self.schedule: Schedule | None = None

    def point(self, call: Call) -> None:
        """Called before every port call: hands control back to the explorer (inside an actor)."""
        running = self._running.get(greenlet.getcurrent())
        if running is None:
            return  # set-up and final checks run straight through
        running.next_call = call
        self._hub.switch()

    def run(self, seed: int, scenario: Scenario, actors: tuple[Actor, ...]) -> tuple[World, Schedule]:
        world = World(port=lambda name, fake: _Port(self, name, fake))
        world.explorer = self  # type: ignore[attr-defined] - found by user actions
        # The requester belongs to both teams, so that moving a key to research is a valid save.
        world.directory.in_organization["taro"] = ["platform", "research"]
        _set_up(world, scenario)
        schedule = self.schedule = Schedule(seed, scenario, actors)
        for actor in actors:
            thread = greenlet.greenlet(self._program(world, actor, schedule))
            running = self._running[thread] = _Running(actor, thread)
            self._resume(running)
        last: _Running | None = None
        while live := [running for running in self._running.values() if not running.done]:
            if len(schedule.steps) > MAX_STEPS:
                raise ScheduleError(f"{schedule.render()}\nno end after {MAX_STEPS} steps (livelock)")
            running = last = live[self._choose(len(live), live.index(last) if last in live else -1)]
            call = running.next_call
            if call.crashable and schedule.crashes < MAX_CRASHES and self._crash():
                schedule.crashes += 1
                schedule.steps.append((running.actor.name, "✗ crashes before {}", call))
                self._resume(running, crash=True)
                continue
            schedule.steps.append((running.actor.name, "{}", call))
            self._resume(running)
        return world, schedule

    def _resume(self, running: _Running, *, crash: bool = False) -> None:
        if crash:
            running.thread.throw(ProcessCrashError(str(running.next_call)))
        else:
            running.thread.switch()
        if running.thread.dead:
            running.done = True

    @staticmethod
    def _program(world: World, actor: Actor, schedule: Schedule) -> Callable[[], None]:
        def run() -> None:
            for invocation in actor.invocations:
                for attempt in range(1, MAX_ATTEMPTS + 1):
                    try:
                        invocation.call(world)
                    except ProcessCrashError:
                        schedule.steps.append((actor.name, "{} starts again", invocation.label))
                        continue
                    except RecordGoneError:
                        schedule.steps.append((actor.name, "the record is gone, nothing to save{}", ""))
                        return
                    except RotationRefusedError as error:
                        schedule.steps.append((actor.name, "{}", f"{invocation.label} refused ({error})"))
                        return  # the rotation ends; its old key keeps working
                    except Exception as error:  # noqa: BLE001 - any failure is retried, as in AWS
                        failure = f"{invocation.label} failed ({type(error).__name__}: {error})"
                        schedule.steps.append((actor.name, "{}", failure))
                        if invocation.kind == "worker" and attempt == MAX_ATTEMPTS:
                            # SQS keeps the message: the final drain delivers it again.
                            world.queue.enqueue([(_REDELIVERY, f"redelivery:{schedule.seed}")])
                        continue
                    break
                else:
                    return  # gave up within this schedule

        return run


_REDELIVERY = WorkItem(app_id=APP, record_id="1", trigger="UPDATE_RECORD", received_at=0.0)
_FAKES = ("records", "gateway", "key_store", "state_store", "queue")
_set_ups: dict[str, dict[str, Any]] = {}


def _set_up(world: World, scenario: Scenario) -> None:
    """The scenario's starting state: made once, then copied into each schedule's fakes."""
    saved = _set_ups.get(scenario.name)
    if saved is None:
        scenario.setup(world)
        _set_ups[scenario.name] = {
            "now": world.now,
            **{
                name: _copy({k: v for k, v in vars(getattr(world, name)).items() if k != "_crashes"})
                for name in _FAKES
            },
        }
        return
    world.advance(saved["now"] - world.now)
    for name in _FAKES:
        vars(getattr(world, name)).update(_copy(saved[name]))


def _copy(value: Any) -> Any:
    """A deep copy of the fakes' containers; their values (text, numbers, frozen models) are shared."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    if isinstance(value, set):
        return set(value)
    return value


def _explorer_of(world: World) -> Explorer:
    return world.explorer  # type: ignore[attr-defined]


def _describe(args: tuple[Any, ...]) -> str:
    """Call arguments in a few words; never a key's value."""
    parts = []
    for arg in args:
        if isinstance(arg, RecordRef):
            parts.append(f"{arg.app_id}:{arg.record_id}")
        elif isinstance(arg, KeySpec):
            parts.append(f"{arg.alias} team={arg.team_id} models={','.join(arg.models)}")
        elif isinstance(arg, KeyState):
            parts.append(f"{arg.status.value} v{arg.version} team={arg.team} key={arg.key_hash[:6]}")
        elif isinstance(arg, str) and arg.startswith("sk-"):
            parts.append(f"key {key_hash(arg)[:6]}")
        elif isinstance(arg, str | int | float):
            parts.append(str(arg)[:40])
        elif isinstance(arg, list | tuple):
            parts.append(f"[{_describe(tuple(arg))}]")
        else:
            parts.append(type(arg).__name__)
    return ", ".join(parts)


# -- invariants -------------------------------------------------------------------------------------


def _wanted_models(record: dict[str, Any]) -> tuple[str, ...] | None:
    policy = LOCAL_TEAM_CATALOG.get(record["team"]["value"])
    if policy is None:
        return None
    return tuple(record["models"]["value"] or policy["models"])


def violations(world: World, *, settled: bool) -> list[str]:
    """The issue's invariants on the world as the actors left it (`settled`: after the final sweep)."""
    found = []
    record = world.records.records.get((APP, "1"))
    status = record["status"]["value"] if record else None
    keys = {alias: spec for alias, spec in world.gateway.keys.items() if alias in every_alias(ALIAS)}
    # A rotated-out key works until the sweep retires it: through its grace period, and past it
    # until the next sweep.
    retiring = {retirement.key_hash for retirement in world.state_store.retirements.values()}
    in_grace = {
        retirement.key_hash
        for retirement in world.state_store.retirements.values()
        if retirement.due_at > world.now
    }
    current = [spec for spec in keys.values() if key_hash(spec.api_key) not in retiring]
    if len(current) > 1 or len(keys) - len(current) > 1:
        found.append(f"more working keys than one and a rotated-out one: {sorted(keys)}")
    revoked = record is None or status == RecordStatus.REVOKED
    if revoked and keys and (settled or record is not None):
        found.append(
            f"a {'deleted' if record is None else 'revoked'} record has working keys: {sorted(keys)}"
        )
    working = {key_hash(spec.api_key) for spec in keys.values()}
    if in_grace - working and not revoked and status != RecordStatus.REVOKE_REQUESTED:
        found.append("a rotated-out key stopped working inside its grace period")
    # A message still queued (a delivery that failed, a sweep's find) is work in flight: what the
    # record shows is judged once it is handled.
    in_flight = bool(world.queue.sent) and not settled
    if record is not None and record["api_key"]["value"] and not in_flight:
        shown = record["api_key"]["value"]
        spec = next((spec for spec in keys.values() if spec.api_key == shown), None)
        wanted = _wanted_models(record)
        # Failed says why the key is not what the record asks for; a key that stopped working is
        # explained only by a revoke the user asked for and the worker has not finished.
        explained = status == RecordStatus.FAILED and record["message"]["value"]
        if spec is None and status != RecordStatus.REVOKE_REQUESTED:
            found.append(f"the record ({status}) shows a key that does not work")
        elif (
            spec is not None
            and (spec.team_id, spec.models) != (record["team"]["value"], wanted)
            and not explained
        ):
            found.append(
                f"the record ({status}) asks for team {record['team']['value']} models {wanted}; "
                f"its key has team {spec.team_id} models {spec.models}"
            )
    if settled:
        found += _not_converged(world, record, keys)
    return found


def _not_converged(world: World, record: dict[str, Any] | None, keys: dict[str, KeySpec]) -> list[str]:
    state = world.state_store.get(REF)
    status = record["status"]["value"] if record else None
    if record is None or status == RecordStatus.REVOKED:
        if state is not None and state.status.value != "REVOKED":
            return [f"a {'deleted' if record is None else 'revoked'} record's state is {state.status.value}"]
        if SECRET_ID in world.key_store.secrets and SECRET_ID not in world.key_store.scheduled_for_deletion:
            return ["a revoked record's secret is still live"]
        return []
    if status == RecordStatus.ISSUED:
        shown = record["api_key"]["value"]
        problems = []
        if state is None or state.status.value != "ISSUED" or state.key_hash != key_hash(shown):
            problems.append(
                f"an Issued record's state does not name its key ({state and state.status.value})"
            )
        if world.key_store.secrets.get(SECRET_ID) != shown:
            problems.append("an Issued record's key is not the secret's current value")
        if len(keys) != 1:
            problems.append(f"after the grace period an Issued record has keys {sorted(keys)}")
        return problems
    if status == RecordStatus.FAILED:
        return [] if record["message"]["value"] else ["a Failed record says nothing"]
    return [f"the record was left open with status {status!r}"]


def settle(world: World) -> list[str]:
    """The actors have stopped: past the grace and the full-sweep interval, the sweep runs and the
    worker drains the queue until nothing is left, then everything must have converged."""
    world.advance(GRACE + 700)
    try:
        for _ in range(4):
            world.reconciler.run()
            if not world.queue.sent:
                break
            world.drain()
        world.reconciler.run()
        writes = len(world.records.writes)
        keys = dict(world.gateway.keys)
        world.converge(REF)
    except Exception as error:  # noqa: BLE001 - reported as the schedule's failure
        return [f"the final sweep failed: {type(error).__name__}: {error}"]
    found = violations(world, settled=True)
    if len(world.records.writes) != writes or world.gateway.keys != keys:
        found.append("a converged record is not left alone by another delivery")
    return found


# -- running schedules ----------------------------------------------------------------------------


def random_schedule(seed: int) -> Schedule:
    """One seeded schedule: scenario, actors, interleaving and crashes all follow from the seed."""
    rng = random.Random(seed)
    scenario = rng.choice(SCENARIOS)
    actors = rng.choice(actor_sets(scenario))
    # Some schedules switch actors at every step, others mostly let the running one go on: long
    # runs with a few switches are what most ordering bugs need.
    stickiness = rng.choice(STICKINESS)

    def choose(options: int, current: int) -> int:
        return current if current >= 0 and rng.random() < stickiness else rng.randrange(options)

    explorer = Explorer(choose=choose, crash=lambda: rng.random() < CRASH_CHANCE)
    world, schedule = explorer.run(seed, scenario, actors)
    _check(world, schedule)
    return schedule


def _check(world: World, schedule: Schedule) -> None:
    problems = violations(world, settled=False)
    when = "when the actors stopped"
    if not problems:
        problems, when = settle(world), "after the final sweep"
    if problems:
        raise ScheduleError(
            f"{schedule.render()}\n{when}: " + "; ".join(problems) + "\n"
            f"reproduce: python -m tests.unit.schedules.explorer --seed {schedule.seed}"
        )


def every_interleaving(
    scenario: Scenario, actors: tuple[Actor, ...], max_preemptions: int
) -> Iterator[Schedule]:
    """Every interleaving of these actors (no crashes) that switches away from a running actor at
    most `max_preemptions` times, depth first: the bounded search that finds most ordering bugs."""
    prefix: list[int] = []  # positions in each decision's order: the running actor first
    while True:
        taken: list[tuple[int, int, int]] = []  # (position, options, current) per decision

        def choose(
            options: int, current: int, taken: list[tuple[int, int, int]] = taken, prefix: list[int] = prefix
        ) -> int:
            position = prefix[len(taken)] if len(taken) < len(prefix) else 0
            taken.append((position, options, current))
            order = (
                [current, *(i for i in range(options) if i != current)] if current >= 0 else range(options)
            )
            return order[position]

        world, schedule = Explorer(choose=choose, crash=lambda: False).run(-1, scenario, actors)
        _check(world, schedule)
        yield schedule
        while taken:
            position, options, current = taken.pop()
            preemptions = sum(1 for pos, _, cur in taken if cur >= 0 and pos > 0)
            if position + 1 < options and preemptions + (current >= 0) <= max_preemptions:
                prefix = [pos for pos, _, _ in taken] + [position + 1]
                break
        else:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    seed = parser.parse_args().seed
    try:
        schedule = random_schedule(seed)
    except ScheduleError as error:
        print(error)
        raise SystemExit(1) from None
    print(schedule.render())
    print("every invariant held")


if __name__ == "__main__":
    main()
