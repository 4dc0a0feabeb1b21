"""The local API Gateway stand-in answers as API Gateway does, whatever arrives on the socket."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from local.runtime import MAX_PAYLOAD_BYTES, WebhookGateway

WEBHOOK_PATH = "/webhook/some-token"


class RecordingGateway:
    def __init__(self) -> None:
        self.server = WebhookGateway(0)
        self.server.webhook_handler = self._handle
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handle(self, event: dict[str, Any], _context: Any) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": 202, "headers": {"Content-Type": "application/json"}, "body": '{"ok":1}'}

    def send(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send raw bytes; the status, headers and body of the one answer."""
        with socket.create_connection(self.server.server_address[:2], timeout=10) as connection:
            connection.sendall(raw)
            connection.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        assert answer, "the connection was dropped without an answer"
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
        return int(status_line.split()[1]), headers, body


@pytest.fixture
def gateway() -> Iterator[RecordingGateway]:
    recording = RecordingGateway()
    yield recording
    recording.server.shutdown()
    recording.server.server_close()


def request(
    method: str, path: str, headers: dict[str, str] | list[tuple[str, str]], body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    pairs = headers.items() if isinstance(headers, dict) else headers
    lines += [f"{name}: {value}" for name, value in pairs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
def test_methods_the_api_does_not_define_get_missing_authentication_token(
    gateway: RecordingGateway, method: str
) -> None:
    status, headers, body = gateway.send(request(method, WEBHOOK_PATH, {"Content-Length": "2"}, b"{}"))
    assert status == 403
    assert json.loads(body) == {"message": "Missing Authentication Token"}
    assert headers["content-type"] == "application/json"
    assert gateway.events == []  # nothing reached the function, let alone the queue


def test_head_gets_403_without_a_body(gateway: RecordingGateway) -> None:
    status, _, body = gateway.send(request("HEAD", WEBHOOK_PATH, {}))
    assert (status, body) == (403, b"")


@pytest.mark.parametrize("path", ["/", "/webhook", "/webhook/", "/webhook/a/b", "/other/token"])
def test_paths_the_api_does_not_define_get_403(gateway: RecordingGateway, path: str) -> None:
    status, _, body = gateway.send(request("POST", path, {"Content-Length": "2"}, b"{}"))
    assert (status, json.loads(body)) == (403, {"message": "Missing Authentication Token"})
    assert gateway.events == []


@pytest.mark.parametrize(
    "lengths",
    [["abc"], ["1e3"], ["478, 478"], ["9" * 20], ["-1"], [" "], ["2", "2"], ["2", "3"]],
    ids=["letters", "exponent", "list", "20-digits", "negative", "blank", "repeated", "conflicting"],
)
def test_a_malformed_content_length_gets_400(gateway: RecordingGateway, lengths: list[str]) -> None:
    headers = [("Content-Length", length) for length in lengths]
    status, _, body = gateway.send(request("POST", WEBHOOK_PATH, headers, b"{}"))
    assert status == 400
    assert "message" in json.loads(body)
    assert gateway.events == []


def test_a_body_over_api_gateways_limit_gets_413(gateway: RecordingGateway) -> None:
    headers = {"Content-Length": str(MAX_PAYLOAD_BYTES + 1)}
    status, _, body = gateway.send(request("POST", WEBHOOK_PATH, headers, b"{}"))
    assert (status, "message" in json.loads(body)) == (413, True)


def test_a_chunked_body_is_read_whole(gateway: RecordingGateway) -> None:
    payload = b'{"id":"1","type":"ADD_RECORD"}'
    chunked = (
        b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (payload[:7], payload[7:])) + b"0\r\n\r\n"
    )
    status, _, _ = gateway.send(request("POST", WEBHOOK_PATH, {"Transfer-Encoding": "chunked"}, chunked))
    assert status == 202
    [event] = gateway.events
    assert (event["httpMethod"], event["body"]) == ("POST", payload.decode())


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"Transfer-Encoding": "chunked"}, b"zz\r\n{}\r\n0\r\n\r\n"),
        ({"Transfer-Encoding": "chunked", "Content-Length": "2"}, b"2\r\n{}\r\n0\r\n\r\n"),
        ({"Transfer-Encoding": "gzip"}, b"{}"),
    ],
    ids=["bad-size", "with-length", "not-chunked"],
)
def test_a_bad_transfer_encoding_gets_400(gateway: RecordingGateway, headers: dict, body: bytes) -> None:
    status, _, _ = gateway.send(request("POST", WEBHOOK_PATH, headers, body))
    assert status == 400
    assert gateway.events == []


def test_a_post_reaches_the_function_as_a_post(gateway: RecordingGateway) -> None:
    status, _, body = gateway.send(request("POST", WEBHOOK_PATH + "?x=1", {"Content-Length": "2"}, b"{}"))
    assert (status, json.loads(body)) == (202, {"ok": 1})
    [event] = gateway.events
    assert (event["httpMethod"], event["resource"], event["pathParameters"]) == (
        "POST",
        "/webhook/{token}",
        {"token": "some-token"},
    )
    assert event["queryStringParameters"] == {"x": "1"}
