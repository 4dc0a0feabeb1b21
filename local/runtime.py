"""Stands in locally for API Gateway and Lambda's SQS event source mapping.

- An HTTP endpoint turns each request into an API Gateway REST proxy event for the webhook handler.
- A poller long-polls the FIFO queue and hands batches to the worker handler as SQS events,
  deleting what succeeded and making failures visible again after a short delay, as Lambda does
  after a visibility timeout.
- Schedules invoke the reconciler and the spend sync handlers with EventBridge's scheduled event.
- Rotations: in AWS the worker's `rotate_secret` makes Secrets Manager invoke the rotator for the
  four steps. moto does not run Lambda code, so here the worker's request runs the rotator handler
  for the four steps itself, with the same events, after the worker's invocation (as an asynchronous
  invocation would).

The handlers are the real ones, imported as Lambda would import them. A Lambda container runs one
invocation at a time and Powertools relies on that (its resolver, batch processor and metrics keep
per-invocation state in module globals), so one process runs one invocation at a time too: the
stack gets its concurrency from several worker processes, like Lambda from several containers.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import boto3

LOG = logging.getLogger("local.runtime")
MAX_BATCH_SIZE = 10
# The CDK stack's function timeout (stacks/constructs/functions.py, WORKER_TIMEOUT).
FUNCTION_TIMEOUT_SECONDS = 60
# The API's routes: kintone webhooks and LiteLLM budget alerts.
API_ROUTE = re.compile(r"/(webhook|alert)/[^/]+")
# API Gateway's payload limit for REST APIs.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
MAX_CHUNK_LINE = 4096
# One invocation at a time per process, as in one Lambda container.
INVOCATION_LOCK = threading.Lock()


@dataclass
class FakeLambdaContext:
    """Lambda's context: the time left counts down from the function's timeout, as in Lambda."""

    function_name: str
    memory_limit_in_mb: int = 256
    aws_request_id: str = ""
    invoked_function_arn: str = ""
    timeout_seconds: float = FUNCTION_TIMEOUT_SECONDS
    started_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())
        self.invoked_function_arn = (
            self.invoked_function_arn
            or f"arn:aws:lambda:ap-northeast-1:000000000000:function:{self.function_name}"
        )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.started_at + self.timeout_seconds - time.monotonic()) * 1000))


def api_gateway_event(
    method: str, path: str, headers: dict[str, str], body: bytes, query: str = ""
) -> dict[str, Any]:
    """An API Gateway REST proxy event for the routes POST /webhook/{token} and /alert/{token}."""
    path_parameters = None
    resource = path
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] in ("webhook", "alert"):
        path_parameters = {"token": parts[1]}
        resource = f"/{parts[0]}/{{token}}"
    try:
        text, is_base64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode(), True
    request_id = str(uuid.uuid4())
    query_values = parse_qs(query, keep_blank_values=True)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {name: values[-1] for name, values in query_values.items()} or None,
        "multiValueQueryStringParameters": query_values or None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/local{path}",
            "stage": "local",
            "requestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


def scheduled_event() -> dict[str, Any]:
    """What an EventBridge schedule sends."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": "ap-northeast-1",
        "resources": ["arn:aws:events:ap-northeast-1:000000000000:rule/reconcile"],
        "detail": {},
    }


def invoke_reconciler(event: dict[str, Any] | None = None) -> dict[str, Any]:
    from lambdas.handlers import reconciler  # noqa: PLC0415 - import after the environment is set

    with INVOCATION_LOCK:
        return reconciler.handler(event or scheduled_event(), FakeLambdaContext("reconciler"))


def invoke_spend_sync() -> dict[str, Any]:
    from lambdas.handlers import spend_sync  # noqa: PLC0415 - import after the environment is set

    with INVOCATION_LOCK:
        return spend_sync.handler(scheduled_event(), FakeLambdaContext("spend-sync"))


class Schedule:
    """EventBridge's rate schedule for one function."""

    def __init__(self, interval_seconds: float, invoke: Callable[[], Any], name: str) -> None:
        self._interval_seconds = interval_seconds
        self._invoke = invoke
        self._name = name
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-schedule", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_seconds):
            try:
                self._invoke()
            except Exception:  # a schedule fires again whatever the last run did, as EventBridge's does
                LOG.exception("%s invocation failed", self._name)


class InProcessRotations:
    """Secrets Manager's side of `rotate_secret`, in this process: the four steps, in order."""

    STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")

    def __init__(self) -> None:
        self._running: set[str] = set()
        self._finished = 0
        self._changed = threading.Condition()

    def request_rotation(self, ref: Any) -> None:
        from lambdas.adapters.wiring import key_store  # noqa: PLC0415 - import after the environment is set

        secret_id = key_store().secret_name(ref)
        with self._changed:
            if secret_id in self._running:
                return  # AWS answers "a previous rotation isn't complete" and lets that one go on
            self._running.add(secret_id)
        threading.Thread(target=self._rotate, args=(secret_id,), name="rotation", daemon=True).start()

    @property
    def finished(self) -> int:
        with self._changed:
            return self._finished

    def wait_finished(self, count: int, timeout: float) -> bool:
        """Block until at least `count` rotations ended (succeeded or failed)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._finished >= count, timeout)

    def _rotate(self, secret_id: str) -> None:
        from lambdas.handlers import rotator  # noqa: PLC0415 - import after the environment is set

        token = str(uuid.uuid4())
        try:
            for step in self.STEPS:
                event = {"SecretId": secret_id, "ClientRequestToken": token, "Step": step}
                with INVOCATION_LOCK:  # queued behind the worker's invocation that asked for it
                    rotator.handler(event, FakeLambdaContext("rotator"))
        except Exception:  # noqa: BLE001 - the rotator logged it and told the record; AWS stops here too
            LOG.warning("rotation of a key secret failed at a step; see the rotator's log")
        finally:
            with self._changed:
                self._running.discard(secret_id)
                self._finished += 1
                self._changed.notify_all()


class WebhookGateway(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        from lambdas.handlers import alerts, webhook  # noqa: PLC0415 - import after the environment is set

        self.webhook_handler = webhook.handler
        self.alert_handler = alerts.handler
        super().__init__(("127.0.0.1", port), _GatewayRequestHandler)


class _GatewayRequestHandler(BaseHTTPRequestHandler):
    """API Gateway's side of the REST API: only POST /webhook/{token} is defined.

    As API Gateway does, any other method or path gets 403 `Missing Authentication Token`, a body
    over its 10 MB payload limit 413, and a request whose length cannot be known 400; every answer
    is JSON `{"message": ...}`, never an HTML page.
    """

    server: WebhookGateway
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the path holds the webhook token; the handler logs what matters without it

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler looks up do_<METHOD>; every method takes the same route, so an
        # undefined one gets API Gateway's 403 rather than Python's 501.
        if name.startswith("do_"):
            return self._route
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed request lines and headers: answered in API Gateway's shape, not as HTML."""
        self.close_connection = True
        self._answer(code, {"message": message or HTTPStatus(code).phrase})

    def _route(self) -> None:
        path, _, query = self.path.partition("?")
        if self.command != "POST" or API_ROUTE.fullmatch(path) is None:
            self.close_connection = True  # the body, if any, is left unread
            self._answer(
                HTTPStatus.FORBIDDEN,
                {"message": "Missing Authentication Token"},
                {"x-amzn-ErrorType": "MissingAuthenticationTokenException"},
            )
            return
        try:
            body = self._read_body()
        except RequestRefusedError as refused:
            self.close_connection = True
            self._answer(refused.status, {"message": refused.message})
            return
        event = api_gateway_event("POST", path, dict(self.headers.items()), body, query)
        # API Gateway's routes: budget alerts go to their own function.
        if event["resource"] == "/alert/{token}":
            handler, function_name = self.server.alert_handler, "alerts"
        else:
            handler, function_name = self.server.webhook_handler, "webhook"
        with INVOCATION_LOCK:
            response = handler(event, FakeLambdaContext(function_name))
        payload = response.get("body") or ""
        data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
        self._answer(response["statusCode"], data, response.get("headers") or {})

    def _read_body(self) -> bytes:
        lengths = self.headers.get_all("Content-Length") or []
        encodings = self.headers.get_all("Transfer-Encoding") or []
        if encodings:
            if lengths or [value.strip().lower() for value in encodings] != ["chunked"]:
                raise RequestRefusedError(HTTPStatus.BAD_REQUEST, "Bad Request")
            return self._read_chunked()
        if not lengths:
            return b""
        if len(lengths) > 1 or not CONTENT_LENGTH.fullmatch(lengths[0].strip()):
            raise RequestRefusedError(HTTPStatus.BAD_REQUEST, "Bad Request")
        length = int(lengths[0])
        if length > MAX_PAYLOAD_BYTES:
            raise RequestRefusedError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request Too Long")
        return self._read_exactly(length)

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_line = self.rfile.readline(MAX_CHUNK_LINE + 1)
            size_text = size_line.split(b";", 1)[0].strip()
            if len(size_line) > MAX_CHUNK_LINE or not CHUNK_SIZE.fullmatch(size_text):
                raise RequestRefusedError(HTTPStatus.BAD_REQUEST, "Bad Request")
            size = int(size_text, 16)
            if size == 0:
                break
            if len(body) + size > MAX_PAYLOAD_BYTES:
                raise RequestRefusedError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request Too Long")
            body += self._read_exactly(size)
            if self.rfile.readline(MAX_CHUNK_LINE + 1).strip():
                raise RequestRefusedError(HTTPStatus.BAD_REQUEST, "Bad Request")
        while self.rfile.readline(MAX_CHUNK_LINE + 1).strip():
            pass  # trailer fields: nothing of them is used
        return bytes(body)

    def _read_exactly(self, length: int) -> bytes:
        data = self.rfile.read(length)
        if len(data) != length:
            raise RequestRefusedError(HTTPStatus.BAD_REQUEST, "Bad Request")
        return data

    def _answer(
        self, status: int, body: dict[str, str] | bytes, headers: dict[str, str] | None = None
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            if name.lower() not in ("content-type", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class RequestRefusedError(Exception):
    """A request API Gateway would answer with an error before invoking the function."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """What Lambda's event source mapping hands the function for messages ReceiveMessage returned."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "ap-northeast-1",
            }
            for message in messages
        ]
    }


class QueuePoller:
    """Lambda's event source mapping for an SQS FIFO queue, feeding one container."""

    def __init__(self, queue_url: str, function_name: str = "worker"):
        from lambdas.handlers import worker  # noqa: PLC0415 - import after the environment is set

        self._worker_handler = worker.handler
        self._queue_url = queue_url
        self._queue_arn = f"arn:aws:sqs:ap-northeast-1:000000000000:{queue_url.rsplit('/', 1)[-1]}"
        self._function_name = function_name
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="poller", daemon=True)
        # pause()/resume(): as disabling and enabling the event source mapping does.
        self._enabled = True
        self._busy = False
        self._enabled_changed = threading.Condition()
        # Tests wait on this instead of sleeping: how many messages the worker has handled so far.
        self._handled = 0
        self._handled_by_group: collections.Counter[str] = collections.Counter()
        self._handled_changed = threading.Condition()
        self._sqs = boto3.client("sqs")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.resume()
        self._thread.join(timeout=5)

    def pause(self, timeout: float = 30.0) -> None:
        """Stop taking messages, once the batch in hand (if any) is handled: messages pile up in the
        queue, as they do when records arrive faster than the workers take them."""
        with self._enabled_changed:
            self._enabled = False
            if not self._enabled_changed.wait_for(lambda: not self._busy, timeout):
                raise TimeoutError("the worker did not finish its batch")

    def resume(self) -> None:
        with self._enabled_changed:
            self._enabled = True
            self._enabled_changed.notify_all()

    @property
    def handled(self) -> int:
        with self._handled_changed:
            return self._handled

    def wait_handled(self, count: int, timeout: float) -> bool:
        """Block until at least `count` messages were handled (succeeded or failed)."""
        return self.wait_until(lambda: self._handled >= count, timeout)

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Block until `condition` holds, checked now and after each batch the worker handles."""
        with self._handled_changed:
            return self._handled_changed.wait_for(condition, timeout)

    def handled_in_group(self, group_id: str) -> int:
        with self._handled_changed:
            return self._handled_by_group[group_id]

    def wait_group_handled(self, group_id: str, count: int, timeout: float) -> bool:
        """Block until at least `count` messages of one message group (one record) were handled."""
        return self.wait_until(lambda: self._handled_by_group[group_id] >= count, timeout)

    def _poll(self) -> None:
        while not self._stopping.is_set():
            with self._enabled_changed:
                self._enabled_changed.wait_for(lambda: self._enabled)
                self._busy = True
            try:
                messages = self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=MAX_BATCH_SIZE,
                    WaitTimeSeconds=1,
                    MessageSystemAttributeNames=["All"],
                ).get("Messages", [])
                if messages:
                    self._invoke(messages)
            except Exception:  # a poller must outlive any one failure, as Lambda's does
                LOG.exception("poller iteration failed")
            finally:
                with self._enabled_changed:
                    self._busy = False
                    self._enabled_changed.notify_all()

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        event = sqs_event(messages, self._queue_arn)
        try:
            with INVOCATION_LOCK:
                response = self._worker_handler(event, FakeLambdaContext(self._function_name))
            failed = {failure["itemIdentifier"] for failure in response.get("batchItemFailures", [])}
        except Exception:  # the whole invocation failed: Lambda retries the whole batch
            LOG.exception("worker invocation failed")
            failed = {message["MessageId"] for message in messages}
        done = [message for message in messages if message["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(done)
                ],
            )
        # Failed messages are left alone, as Lambda leaves them: each comes back once its visibility
        # timeout ends, the queue's or the one the worker set (ChangeMessageVisibility).
        with self._handled_changed:
            self._handled += len(messages)
            self._handled_by_group.update(m.get("Attributes", {}).get("MessageGroupId", "") for m in messages)
            self._handled_changed.notify_all()


class LocalRuntime:
    """The webhook endpoint, a queue poller (with rotations) and/or the schedules."""

    def __init__(
        self,
        queue_url: str,
        *,
        serve_webhooks: bool,
        poll_queue: bool,
        port: int = 0,
        reconcile_every_seconds: float | None = None,
        sync_spend_every_seconds: float | None = None,
    ):
        from lambdas.adapters import wiring  # noqa: PLC0415 - import after the environment is set

        self.gateway = WebhookGateway(port) if serve_webhooks else None
        self.poller = QueuePoller(queue_url) if poll_queue else None
        self.rotations = InProcessRotations()
        if poll_queue:
            wiring.use_local_rotation_requester(self.rotations)
        self.schedules = [
            Schedule(interval, invoke, name)
            for interval, invoke, name in (
                (reconcile_every_seconds, invoke_reconciler, "reconciler"),
                (sync_spend_every_seconds, invoke_spend_sync, "spend-sync"),
            )
            if interval is not None
        ]

    @property
    def base_url(self) -> str:
        if self.gateway is None:
            return ""
        host, port = self.gateway.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        if self.gateway is not None:
            threading.Thread(target=self.gateway.serve_forever, name="gateway", daemon=True).start()
        if self.poller is not None:
            self.poller.start()
        for schedule in self.schedules:
            schedule.start()
        return self.base_url

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.shutdown()
            self.gateway.server_close()
        if self.poller is not None:
            self.poller.stop()
        for schedule in self.schedules:
            schedule.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["gateway", "worker", "reconciler", "spend-sync"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--ready-file")
    parser.add_argument("--interval", type=float, default=60.0, help="schedules: seconds between runs")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    runtime = LocalRuntime(
        arguments.queue_url,
        serve_webhooks=arguments.role == "gateway",
        poll_queue=arguments.role == "worker",
        port=arguments.port,
        reconcile_every_seconds=arguments.interval if arguments.role == "reconciler" else None,
        sync_spend_every_seconds=arguments.interval if arguments.role == "spend-sync" else None,
    )
    base_url = runtime.start()
    if arguments.ready_file:
        with open(arguments.ready_file, "w") as ready:
            ready.write(base_url)
    threading.Event().wait()  # serve until the stack stops this process


if __name__ == "__main__":
    main()
