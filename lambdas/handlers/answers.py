"""What the HTTP handlers answer: a JSON message, and the first reason a body was refused."""

from __future__ import annotations

import json
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from pydantic import ValidationError

from lambdas.domain.redaction import redact


def json_answer(status: HTTPStatus, message: str, **extra: str) -> Response:
    return Response(
        status_code=status.value,
        content_type="application/json",
        body=json.dumps({"message": message, **extra}),
    )


def validation_reason(error: ValidationError) -> str:
    """Where the body is wrong and why, short and scrubbed: it goes back to an unauthenticated caller."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return redact(f"{where}: {first['msg']}")[:200]
