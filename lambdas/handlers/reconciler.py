"""EventBridge schedule → one reconciler sweep. Finds work the webhooks missed; the worker does it.

An operator who checked a blocked mass revoke invokes it once with {"allow_mass_revoke": true}.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from lambdas.adapters.observability import logger, metrics, tracer
from lambdas.adapters.request_metrics import counts_kintone_requests
from lambdas.adapters.wiring import reconciler


class ReconcileRequest(BaseModel):
    """A scheduled event's fields (source, detail-type, …) are ignored; only the override counts."""

    model_config = ConfigDict(extra="ignore")

    allow_mass_revoke: bool = False


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@counts_kintone_requests
def handler(event: dict, context: LambdaContext) -> dict:
    request = ReconcileRequest.model_validate(event)
    report = reconciler().run(allow_mass_revoke=request.allow_mass_revoke)
    metrics.add_metric(name="ReconcileEnqueued", unit=MetricUnit.Count, value=report.enqueued)
    metrics.add_metric(name="KeysRetired", unit=MetricUnit.Count, value=report.keys_retired)
    if report.full_sweep:
        metrics.add_metric(name="RecordsMissing", unit=MetricUnit.Count, value=report.missing_records)
        metrics.add_metric(name="OwnersLeft", unit=MetricUnit.Count, value=report.owners_left)
        metrics.add_metric(
            name="OwnerCheckFailed", unit=MetricUnit.Count, value=1 if report.owner_check_failed else 0
        )
        if report.owner_check_failed:
            logger.warning("the directory did not answer whole; no owner was checked in this sweep")
    # Always emitted (0 or 1) so the alarm on it sees data rather than a gap.
    metrics.add_metric(
        name="MassRevokeBlocked", unit=MetricUnit.Count, value=1 if report.mass_revoke_blocked else 0
    )
    if report.mass_revoke_blocked:
        logger.error(
            "mass revoke blocked: too many keys have no record or lost their owner; nothing was revoked",
            extra={
                "missing_records": report.missing_records,
                "owners_left": report.owners_left,
                "issued_keys": report.issued_keys,
            },
        )
    logger.info("reconciled", extra=report.model_dump())
    return report.model_dump()
