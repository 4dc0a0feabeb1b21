"""SQS FIFO batch → converge each record. Partial-batch failures go back to the queue.

A failing record raises, so SQS redelivers its message; on the last delivery before the DLQ the
record is told why no key came.
"""

from __future__ import annotations

import time

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.adapters.observability import logger, metrics, tracer
from lambdas.adapters.request_metrics import counts_kintone_requests
from lambdas.adapters.wiring import provisioner
from lambdas.domain.provisioning import Outcome
from lambdas.domain.redaction import redact
from lambdas.domain.webhook_events import WorkItem

# Must match the DLQ's maxReceiveCount, so the last attempt knows it is the last.
MAX_RECEIVE_COUNT = 5
# Time one record may need in the worst case: a few calls, each up to HTTP_TIMEOUT_SECONDS.
TIME_RESERVE_MS = 15_000
UNSIGNED_WEBHOOK = "unsigned kintone webhook, not verified"

# A FIFO batch holds several message groups (records); one record's failure must not hold back others.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
# A batch whose records all failed is reported like any partial failure rather than raised: SQS
# retries the same messages either way, and an expected retry is not a function error.
processor.raise_on_entire_batch_failure = False

_OUTCOME_METRICS = {
    Outcome.ISSUED: "KeysIssued",
    Outcome.UPDATED: "KeysUpdated",
    Outcome.FAILED: "RequestsFailed",
    Outcome.REVOKED: "KeysRevoked",
    Outcome.RECORD_NOT_FOUND: "RecordNotFound",
    Outcome.UNCHANGED: "RecordsUnchanged",
    Outcome.ROTATION_REQUESTED: "RotationsRequested",
}


@tracer.capture_method(capture_response=False)
def converge_record(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    item = WorkItem.model_validate_json(record.body)
    receive_count = int(record.attributes.approximate_receive_count or 1)
    try:
        _ensure_time_left(lambda_context)
        result = provisioner().converge(item)
    except Exception as error:  # any failure: SQS redelivers it; the last attempt tells the record why
        metrics.add_metric(name="ProcessingErrors", unit=MetricUnit.Count, value=1)
        if receive_count >= MAX_RECEIVE_COUNT:
            logger.error(
                "giving up after retries", extra={"record": item.message_group_id, "reason": str(error)}
            )
            _tell_the_record(item, redact(str(error)))
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
            **_reported_actor(item),
        },
    )


def _reported_actor(item: WorkItem) -> dict[str, dict[str, str]]:
    """Who the DELETE webhook says deleted the record: kept for auditors, marked as unverified
    (webhooks are unsigned, and the record is gone, so nothing can confirm it)."""
    if not item.reported_actor:
        return {}
    return {"reported_deleted_by": {"user": item.reported_actor, "source": UNSIGNED_WEBHOOK}}


def _ensure_time_left(lambda_context: LambdaContext | None) -> None:
    """Starting a record too near the timeout would fail the whole batch unreported; SQS hands the
    record over again soon instead."""
    if lambda_context is not None and lambda_context.get_remaining_time_in_millis() < TIME_RESERVE_MS:
        raise TimeoutError("too little time left in this invocation")


def _tell_the_record(item: WorkItem, reason: str) -> None:
    try:
        provisioner().report_gave_up(item, MAX_RECEIVE_COUNT, reason)
    except Exception:  # noqa: BLE001 - kintone may be what failed; the DLQ alarm still tells operators
        logger.exception("could not write the failure to the record", extra={"record": item.message_group_id})


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@counts_kintone_requests
def handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=converge_record, processor=processor, context=context
    )
