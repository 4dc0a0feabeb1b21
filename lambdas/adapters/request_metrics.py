"""Each invocation's kintone requests: added to the app's daily tally and emitted as metrics.

`KintoneRequests` (Sum) is what this invocation sent; `KintoneRequestsToday` (Maximum) is the app's
total for the kintone day so far across every function, which the daily budget alarm watches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from lambdas.adapters.observability import logger, metrics
from lambdas.adapters.wiring import REQUEST_METER, request_tally


def publish_kintone_requests() -> None:
    try:
        published = REQUEST_METER.publish(request_tally())
    except Exception:  # noqa: BLE001 - the counts stay pending for the next invocation; never fail this one
        logger.warning("could not add this invocation's kintone requests to the daily tally")
        return
    for (app_id, day), (added, total) in published.items():
        metrics.add_metric(name="KintoneRequests", unit=MetricUnit.Count, value=added)
        metrics.add_metric(name="KintoneRequestsToday", unit=MetricUnit.Count, value=total)
        logger.info("kintone requests", extra={"app_id": app_id, "day": day, "sent": added, "today": total})


def counts_kintone_requests(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Publishes the kintone requests a handler made, failed invocations included (they count too)."""

    @functools.wraps(handler)
    def counted(event: Any, context: Any) -> Any:
        try:
            return handler(event, context)
        finally:
            publish_kintone_requests()

    return counted
