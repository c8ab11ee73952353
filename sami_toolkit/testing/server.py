"""A local OpenAI-compatible chat-completions server for tests and benchmarks (standard library only).

API judges, writers and samplers are tested against a *real* HTTP server on ``127.0.0.1`` instead of mocks, so
retries, timeouts, ``Retry-After`` and usage accounting go through litellm's actual code paths::

    with OpenAIServer(reply=lambda req: "Comparison: ...\\nFinal Response: A", latency=0.05) as server:
        judge = get_component("judges", "litellm", {"model": "openai/gpt-4-0613", "api_base": server.api_base,
                                                    "api_key_env": "FAKE_KEY"})

Behaviour is scriptable per request:

* ``reply(request) -> str``: the assistant text (``request`` is the parsed JSON body; ``messages`` inside);
* ``latency``: seconds to wait before answering every request;
* ``fault(request, n) -> Fault | None``: make request number ``n`` (0-based) fail — ``Fault("429",
  retry_after=1)``, ``Fault("500")``, ``Fault("hang", seconds=30)`` (never answers in time), ``Fault("garbage")``
  (HTTP 200 with a body that is not JSON), ``Fault("echo-auth")`` (HTTP ``status``, default 400, whose error
  body echoes the ``Authorization`` header and the bare key, as careless servers do: a key-leak test);
* :meth:`OpenAIServer.fail_next` queues one-shot faults consumed in arrival order.

Every request is recorded (:attr:`OpenAIServer.requests`: path, JSON body, headers, arrival time), so tests can
count calls and check what was sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Literal

FaultKind = Literal["429", "500", "401", "hang", "garbage", "echo-auth"]


@dataclass
class Fault:
    """One scripted failure of a request."""

    kind: FaultKind
    #: for ``429``: the ``Retry-After`` header in seconds (``None`` sends no header)
    retry_after: float | None = None
    #: for ``hang``: how long to sleep before answering (longer than the client's timeout)
    seconds: float = 30.0
    #: for ``echo-auth``: the HTTP status of the answer
    status: int = 400


@dataclass
class RecordedRequest:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    time: float
    fault: str | None = None


def default_reply(request: dict[str, Any]) -> str:
    return "Comparison: Response A follows the constitution more closely.\nFinal Response: A"


def _count_tokens(text: str) -> int:
    return max(1, len(text.split()))


@dataclass
class OpenAIServer:
    """The server; use as a context manager (``start()``/``stop()`` otherwise)."""

    reply: Callable[[dict[str, Any]], str] | str = default_reply
    latency: float = 0.0
    fault: Callable[[dict[str, Any], int], Fault | None] | None = None
    usage: bool = True
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------------------
    def start(self) -> "OpenAIServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: with Nagle's algorithm on, the body waits for the client's
            # delayed ACK (~40 ms), which capped a 100 ms-latency server at 0.68 of its ideal rate
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr logging
                pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
                    return
                server._handle(self, body)

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None,
                      raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default backlog of 5 resets connections under 32+ concurrent clients
            daemon_threads = True

        httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting and inspection --------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def api_base(self) -> str:
        """``http://127.0.0.1:PORT/v1`` — pass as the component's ``api_base``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def fail_next(self, *faults: Fault) -> None:
        """Queue one-shot faults, consumed by the next requests in arrival order."""
        with self._lock:
            self._queue.extend(faults)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._queue.clear()

    # -- request handling ----------------------------------------------------------------------------------
    def _handle(self, handler: Any, body: dict[str, Any]) -> None:
        with self._lock:
            n = len(self.requests)
            fault = self._queue.popleft() if self._queue else None
            record = RecordedRequest(path=handler.path, body=body, headers=dict(handler.headers.items()),
                                     time=time.monotonic())
            self.requests.append(record)
        if fault is None and self.fault is not None:
            fault = self.fault(body, n)
        record.fault = fault.kind if fault else None
        if self.latency:
            time.sleep(self.latency)
        if fault is not None:
            if fault.kind == "429":
                headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
                handler._send(429, {"error": {"message": "Rate limit reached (test server)",
                                              "type": "rate_limit_error", "code": "rate_limit_exceeded"}}, headers)
                return
            if fault.kind == "401":
                handler._send(401, {"error": {"message": "Incorrect API key provided (test server)",
                                              "type": "invalid_request_error", "code": "invalid_api_key"}})
                return
            if fault.kind == "500":
                handler._send(500, {"error": {"message": "Internal error (test server)", "type": "server_error"}})
                return
            if fault.kind == "hang":
                time.sleep(fault.seconds)
            elif fault.kind == "echo-auth":
                auth = str(record.headers.get("Authorization") or record.headers.get("authorization") or "")
                key = auth.split(" ", 1)[-1]
                handler._send(fault.status, {"error": {
                    "message": f"invalid request (test server): key {key} may not call this model; "
                               f"request headers: Authorization: {auth}",
                    "type": "invalid_request_error", "headers": {"Authorization": auth}}})
                return
            elif fault.kind == "garbage":
                handler._send(200, None, raw=b"<html>this is not json")
                return
        text = self.reply(body) if callable(self.reply) else str(self.reply)
        prompt_text = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        payload: dict[str, Any] = {
            "id": f"chatcmpl-test-{n}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }
        if self.usage:
            p, c = _count_tokens(prompt_text), _count_tokens(text)
            payload["usage"] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        handler._send(200, payload)


def last_user_message(request: dict[str, Any]) -> str:
    """The content of the last user message of a chat request (handy inside ``reply`` functions)."""
    for message in reversed(request.get("messages", [])):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""
