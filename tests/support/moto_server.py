"""moto in server mode on a loopback port: AWS APIs over real HTTP, for clients that do not go
through botocore (the layer's stdlib Secrets Manager client) or run in other processes."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer

from tests.support.redis_servers import free_port

REGION = "us-east-1"
# moto accepts any key pair; these only have to be present and signed with.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@contextmanager
def moto_server() -> Iterator[str]:
    """A fresh moto server; yields its endpoint URL (``AWS_ENDPOINT_URL``)."""
    # werkzeug logs one line per request to stderr.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # moto's backends are per process, not per server: start from nothing.
    reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310 - loopback http
    try:
        yield url
    finally:
        server.stop()
