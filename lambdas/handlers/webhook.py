"""kintone webhook → SQS FIFO. Authenticates, validates and acknowledges within milliseconds.

kintone webhooks carry no signature, so the URL token is the only credential and the payload is
only a hint: the worker re-reads the record from kintone before it acts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from http import HTTPStatus

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from lambdas.adapters.credentials import secret_value
from lambdas.adapters.observability import logger, metrics, tracer
from lambdas.adapters.sqs_work_queue import message_body
from lambdas.adapters.wiring import sqs_client
from lambdas.domain.settings import load_settings
from lambdas.domain.webhook_events import (
    CommentAddedEvent,
    RecordDeletedEvent,
    WorkItem,
    webhook_event_adapter,
)
from lambdas.handlers.answers import json_answer, validation_reason

app = APIGatewayRestResolver()


def _body_bytes() -> bytes:
    body = app.current_event.body or ""
    if app.current_event.is_base64_encoded:
        return base64.b64decode(body, validate=True)
    return body.encode("utf-8", errors="surrogateescape")


@app.post("/webhook/<token>")
def receive_webhook(token: str) -> Response:
    received_at = time.time()
    settings = load_settings()
    expected = secret_value(settings.webhook_token_secret_id)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        metrics.add_metric(name="WebhookRejected", unit=MetricUnit.Count, value=1)
        return json_answer(HTTPStatus.UNAUTHORIZED, "unknown webhook token")

    try:
        body = _body_bytes()
    except (binascii.Error, ValueError):
        metrics.add_metric(name="WebhookMalformed", unit=MetricUnit.Count, value=1)
        return json_answer(HTTPStatus.BAD_REQUEST, "body is not valid base64")
    if len(body) > settings.max_webhook_body_bytes:
        metrics.add_metric(name="WebhookMalformed", unit=MetricUnit.Count, value=1)
        return json_answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
    try:
        event = webhook_event_adapter.validate_json(body)
    except ValidationError as error:
        metrics.add_metric(name="WebhookMalformed", unit=MetricUnit.Count, value=1)
        reason = validation_reason(error)
        return json_answer(HTTPStatus.BAD_REQUEST, f"invalid kintone webhook: {reason}")
    if event.app.id != settings.kintone_app_id:
        metrics.add_metric(name="WebhookRejected", unit=MetricUnit.Count, value=1)
        return json_answer(HTTPStatus.FORBIDDEN, f"app {event.app.id} is not served here")

    if isinstance(event, CommentAddedEvent):
        metrics.add_metric(name="WebhookIgnored", unit=MetricUnit.Count, value=1)
        return json_answer(HTTPStatus.OK, "comments need no action", result="ignored")

    item = WorkItem(
        app_id=event.app.id,
        record_id=event.record_id,
        trigger=event.type,
        received_at=received_at,
        reported_actor=event.deleted_by.code if isinstance(event, RecordDeletedEvent) else "",
    )
    sqs_client().send_message(
        QueueUrl=settings.queue_url,
        MessageBody=message_body(item),
        MessageGroupId=item.message_group_id,
        # kintone's notification id makes a retried or replayed delivery a duplicate for SQS.
        MessageDeduplicationId=hashlib.sha256(event.id.encode()).hexdigest(),
    )
    metrics.add_metric(name="WebhookAccepted", unit=MetricUnit.Count, value=1)
    logger.info(
        "webhook queued",
        extra={"event_type": event.type, "app_id": event.app.id, "record_id": event.record_id},
    )
    return json_answer(HTTPStatus.ACCEPTED, "queued", result="queued")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
