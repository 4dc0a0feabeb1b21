"""The HTTP server: one thread per connection, keep-alive, JSON in and out."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import logging
import socket
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .emulator import KintoneEmulator

logger = logging.getLogger("kintone_emulator")

MAX_REQUEST_BODY_BYTES = 10 * 1024 * 1024
IDLE_CONNECTION_SECONDS = 60


@dataclasses.dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


class EmulatorHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a burst of saves opens many connections at once

    def __init__(self, address: tuple[str, int], emulator: KintoneEmulator) -> None:
        super().__init__(address, _RequestHandler)
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Ends open keep-alive connections so that their threads do not outlive the emulator."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_SECONDS
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK stalls each reply.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        started = time.perf_counter()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BODY_BYTES:
            self.close_connection = True
            response = Response(
                413, {"error": "the request body is missing a valid Content-Length or too large"}
            )
        else:
            body = self.rfile.read(length) if length else b""
            response = self.server.emulator.handle(method, self.path, self.headers, body)
        payload = json.dumps(response.body, ensure_ascii=False).encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        logger.debug(
            "%s %s -> %d in %.1f ms",
            method,
            urllib.parse.urlsplit(self.path).path,
            response.status,
            (time.perf_counter() - started) * 1000,
        )

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http: " + format, *args)


def url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
