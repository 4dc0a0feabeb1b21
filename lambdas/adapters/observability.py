"""Powertools logger, tracer and metrics shared by every handler, with credentials scrubbed.

The formatter redacts the whole serialized line, exceptions and extra keys included, so a key can
not reach CloudWatch Logs through any logging call, however it was written.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from lambdas.domain.redaction import redact


class RedactingFormatter(LambdaPowertoolsFormatter):
    def serialize(self, log: dict) -> str:
        return redact(super().serialize(log))


logger = Logger(logger_formatter=RedactingFormatter())
tracer = Tracer()
metrics = Metrics()
