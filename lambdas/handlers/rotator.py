"""Secrets Manager rotation → one rotation step of a key secret (see lambdas.domain.rotation)."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from lambdas.adapters.observability import logger, metrics, tracer
from lambdas.adapters.request_metrics import counts_kintone_requests
from lambdas.adapters.wiring import rotator
from lambdas.domain.rotation import RotationStep


class RotationEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    SecretId: str
    ClientRequestToken: str
    Step: RotationStep


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@counts_kintone_requests
def handler(event: dict, context: LambdaContext) -> None:
    rotation = RotationEvent.model_validate(event)
    log_fields = {"secret_id": rotation.SecretId, "step": rotation.Step.value}
    try:
        rotator().run(rotation.SecretId, rotation.ClientRequestToken, rotation.Step)
    except Exception:
        # Re-raised: Secrets Manager must see the step fail. The record was told why already.
        logger.exception("rotation step failed", extra=log_fields)
        metrics.add_metric(name="RotationsFailed", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name="RotationStepsDone", unit=MetricUnit.Count, value=1)
    if rotation.Step == RotationStep.FINISH:
        metrics.add_metric(name="KeysRotated", unit=MetricUnit.Count, value=1)
    logger.info("rotation step done", extra=log_fields)
