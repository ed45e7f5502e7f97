"""A loopback stand-in for SQS ``SendMessage`` (JSON protocol), so the SMS webhook runs its
real boto3 path - request signing, serialization, an HTTP round trip - without AWS."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _SqsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: botocore reuses its pooled connection
    # Headers and body go out in two writes; without this Nagle could hold the body back.
    disable_nagle_algorithm = True
    server: FakeSqsServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        target = self.headers.get("X-Amz-Target") or ""
        if target == "AmazonSQS.SendMessage":
            request = json.loads(raw or b"{}")
            body = str(request.get("MessageBody") or "")
            sequence = self.server.record()
            status, reply = (
                200,
                {
                    "MessageId": str(uuid.uuid4()),
                    "MD5OfMessageBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324
                    "SequenceNumber": f"{sequence:020d}",
                },
            )
        else:
            status, reply = (
                400,
                {
                    "__type": "com.amazonaws.sqs#InvalidAction",
                    "message": f"the bench's fake SQS only knows SendMessage, not {target!r}",
                },
            )
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: one line per request would drown the bench's output."""


class FakeSqsServer(ThreadingHTTPServer):
    """Answers ``SendMessage`` on 127.0.0.1 and counts the messages it accepted."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _SqsHandler)
        self.messages = 0
        self._lock = threading.Lock()

    def record(self) -> int:
        """Count one accepted message; its sequence number."""
        with self._lock:
            self.messages += 1
            return self.messages

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server_address[1])

    def queue_url(self, port: int | None = None, name: str = "bici-bench-inbound-sms.fifo") -> str:
        """A queue URL on this server (or on ``port``, e.g. a proxy in front of it)."""
        return f"http://127.0.0.1:{port or self.port}/123456789012/{name}"
