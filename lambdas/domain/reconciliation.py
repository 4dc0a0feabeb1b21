"""Catch what kintone's webhooks missed, revoke keys whose record is gone, retire rotated-out keys.

kintone sends each webhook at most once and none past 60 a minute, for CSV imports, bulk deletes or
bulk API writes, so this sweep is what makes every state change reach the gateway. It only finds
work and puts it on the worker's FIFO queue (same message group as the webhooks of a record, so the
two never race); the worker re-reads each record and converges it idempotently.

kintone budget: one request per page of 500. Each run asks for the records updated since the
previous run (record times are to the minute, so the window overlaps the previous one and relies on
idempotency); every `full_sweep_seconds` it lists all records instead, which is how deletions
without a webhook show up.

Full sweeps also check the owners of issued keys against the directory, reading each team's member
lists once (see membership.py); an owner who left is queued for the worker, which asks about them
alone before it revokes. A directory that fails offboards nobody in that sweep.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from lambdas.domain.key_request import RecordStatus
from lambdas.domain.membership import Memberships, owners_who_left
from lambdas.domain.ports import (
    DirectoryError,
    KeyGateway,
    KeyState,
    KeyStatus,
    ReconcilerCursor,
    RecordLister,
    RecordRef,
    SweepStateStore,
    TransientError,
    WorkQueue,
)
from lambdas.domain.settings import FieldCodes
from lambdas.domain.teams import TeamCatalog
from lambdas.domain.webhook_events import Trigger, WorkItem

PAGE_SIZE = 500  # kintone's largest page
# A record in one of these states waits for the worker whatever its age.
_OPEN_REQUESTS = {"", RecordStatus.PENDING, RecordStatus.REVOKE_REQUESTED, RecordStatus.ROTATE_REQUESTED}


@dataclass(frozen=True)
class ReconcilerConfig:
    app_id: str
    field_codes: FieldCodes
    lookback_seconds: int
    full_sweep_seconds: int
    max_revoke_share: float
    mass_revoke_floor: int
    team_catalog: TeamCatalog


class ListedRecord(BaseModel):
    record_id: str
    revision: int
    status: str
    updated_at: float


class ReconcileReport(BaseModel):
    full_sweep: bool
    records_listed: int = 0
    enqueued: int = 0
    missing_records: int = 0
    issued_keys: int = 0
    owners_left: int = 0
    owner_check_failed: bool = False
    mass_revoke_blocked: bool = False
    keys_retired: int = 0


class Reconciler:
    def __init__(
        self,
        config: ReconcilerConfig,
        records: RecordLister,
        state_store: SweepStateStore,
        queue: WorkQueue,
        gateway: KeyGateway,
        clock: Callable[[], float] = time.time,
        *,
        memberships: Memberships,
    ) -> None:
        self._config = config
        self._memberships = memberships
        self._records = records
        self._state_store = state_store
        self._queue = queue
        self._gateway = gateway
        self._clock = clock

    def run(self, *, allow_mass_revoke: bool = False) -> ReconcileReport:
        """One sweep. `allow_mass_revoke` is an operator's override after checking a blocked run."""
        now = self._clock()
        cursor = self._state_store.get_cursor(self._config.app_id)
        full = (
            allow_mass_revoke
            or cursor is None
            or now - cursor.last_full_sweep_at >= self._config.full_sweep_seconds
        )
        # Changed since: the minute of the last run, minus a margin for clock skew and slow saves.
        since = None if cursor is None else _minute_floor(cursor.last_run_at) - self._config.lookback_seconds
        report = ReconcileReport(full_sweep=full)

        # Issued states are read before the records: a key issued later cannot look orphaned. An
        # issuance under way (or given up half-made) may hold a key too, so it counts as one.
        issued = {
            state.record_id: state
            for status in (KeyStatus.ISSUED, KeyStatus.ISSUING)
            for state in self._state_store.states_with_status(self._config.app_id, status)
        }
        listed = self._list(None if full else since)
        report.records_listed = len(listed)

        work: list[tuple[WorkItem, str]] = []
        for row in listed:
            changed = since is None or row.updated_at >= since
            state = issued.get(row.record_id)
            if state is None and changed:  # only a recent change needs the revision the system saw
                state = self._state_store.get(RecordRef(app_id=self._config.app_id, record_id=row.record_id))
            if _needs_work(row, state, changed=changed):
                work.append(self._item(row.record_id, f"{row.revision}", now))

        if full:
            present = {row.record_id for row in listed}
            missing = [record_id for record_id in issued if record_id not in present]
            left = self._owners_who_left([state for state in issued.values() if state.record_id in present])
            report.missing_records, report.issued_keys = len(missing), len(issued)
            report.owners_left, report.owner_check_failed = len(left or ()), left is None
            going = len(missing) + len(left or ())
            if (
                not allow_mass_revoke
                and going > self._config.mass_revoke_floor
                and going > self._config.max_revoke_share * len(issued)
            ):
                # kintone or the directory answering wrongly, or the wrong app: a person decides.
                report.mass_revoke_blocked = True
            else:
                # The worker re-reads each record, so one that was only created meanwhile is left alone.
                work.extend(self._item(record_id, "gone", now) for record_id in missing)
                # ...and asks the directory about each owner again before it revokes.
                work.extend(
                    self._item(state.record_id, f"owner-left-{now:.0f}", now, "OFFBOARD")
                    for state in left or ()
                )

        self._queue.enqueue(work)
        report.enqueued = len(work)
        report.keys_retired = self.retire_due_keys()
        last_full_sweep_at = now if full or cursor is None else cursor.last_full_sweep_at
        self._state_store.put_cursor(
            self._config.app_id, ReconcilerCursor(last_run_at=now, last_full_sweep_at=last_full_sweep_at)
        )
        return report

    def _list(self, since: float | None) -> list[ListedRecord]:
        """Records updated since `since` (all when None), paged by id: offsets stop at 10,000."""
        codes = self._config.field_codes
        fields = ["$id", "$revision", codes.status, codes.updated_time]
        condition = "" if since is None else f'{codes.updated_time} >= "{_kintone_time(since)}" and '
        listed: list[ListedRecord] = []
        last_id = 0
        while True:
            query = f"{condition}$id > {last_id} order by $id asc limit {PAGE_SIZE}"
            page = self._records.query_records(self._config.app_id, query, fields)
            listed.extend(_listed(record, codes) for record in page)
            if len(page) < PAGE_SIZE:
                return listed
            last_id = int(page[-1]["$id"]["value"])

    def _owners_who_left(self, states: list[KeyState]) -> list[KeyState] | None:
        """Issued keys whose owners the directory no longer lists in their team; None when it failed."""
        try:
            return owners_who_left(states, self._config.team_catalog, self._memberships)
        except (TransientError, DirectoryError):
            return None  # only positive evidence revokes: a failed or partial read offboards nobody

    def _item(
        self, record_id: str, version: str, now: float, trigger: Trigger = "RECONCILE"
    ) -> tuple[WorkItem, str]:
        item = WorkItem(app_id=self._config.app_id, record_id=record_id, trigger=trigger, received_at=now)
        return item, f"reconcile:{self._config.app_id}:{record_id}:{version}"

    def retire_due_keys(self) -> int:
        """Old keys whose grace period after a rotation is over stop working now."""
        due = self._state_store.due_retirements(self._clock())
        for retirement in due:
            if retirement.key_hash:
                # The exact key: a rotation since the listing may have given the alias to another.
                self._gateway.delete_key_with_hash(retirement.key_hash)
            else:
                self._gateway.delete_keys([retirement.key_alias])
            self._state_store.clear_retirement(retirement)
        return len(due)


def _needs_work(row: ListedRecord, state: KeyState | None, *, changed: bool) -> bool:
    if row.status in _OPEN_REQUESTS:
        return True
    if state is not None and state.status == KeyStatus.ISSUING:
        return True  # an issuance that did not finish: the worker completes it or cleans it up
    holds_key = state is not None and state.status == KeyStatus.ISSUED
    if row.status == RecordStatus.ISSUED and not holds_key:
        return True  # e.g. a bulk write or a lost state: the worker finds out which
    if row.status == RecordStatus.REVOKED and holds_key:
        return True
    # Anything else saved recently that the system has not seen at this revision.
    return changed and (state is None or state.record_revision != row.revision)


def _listed(record: dict, codes: FieldCodes) -> ListedRecord:
    updated = record.get(codes.updated_time, {}).get("value") or "1970-01-01T00:00:00Z"
    return ListedRecord(
        record_id=str(record["$id"]["value"]),
        revision=int(record["$revision"]["value"]),
        status=record.get(codes.status, {}).get("value") or "",
        updated_at=dt.datetime.fromisoformat(updated.replace("Z", "+00:00")).timestamp(),
    )


def _minute_floor(timestamp: float) -> float:
    return timestamp - timestamp % 60


def _kintone_time(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
