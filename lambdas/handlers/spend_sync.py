"""EventBridge schedule → copy each issued key's spend and budget from LiteLLM into its record."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.adapters.observability import logger, metrics, tracer
from lambdas.adapters.request_metrics import counts_kintone_requests
from lambdas.adapters.wiring import spend_sync


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@counts_kintone_requests
def handler(event: dict, context: LambdaContext) -> dict:
    report = spend_sync().run()
    metrics.add_metric(name="UsageRecordsWritten", unit=MetricUnit.Count, value=report.records_written)
    metrics.add_metric(name="SpendSyncKintoneRequests", unit=MetricUnit.Count, value=report.kintone_requests)
    logger.info("spend synced", extra=report.model_dump())
    return report.model_dump()
