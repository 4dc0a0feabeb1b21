"""One worker batch's kintone traffic: its records read with one query, their write-backs sent together.

kintone allows 10,000 requests per app a day. Read and written one by one, a burst costs each key a
record read and a write-back; a batch of ten costs one query and one bulk update instead.

The records of a batch converge one at a time, each on its own thread used as a coroutine. A record
that reaches its write-back hands the turn to the next one. Once every record of the batch waits on
its write-back or is done, the waiting writes go to kintone as one bulk update per app, and each
record carries on with its own answer. kintone applies a bulk update whole or not at all, so when it
fails (a record changed meanwhile, or was deleted) each write is sent again on its own, and each
record meets its own conflict exactly as it would unbatched. Only one record's code runs at any time,
so the clients, caches and metrics the handler shares never see two threads at once.

Outside `run` (the reconciler, tests, the give-up path of another caller) every call goes straight
to kintone.
"""

from __future__ import annotations

import contextvars
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from lambdas.adapters.kintone_records import KintoneRecords
from lambdas.adapters.observability import logger
from lambdas.domain.ports import RecordRef, RecordWrite, TransientError

T = TypeVar("T")

# kintone's most records in one bulk update, and in one page of a query.
MAX_RECORDS_PER_REQUEST = 100


@dataclass
class _PendingWrite:
    ref: RecordRef
    revision: int
    values: dict[str, str]
    new_revision: int | None = None
    error: Exception | None = None


class _Turn:
    """One piece of work on its own thread, which runs only while it holds the batch's turn."""

    def __init__(self, work: Callable[[], Any], current: threading.local) -> None:
        self._work = work
        self._current = current
        self._context = contextvars.copy_context()  # the invocation's deadline, among others
        self._resumed = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self.pending: _PendingWrite | None = None
        self.result: Any = None
        self.error: BaseException | None = None

    def step(self) -> None:
        """Run until the work waits on a write-back or ends."""
        self._paused.clear()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        else:
            self._resumed.set()
        self._paused.wait()

    def wait_for_write(self, write: _PendingWrite) -> None:
        """Called on the work's own thread: hand the turn back until the write was sent."""
        self.pending = write
        self._resumed.clear()
        self._paused.set()
        self._resumed.wait()
        self.pending = None

    def _run(self) -> None:
        self._current.turn = self
        try:
            self.result = self._context.run(self._work)
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, which raises it
            self.error = error
        finally:
            self.pending = None
            self._paused.set()


class RecordBatch:
    """A `RecordSource` over kintone whose reads and writes inside `run` are shared by its works."""

    def __init__(self, records: KintoneRecords) -> None:
        self._records = records
        self._prefetched: dict[tuple[str, str], dict[str, Any]] = {}
        self._current = threading.local()

    def run(self, refs: Sequence[RecordRef], works: Sequence[Callable[[], T]]) -> list[T]:
        """Read `refs` with one query per app, then run `works` one at a time, their write-backs sent
        together; returns their results in order, or raises the first error once all have ended."""
        self._prefetch(refs)
        turns = [_Turn(work, self._current) for work in works]
        ready = deque(turns)
        waiting: list[_Turn] = []
        try:
            while ready or waiting:
                if not ready:
                    self._send([turn.pending for turn in waiting if turn.pending is not None])
                    ready.extend(waiting)
                    waiting.clear()
                turn = ready.popleft()
                turn.step()
                if turn.pending is not None:
                    waiting.append(turn)
        finally:
            self._prefetched.clear()  # what a later invocation reads must be read then
        for turn in turns:
            if turn.error is not None:
                raise turn.error
        return [turn.result for turn in turns]

    # -- RecordSource ----------------------------------------------------------------------------

    def get_record(self, ref: RecordRef) -> dict[str, Any] | None:
        """The batch's copy on the first read (taken after the message arrived, so no older than a
        read made now would have been at the webhook); every later read goes to kintone."""
        prefetched = self._prefetched.pop((ref.app_id, ref.record_id), None)
        return prefetched if prefetched is not None else self._records.get_record(ref)

    def write_fields(self, ref: RecordRef, revision: int, values: dict[str, str]) -> int:
        turn: _Turn | None = getattr(self._current, "turn", None)
        if turn is None:
            return self._records.write_fields(ref, revision, values)
        write = _PendingWrite(ref, revision, values)
        turn.wait_for_write(write)
        if write.error is not None:
            raise write.error
        assert write.new_revision is not None  # noqa: S101 - _send sets one or the other
        return write.new_revision

    def add_comment(self, ref: RecordRef, text: str, mention_user: str) -> None:
        self._records.add_comment(ref, text, mention_user)  # kintone has no bulk comments

    # -- kintone ---------------------------------------------------------------------------------

    def _prefetch(self, refs: Sequence[RecordRef]) -> None:
        for app_id, chunk in _by_app_in_requests(list(dict.fromkeys(refs)), lambda ref: ref.app_id):
            if len(chunk) == 1:
                continue  # one record: its own read costs the same request
            # Ids are digits (KintoneId), so they need no quoting.
            query = f"$id in ({', '.join(ref.record_id for ref in chunk)}) limit {len(chunk)}"
            try:
                rows = self._records.query_records(app_id, query, [])
            except Exception:  # noqa: BLE001 - each record is then read on its own, which meets the fault
                logger.warning("could not read a batch's records in one query", extra={"app_id": app_id})
                continue
            for row in rows:
                self._prefetched[(app_id, row["$id"]["value"])] = row
        # A record the query did not return (deleted meanwhile) is read on its own, which says so.

    def _send(self, writes: Sequence[_PendingWrite]) -> None:
        for app_id, chunk in _by_app_in_requests(writes, lambda write: write.ref.app_id):
            if len(chunk) == 1:
                self._send_one(chunk[0])
                continue
            try:
                revisions = self._records.write_records(
                    app_id,
                    [
                        RecordWrite(
                            record_id=write.ref.record_id, values=write.values, revision=write.revision
                        )
                        for write in chunk
                    ],
                )
            except Exception:  # noqa: BLE001 - all or nothing: each write is sent alone and meets its own answer
                for write in chunk:
                    self._send_one(write)
                continue
            for write in chunk:
                write.new_revision = revisions.get(write.ref.record_id)
                if write.new_revision is None:
                    write.error = TransientError(f"kintone's answer left out record {write.ref.record_id}")

    def _send_one(self, write: _PendingWrite) -> None:
        try:
            write.new_revision = self._records.write_fields(write.ref, write.revision, write.values)
        except Exception as error:  # noqa: BLE001 - raised on the record's own thread, as unbatched
            write.error = error


def _by_app_in_requests(items: Sequence[T], app_of: Callable[[T], str]) -> Iterator[tuple[str, list[T]]]:
    """`items` by app, in runs of at most one request's worth, in their order."""
    by_app: dict[str, list[T]] = {}
    for item in items:
        by_app.setdefault(app_of(item), []).append(item)
    for app_id, app_items in by_app.items():
        for start in range(0, len(app_items), MAX_RECORDS_PER_REQUEST):
            yield app_id, app_items[start : start + MAX_RECORDS_PER_REQUEST]
