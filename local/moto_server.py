"""moto's server, made to refuse what SQS refuses.

SQS answers `InvalidMessageContents` to a message body holding a character outside #x9, #xA, #xD,
#x20-#xD7FF, #xE000-#xFFFD and #x10000-#x10FFFF; moto 5 accepts any. Without this check a local run
would pass a message that `SendMessage` refuses in AWS.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from moto.server import main
from moto.sqs.exceptions import SQSException
from moto.sqs.models import SQSBackend

_OUTSIDE_SQS_CHARACTERS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class InvalidMessageContentsError(SQSException):
    def __init__(self, character: str) -> None:
        super().__init__(
            "InvalidMessageContents",
            f"Invalid binary character '#x{ord(character):X}' was found in the message body, the set of "
            "allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
        )


def validating_like_sqs(validate: Callable[..., None]) -> Callable[..., None]:
    """moto's message check (SendMessage and SendMessageBatch), with SQS's check of characters first."""

    def validate_like_sqs(self: SQSBackend, queue: Any, message_body: str, *args: Any, **kwargs: Any) -> None:
        outside = _OUTSIDE_SQS_CHARACTERS.search(message_body)
        if outside is not None:
            raise InvalidMessageContentsError(outside.group())
        validate(self, queue, message_body, *args, **kwargs)

    return validate_like_sqs


if __name__ == "__main__":
    SQSBackend._validate_message = validating_like_sqs(SQSBackend._validate_message)  # type: ignore[method-assign]
    sys.exit(main())
