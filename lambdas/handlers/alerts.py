"""LiteLLM budget alert (POST /alert/{token}) → one comment on the key's kintone record.

LiteLLM's webhook alerting sends no signature and no header of ours: the URL token is the
credential, compared in constant time, and the alert only names a key that our own state resolves.
"""

from __future__ import annotations

import hmac
from http import HTTPStatus

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from lambdas.adapters.credentials import secret_value
from lambdas.adapters.observability import logger, metrics, tracer
from lambdas.adapters.request_metrics import counts_kintone_requests
from lambdas.adapters.wiring import budget_alerts
from lambdas.domain.alerts import AlertOutcome, BudgetAlert
from lambdas.domain.settings import load_settings
from lambdas.handlers.answers import json_answer, validation_reason

app = APIGatewayRestResolver()
MAX_ALERT_BODY_BYTES = 64 * 1024


@app.post("/alert/<token>")
def receive_alert(token: str) -> Response:
    settings = load_settings()
    if not settings.alert_token_secret_id:
        return json_answer(HTTPStatus.NOT_FOUND, "budget alerts are not configured")
    expected = secret_value(settings.alert_token_secret_id)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        metrics.add_metric(name="AlertRejected", unit=MetricUnit.Count, value=1)
        return json_answer(HTTPStatus.UNAUTHORIZED, "unknown alert token")
    body = app.current_event.decoded_body or ""
    if len(body.encode()) > MAX_ALERT_BODY_BYTES:
        return json_answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
    try:
        alert = BudgetAlert.model_validate_json(body)
    except ValidationError as error:
        metrics.add_metric(name="AlertMalformed", unit=MetricUnit.Count, value=1)
        reason = validation_reason(error)
        return json_answer(HTTPStatus.BAD_REQUEST, f"invalid LiteLLM alert: {reason}")
    outcome = budget_alerts().handle(alert)
    if outcome == AlertOutcome.COMMENTED:
        metrics.add_metric(name="BudgetAlertsCommented", unit=MetricUnit.Count, value=1)
    logger.info(
        "budget alert",
        extra={"event": alert.event, "event_group": alert.event_group, "outcome": outcome.value},
    )
    return json_answer(HTTPStatus.OK, outcome.value, result=outcome.value)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@counts_kintone_requests
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
