"""Powertools logger, tracer and metrics shared by every handler, with credentials scrubbed.

The formatter redacts the whole serialized line, exceptions and extra keys included, so a key can
not reach CloudWatch Logs through any logging call, however it was written.
"""

from __future__ import annotations

import logging
import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from lambdas.domain.redaction import redact


class RedactingFormatter(LambdaPowertoolsFormatter):
    def serialize(self, log: dict) -> str:
        return redact(super().serialize(log))


SERVICE_NAME = os.environ.get("POWERTOOLS_SERVICE_NAME", "kintone-llm-keys")
# A missing namespace would fail every invocation at flush time; default it instead.
METRICS_NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "KintoneLLMKeys")


class RedactingFilter(logging.Filter):
    """For lines that bypass our formatter: other libraries' loggers writing to the root handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


# Debug lines of these libraries carry credentials: Powertools prints route parameters (the webhook
# token), botocore prints response bodies (secret values), httpx prints URLs.
_CHATTY_LIBRARIES = ("aws_lambda_powertools", "botocore", "boto3", "urllib3", "httpx", "httpcore")
if not os.environ.get("POWERTOOLS_DEBUG"):
    for library in _CHATTY_LIBRARIES:
        logging.getLogger(library).setLevel(logging.WARNING)
for root_handler in logging.getLogger().handlers:
    root_handler.addFilter(RedactingFilter())

logger = Logger(service=SERVICE_NAME, logger_formatter=RedactingFormatter())
tracer = Tracer(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
