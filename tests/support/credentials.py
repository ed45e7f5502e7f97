"""Lambda's container credentials endpoint, which SnapStart functions read instead of
``AWS_ACCESS_KEY_ID`` (moto accepts any credentials); it records the tokens it is sent."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

CREDENTIALS = {
    "AccessKeyId": "ASIARESTORED",
    "SecretAccessKey": "restored-secret-key",
    "Token": "restored-session-token",
    "Expiration": "2099-01-01T00:00:00Z",
}


class CredentialsEndpoint(BaseHTTPRequestHandler):
    """Answers every GET with :data:`CREDENTIALS`; ``seen`` holds each Authorization header."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        body = json.dumps(CREDENTIALS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def credentials_endpoint() -> Iterator[str]:
    """The endpoint on a free loopback port, ``seen`` emptied; yields its full URI."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), CredentialsEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    CredentialsEndpoint.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/2021-04-23/credentials"
    finally:
        server.shutdown()
        server.server_close()
