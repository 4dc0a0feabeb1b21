"""SQS FIFO batch → converge each record. Partial-batch failures go back to the queue.

The batch's records are read from kintone with one query and their write-backs sent as one bulk
update (`RecordBatch`); each record's messages are handled in order, a record at a time.

What becomes of each message of a batch:
- converged: deleted (reported as a success);
- failed, attempts left: reported as a failure, and made visible again after a backoff with jitter
  (ChangeMessageVisibility), not after the queue's whole visibility timeout;
- failed on its last attempt: the record is told why, and the message moves to the dead-letter queue;
- not attempted (too little time left in the invocation, or held back behind a failure of its record
  in the same batch, which FIFO order requires): sent again as a new message carrying its count of
  attempts, so a delivery that was no attempt costs none of the request's attempts and never leads to
  giving up on a record that was never tried.
The same goes for giving up when too little time is left for it: it is left for the next delivery.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import time
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from lambdas.adapters.observability import logger, metrics, tracer
from lambdas.adapters.request_metrics import counts_kintone_requests
from lambdas.adapters.retries import set_invocation_deadline
from lambdas.adapters.sqs_work_queue import SqsWorkQueue
from lambdas.adapters.stage_timing import stage_report, timing_stages
from lambdas.adapters.wiring import provisioner, record_batch, sqs_client
from lambdas.domain.ports import RecordRef
from lambdas.domain.provisioning import Outcome
from lambdas.domain.redaction import redact
from lambdas.domain.settings import MAX_RECEIVE_COUNT, load_settings
from lambdas.domain.webhook_events import WorkItem

# MAX_RECEIVE_COUNT: the attempts a request gets; the DLQ's maxReceiveCount is the same, as the
# backstop for invocations that die before they can report (receives are never fewer than attempts).
# Time one record may need in the worst case: a few calls, each up to HTTP_TIMEOUT_SECONDS.
TIME_RESERVE_MS = 15_000
# Kept free of retries for what follows a failure: telling the record, re-queueing, parking.
GIVE_UP_RESERVE_MS = 10_000
UNSIGNED_WEBHOOK = "unsigned kintone webhook, not verified"

_OUTCOME_METRICS = {
    Outcome.ISSUED: "KeysIssued",
    Outcome.UPDATED: "KeysUpdated",
    Outcome.FAILED: "RequestsFailed",
    Outcome.REVOKED: "KeysRevoked",
    Outcome.RECORD_NOT_FOUND: "RecordNotFound",
    Outcome.UNCHANGED: "RecordsUnchanged",
    Outcome.ROTATION_REQUESTED: "RotationsRequested",
}


class NotAttemptedError(RuntimeError):
    """The record was left for a later delivery; this delivery was no attempt."""


@dataclass(frozen=True)
class Retry:
    visible_after_seconds: int


@dataclass(frozen=True)
class Requeue:
    """Send again as a new message carrying `item` (its attempts so far)."""

    item: WorkItem


@dataclass(frozen=True)
class Park:
    item: WorkItem


# What this invocation decided for each failed message, by message id (one invocation at a time).
_decisions: dict[str, Retry | Requeue | Park] = {}


@tracer.capture_method(capture_response=False)
def converge_record(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    item = WorkItem.model_validate_json(record.body)
    receive_count = int(record.attributes.approximate_receive_count or 1)
    attempt = item.attempts + receive_count
    if attempt > MAX_RECEIVE_COUNT:
        # Its last attempt failed when too little time was left to give up (or its invocation died,
        # which leaves no reason); giving up is done now.
        reason = item.last_error or "the last attempt ended without an answer"
        _give_up(record, item, lambda_context, attempts=MAX_RECEIVE_COUNT, reason=reason)
        raise NotAttemptedError("gave up after the last attempt")
    if _millis_left(lambda_context) < TIME_RESERVE_MS:
        _decisions[record.message_id] = Requeue(item.model_copy(update={"attempts": attempt - 1}))
        raise NotAttemptedError("too little time left in this invocation")
    started = time.time()
    try:
        with timing_stages() as stages:
            result = provisioner().converge(item)
    except Exception as error:  # any failure: retried later; the last attempt tells the record why
        metrics.add_metric(name="ProcessingErrors", unit=MetricUnit.Count, value=1)
        reason = redact(str(error))[:500]
        if attempt >= MAX_RECEIVE_COUNT:
            _give_up(record, item, lambda_context, attempts=attempt, reason=reason)
        else:
            _decisions[record.message_id] = Retry(redelivery_delay(attempt))
        raise
    metrics.add_metric(name=_OUTCOME_METRICS[result.outcome], unit=MetricUnit.Count, value=1)
    if not result.notified:
        metrics.add_metric(name="CommentsFailed", unit=MetricUnit.Count, value=1)
        logger.warning("could not comment on the record", extra={"record": item.message_group_id})
    if result.outcome in (Outcome.ISSUED, Outcome.UPDATED) and item.trigger != "RECONCILE":
        metrics.add_metric(
            name="TimeToKey", unit=MetricUnit.Milliseconds, value=(time.time() - item.received_at) * 1000
        )
    logger.info(
        "record converged",
        extra={
            "record": item.message_group_id,
            "trigger": item.trigger,
            "outcome": result.outcome.value,
            "team": result.team,
            "requested_by": result.requested_by,
            "receive_count": receive_count,
            "attempt": attempt,
            "stages_ms": stage_report(
                stages,
                queue_wait_ms=(started - item.received_at) * 1000,
                total_ms=(time.time() - started) * 1000,
            ),
            **_reported_actor(item),
        },
    )


def redelivery_delay(attempt: int) -> int:
    """Seconds until the next delivery after failed attempt `attempt` (1-based): exponential, with
    equal jitter so that records failing together do not all come back at once."""
    settings = load_settings()
    bound = min(settings.redelivery_max_seconds, settings.redelivery_base_seconds * 2 ** (attempt - 1))
    return math.ceil(bound / 2 + random.uniform(0, bound / 2))  # noqa: S311 - not crypto


def _give_up(
    record: SQSRecord, item: WorkItem, lambda_context: LambdaContext | None, *, attempts: int, reason: str
) -> None:
    """Tell the record, then park the request; with too little time left for the calls that takes,
    leave it for the next delivery, which starts here."""
    if _millis_left(lambda_context) < GIVE_UP_RESERVE_MS:
        spent = item.model_copy(update={"attempts": max(item.attempts, attempts), "last_error": reason})
        _decisions[record.message_id] = Requeue(spent)
        return
    logger.error("giving up after retries", extra={"record": item.message_group_id, "reason": reason})
    try:
        provisioner().report_gave_up(item, attempts, reason)
    except Exception:  # noqa: BLE001 - kintone may be what failed; the DLQ alarm still tells operators
        logger.exception("could not write the failure to the record", extra={"record": item.message_group_id})
    _decisions[record.message_id] = Park(item.model_copy(update={"attempts": attempts, "last_error": reason}))


def _millis_left(lambda_context: LambdaContext | None) -> int:
    return lambda_context.get_remaining_time_in_millis() if lambda_context is not None else 1 << 31


def _reported_actor(item: WorkItem) -> dict[str, dict[str, str]]:
    """Who the DELETE webhook says deleted the record: kept for auditors, marked as unverified
    (webhooks are unsigned, and the record is gone, so nothing can confirm it)."""
    if not item.reported_actor:
        return {}
    return {"reported_deleted_by": {"user": item.reported_actor, "source": UNSIGNED_WEBHOOK}}


def _settle(event: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """Carry out the decisions for the failed messages; those moved elsewhere are reported done."""
    failed = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
    requeue: list[tuple[SQSRecord, WorkItem]] = []
    park: list[tuple[SQSRecord, WorkItem]] = []
    for raw in event["Records"]:
        record = SQSRecord(raw)
        if record.message_id not in failed:
            continue
        decision = _decisions.get(record.message_id)
        if isinstance(decision, Retry):
            _delay(record, decision.visible_after_seconds)
        elif isinstance(decision, Park):
            park.append((record, decision.item))
        elif isinstance(decision, Requeue):
            requeue.append((record, decision.item))
        else:  # held back behind a failure of its record: this delivery was no attempt
            item = WorkItem.model_validate_json(record.body)
            receive_count = int(record.attributes.approximate_receive_count or 1)
            requeue.append((record, item.model_copy(update={"attempts": item.attempts + receive_count - 1})))
    settings = load_settings()
    moved = _send(requeue, lambda record: record.queue_url, "requeue")
    moved |= _send(park, lambda _record: settings.dead_letter_queue_url, "park")
    for metric, entries in (("MessagesRequeued", requeue), ("RequestsParked", park)):
        if entries:
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=len(entries))
    return {"batchItemFailures": [{"itemIdentifier": i} for i in sorted(failed - moved)]}


def _delay(record: SQSRecord, seconds: int) -> None:
    try:
        sqs_client().change_message_visibility(
            QueueUrl=record.queue_url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=seconds
        )
    except Exception:  # noqa: BLE001 - the message still comes back, after the queue's visibility timeout
        logger.exception("could not delay a failed message", extra={"message_id": record.message_id})


def _send(entries: list[tuple[SQSRecord, WorkItem]], queue_url_of: Any, purpose: str) -> set[str]:
    """Send each item as a new message of its record's group; the message ids that were sent."""
    if not entries:
        return set()
    by_queue: dict[str, list[tuple[SQSRecord, WorkItem]]] = {}
    for record, item in entries:
        by_queue.setdefault(queue_url_of(record), []).append((record, item))
    sent: set[str] = set()
    for queue_url, batch in by_queue.items():
        try:
            SqsWorkQueue(sqs_client(), queue_url).enqueue(
                # Unique per delivery: a repeat after a lost answer is dropped as a duplicate.
                [(item, _dedup_id(record, purpose)) for record, item in batch]
            )
        except Exception:  # noqa: BLE001 - left as failures, SQS delivers them again; an attempt is lost
            logger.exception("could not send messages on", extra={"purpose": purpose, "count": len(batch)})
            continue
        sent.update(record.message_id for record, _item in batch)
    return sent


def _dedup_id(record: SQSRecord, purpose: str) -> str:
    receive_count = record.attributes.approximate_receive_count or "1"
    return hashlib.sha256(f"{purpose}:{record.message_id}:{receive_count}".encode()).hexdigest()


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@counts_kintone_requests
def handler(event: dict, context: LambdaContext) -> dict:
    _decisions.clear()
    # Retries inside the invocation stop early enough to leave time for what follows a failure.
    set_invocation_deadline((context.get_remaining_time_in_millis() - GIVE_UP_RESERVE_MS) / 1000)
    groups: dict[str, list[dict[str, Any]]] = {}
    for raw in event["Records"]:
        groups.setdefault(SQSRecord(raw).attributes.message_group_id or "", []).append(raw)
    responses = record_batch().run(
        _refs(event["Records"]),
        [functools.partial(_converge_group, group, context) for group in groups.values()],
    )
    failures = [failure for response in responses for failure in response["batchItemFailures"]]
    return _settle(event, {"batchItemFailures": failures})


def _converge_group(records: list[dict[str, Any]], context: LambdaContext) -> dict[str, Any]:
    """One record's messages, in order: after a failure the rest are held back, as FIFO requires."""
    processor = SqsFifoPartialProcessor()
    # A group whose messages all failed is reported like any partial failure rather than raised:
    # SQS retries the same messages either way, and an expected retry is not a function error.
    processor.raise_on_entire_batch_failure = False
    return process_partial_response(
        event={"Records": records}, record_handler=converge_record, processor=processor, context=context
    )


def _refs(records: list[dict[str, Any]]) -> list[RecordRef]:
    """The records the batch's messages name; a malformed message fails on its own when handled."""
    refs = []
    for raw in records:
        try:
            item = WorkItem.model_validate_json(raw["body"])
        except ValidationError:
            continue
        refs.append(RecordRef(app_id=item.app_id, record_id=item.record_id))
    return refs
