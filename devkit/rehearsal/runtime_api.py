"""A small Lambda Runtime API (2018-06-01) for one function process, on a loopback port.

What awslambdaric speaks to: ``GET /runtime/invocation/next`` (held until an event is queued;
the ``Lambda-Runtime-*`` headers carry request id, deadline, function ARN and trace id),
``POST /runtime/invocation/{id}/response`` and ``/error``, ``POST /runtime/init/error``, and
for SnapStart ``GET /runtime/restore/next`` (held until :meth:`RuntimeApi.restore`) and
``POST /runtime/restore/error``. It records when each of those happened, which is where the
init duration and the invoke durations come from, as Lambda's own REPORT line does.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


@dataclass
class Invocation:
    """One event's trip through the runtime: what went in, what came back, and when."""

    request_id: str
    event: Any
    deadline_ms: int
    queued_at: float = 0.0
    taken_at: float | None = None
    done_at: float | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def duration_ms(self) -> float | None:
        """From the runtime taking the event to its answer (Lambda's Duration)."""
        if self.taken_at is None or self.done_at is None:
            return None
        return (self.done_at - self.taken_at) * 1000


class RuntimeApi:
    """The Runtime API of one execution environment; ``address`` goes in AWS_LAMBDA_RUNTIME_API."""

    def __init__(self, function_arn: str, timeout_s: float) -> None:
        self.function_arn = function_arn
        self.timeout_s = timeout_s
        self._pending: queue.Queue[Invocation] = queue.Queue()
        self._by_id: dict[str, Invocation] = {}
        self._lock = threading.Lock()
        self.init_done_at: float | None = None  # first /next (or /restore/next) call
        self.init_error: dict[str, Any] | None = None
        self.restore_error: dict[str, Any] | None = None
        self.snapshot_taken_at: float | None = None  # /restore/next: before-snapshot hooks ran
        self._restored = threading.Event()
        self.initialized = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        """``host:port`` of the API."""
        host, port = self._server.server_address[:2]
        # A TCP server: the host is text (the bytes form is for AF_UNIX, not used here).
        return f"{host!s}:{port}"

    def start(self) -> RuntimeApi:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; held ``/next`` calls are left hanging (the process is killed)."""
        self._server.shutdown()
        self._server.server_close()

    def submit(self, event: Any) -> Invocation:
        """Queue an event for the next ``/next`` call."""
        now = time.monotonic()
        deadline_ms = int((time.time() + self.timeout_s) * 1000)
        invocation = Invocation(str(uuid.uuid4()), event, deadline_ms, queued_at=now)
        with self._lock:
            self._by_id[invocation.request_id] = invocation
        self._pending.put(invocation)
        return invocation

    def restore(self) -> None:
        """Let a SnapStart runtime past ``/restore/next`` (it then runs its after-restore hooks)."""
        self._restored.set()

    # -- called by the request handler ----------------------------------------------------

    def _mark_initialized(self) -> None:
        if self.init_done_at is None:
            self.init_done_at = time.monotonic()
        self.initialized.set()

    def _next(self) -> Invocation:
        self._mark_initialized()
        invocation = self._pending.get()
        invocation.taken_at = time.monotonic()
        return invocation

    def _finish(self, request_id: str, result: Any = None, error: Any = None) -> bool:
        with self._lock:
            invocation = self._by_id.get(request_id)
        if invocation is None or invocation.done.is_set():
            return False
        invocation.done_at = time.monotonic()
        invocation.result, invocation.error = result, error
        invocation.done.set()
        return True


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a killed environment drops its connection mid-request; nothing to report


def _handler_for(api: RuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the function's own output is what the user reads

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == f"{PREFIX}/invocation/next":
                invocation = api._next()
                body = json.dumps(invocation.event).encode()
                trace = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0"
                self._reply(
                    200,
                    body,
                    {
                        "Content-Type": "application/json",
                        "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                        "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                        "Lambda-Runtime-Trace-Id": trace,
                    },
                )
            elif self.path == f"{PREFIX}/restore/next":
                api.snapshot_taken_at = time.monotonic()
                api._mark_initialized()
                api._restored.wait()
                self._reply(200)
            else:
                self._reply(404, b'{"message":"Not Found"}')

        def do_POST(self) -> None:
            body = self._body()
            parts = self.path.removeprefix(PREFIX).strip("/").split("/")
            if (
                parts[:1] == ["invocation"]
                and len(parts) == 3
                and parts[2] in ("response", "error")
            ):
                payload = _json(body)
                if parts[2] == "response":
                    known = api._finish(parts[1], result=payload)
                else:
                    known = api._finish(parts[1], error=_error(payload, self.headers))
                self._reply(202 if known else 400, b'{"status":"OK"}' if known else b"")
            elif parts == ["init", "error"]:
                api.init_error = _error(_json(body), self.headers)
                api._mark_initialized()
                self._reply(202, b'{"status":"OK"}')
            elif parts == ["restore", "error"]:
                api.restore_error = _error(_json(body), self.headers)
                self._reply(202, b'{"status":"OK"}')
            else:
                self._reply(404, b'{"message":"Not Found"}')

    return Handler


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body.decode("utf-8", "replace")


def _error(payload: Any, headers: Any) -> dict[str, Any]:
    error = dict(payload) if isinstance(payload, dict) else {"errorMessage": str(payload)}
    error.setdefault("errorType", headers.get("Lambda-Runtime-Function-Error-Type") or "Unknown")
    return error
