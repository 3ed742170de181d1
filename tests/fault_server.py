"""A fault-injecting OpenAI-compatible server on 127.0.0.1, for the faults a real API has and a
healthy local server never shows (a 429 with Retry-After, 500s, a connection dropped mid-response,
an answer slower than the client's timeout, a body that is not JSON, a response without usage).

It is a fake by necessity — llama.cpp's server cannot be made to fail on cue — and only the
transport is fake: it answers ``/v1/models`` and ``/v1/completions`` with a fixed text. Each request
takes the next fault of its script (then answers normally); it counts requests and the most it saw
in flight at once. It stops with the ``with`` block (a daemon thread: it never outlives the test).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FaultServer:
    def __init__(self, script: list[str] | None = None, delay_s: float = 0.0, headers: dict[str, str] | None = None) -> None:
        self.script = list(script or [])
        self.delay_s, self.headers = delay_s, headers or {}
        self.requests: list[str] = []  # "GET /v1/models", "POST /v1/completions", ...
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, code: int, body: bytes, extra: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in {**server.headers, **(extra or {})}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                server.requests.append(f"GET {self.path}")
                self._send(200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "test"}]}).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.requests.append(f"POST {self.path}")
                    fault = server.script.pop(0) if server.script else "ok"
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._answer(fault, body)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, fault: str, body: dict[str, Any]) -> None:
                time.sleep(server.delay_s)
                if fault == "429":
                    return self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "1"})
                if fault == "500":
                    return self._send(500, b'{"error": {"message": "internal error"}}')
                if fault == "400":
                    return self._send(400, b'{"error": {"message": "bad request"}}')
                if fault == "reset":  # headers promise a body, then the connection drops
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "500")
                    self.end_headers()
                    self.wfile.write(b'{"id": "x", "cho')
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return None
                if fault == "slow":
                    time.sleep(3.0)
                if fault == "badjson":
                    return self._send(200, b'{"id": "x", "choices": [ this is not json')
                usage = None if fault == "nousage" else {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
                out = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": body.get("model", "fake"),
                       "choices": [{"index": 0, "text": " positive", "finish_reason": "length", "logprobs": None}]}
                if usage:
                    out["usage"] = usage
                return self._send(200, json.dumps(out).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "FaultServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def posts(self) -> int:
        return sum(r.startswith("POST") for r in self.requests)
