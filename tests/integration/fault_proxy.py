"""A pass-through HTTP proxy in front of LiteLLM that can be told to fail: 5xx, hang, or drop."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


@dataclass
class Fault:
    path_prefix: str
    count: int
    status: int = 0  # answer this status instead of forwarding
    hang_seconds: float = 0.0  # hold the request this long before forwarding (a timeout for the caller)
    drop: bool = False  # close the connection without an answer (the service is down)


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.Client(base_url=upstream, timeout=60)
        self.faults: list[Fault] = []
        self.faults_lock = threading.Lock()
        self.release = threading.Event()  # set to end every hang at once (test teardown)
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        threading.Thread(target=self.serve_forever, name="fault-proxy", daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def inject(self, fault: Fault) -> None:
        with self.faults_lock:
            self.faults.append(fault)

    def clear(self) -> None:
        with self.faults_lock:
            self.faults.clear()
        self.release.set()
        self.release = threading.Event()

    def take_fault(self, path: str) -> Fault | None:
        with self.faults_lock:
            for fault in self.faults:
                if path.startswith(fault.path_prefix) and fault.count > 0:
                    fault.count -= 1
                    return fault
        return None

    def close(self) -> None:
        self.clear()
        self.shutdown()
        self.server_close()


class _ProxyHandler(BaseHTTPRequestHandler):
    server: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass  # requests carry keys in headers; nothing of them is logged

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.server.take_fault(self.path)
        if fault and fault.drop:
            self.close_connection = True
            self.connection.close()
            return
        if fault and fault.hang_seconds:
            self.server.release.wait(fault.hang_seconds)
        if fault and fault.status:
            payload = b'{"error":{"message":"injected fault","type":"injected","param":null,"code":"%d"}}' % (
                fault.status
            )
            self._reply(fault.status, {"content-type": "application/json"}, payload)
            return
        headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
        response = self.server.upstream.request(self.command, self.path, headers=headers, content=body)
        self._reply(response.status_code, dict(response.headers), response.content)

    def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _forward
    do_POST = _forward
