"""The command line: ``python -m local.kintone_emulator``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .directory import Directory
from .emulator import KintoneEmulator
from .faults import CONCURRENT_REQUEST_LIMIT
from .records import DELETE_KEY_STYLES
from .schema import DEFAULT_SCHEMA, EMPTY_SCHEMA
from .webhooks import WEBHOOKS_PER_MINUTE

logger = logging.getLogger("kintone_emulator")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local.kintone_emulator", description="Emulate one kintone app and its webhooks."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--app-id", default="1")
    parser.add_argument(
        "--api-token", action="append", default=[], help="a token of the app; repeat for more"
    )
    parser.add_argument(
        "--app-management-token",
        action="append",
        default=[],
        help="a token of the app that also has the app-management permission; repeat for more",
    )
    parser.add_argument(
        "--directory",
        default=None,
        help="a JSON file of users (with passwords), organizations, groups and User API tokens",
    )
    parser.add_argument("--app-creator", default=None, help="the login name of the app's creator")
    parser.add_argument(
        "--empty-app", action="store_true", help="start with an app that has no fields of its own yet"
    )
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--webhook-rate-per-minute", type=int, default=WEBHOOKS_PER_MINUTE)
    parser.add_argument("--webhook-timeout", type=float, default=10.0, help="seconds per webhook POST")
    parser.add_argument(
        "--ready-file", default=None, help="where to write KINTONE_BASE_URL=... once listening"
    )
    parser.add_argument("--max-concurrent-requests", type=int, default=CONCURRENT_REQUEST_LIMIT)
    parser.add_argument("--delete-notification-keys", choices=DELETE_KEY_STYLES, default="deleteBy")
    parser.add_argument(
        "--reject-unknown-fields", action="store_true", help="answer CB_VA01 to unknown field codes"
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser.parse_args(argv)


def _write_atomically(path: Path, text: str) -> None:
    # Readers poll for the file; they must never see it half written.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs each request's URL at INFO, and a webhook URL carries its token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    emulator = KintoneEmulator(
        app_id=args.app_id,
        api_tokens=args.api_token,
        app_management_tokens=args.app_management_token,
        app_creator=args.app_creator,
        schema=EMPTY_SCHEMA if args.empty_app else DEFAULT_SCHEMA,
        directory=Directory.from_file(Path(args.directory)) if args.directory else None,
        webhook_url=args.webhook_url,
        webhook_rate_per_minute=args.webhook_rate_per_minute,
        host=args.host,
        port=args.port,
        max_concurrent_requests=args.max_concurrent_requests,
        webhook_timeout_seconds=args.webhook_timeout,
        delete_notification_keys=args.delete_notification_keys,
        reject_unknown_fields=args.reject_unknown_fields,
    )
    if not args.api_token and not args.app_management_token:
        logger.warning("no --api-token: only users of the --directory can use the REST API")
    stop_requested = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop_requested.set())
    ready_line = f"KINTONE_BASE_URL={emulator.start()}"
    try:
        if args.ready_file:
            _write_atomically(Path(args.ready_file), ready_line + "\n")
        print(ready_line, flush=True)
        stop_requested.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
