"""Where IAM auth finds its credentials, and when it loads them again."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest

from leadlookup.adapters.aws import iam
from leadlookup.config import ConfigError
from leadlookup.errors import Unavailable

NOW = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)


class _Endpoint(BaseHTTPRequestHandler):
    """Lambda's container credentials endpoint, as SnapStart functions see it."""

    seen: ClassVar[list[str | None]] = []
    expiration: ClassVar[str] = ""
    status: ClassVar[int] = 200

    def do_GET(self) -> None:
        _Endpoint.seen.append(self.headers.get("Authorization"))
        body = json.dumps(
            {
                "AccessKeyId": f"ASIACONTAINER{len(_Endpoint.seen)}",
                "SecretAccessKey": "container/secret",
                "Token": "container-token",
                "Expiration": _Endpoint.expiration,
            }
        ).encode()
        self.send_response(_Endpoint.status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    _Endpoint.seen = []
    _Endpoint.status = 200
    _Endpoint.expiration = (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    server = HTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    iam.reset()
    yield f"http://127.0.0.1:{server.server_port}/2021-04-23/credentials"
    iam.reset()
    server.shutdown()
    thread.join(timeout=5)


def test_iam_credentials_come_from_the_environment_first():
    loaded = iam.load_credentials(
        {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"}
    )

    assert (loaded.credentials.access_key, loaded.credentials.token) == ("AKID", "t")
    assert loaded.expires_at is None


def test_iam_credentials_from_the_container_endpoint_send_its_authorization(endpoint: str):
    env = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "a1",
    }

    loaded = iam.load_credentials(env)

    assert loaded.credentials.access_key == "ASIACONTAINER1"
    assert loaded.credentials.token == "container-token"
    assert loaded.expires_at == NOW + timedelta(hours=1)
    assert _Endpoint.seen == ["a1"]


def test_iam_container_credentials_are_reloaded_before_they_expire(endpoint: str):
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint}
    clock = [NOW]

    first = iam.credentials(env, lambda: clock[0])
    clock[0] = NOW + timedelta(minutes=30)
    same = iam.credentials(env, lambda: clock[0])
    clock[0] = NOW + timedelta(hours=1) - timedelta(seconds=iam.CREDENTIALS_MARGIN_S)
    renewed = iam.credentials(env, lambda: clock[0])

    assert first == same
    assert renewed.access_key == "ASIACONTAINER2"


def test_iam_token_is_not_reused_past_its_credentials(endpoint: str):
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint, "AWS_REGION": "us-east-1"}
    _Endpoint.expiration = (NOW + timedelta(seconds=400)).strftime("%Y-%m-%dT%H:%M:%SZ")
    clock = [NOW]
    tokens = iam.rds_token_source("h", 5432, "u", env, clock=lambda: clock[0])

    first = tokens()
    clock[0] = NOW + timedelta(seconds=401)
    second = tokens()

    assert first != second
    assert tokens.made == 2


def test_iam_container_endpoint_failure_is_unavailable(endpoint: str):
    _Endpoint.status = 500

    with pytest.raises(Unavailable):
        iam.load_credentials({"AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint})


@pytest.mark.parametrize(
    "uri", ["http://169.254.170.2/creds", "http://example.com/creds", "file:///etc/passwd"]
)
def test_iam_container_endpoint_over_http_must_be_loopback(uri: str):
    with pytest.raises(ConfigError):
        iam.load_credentials({"AWS_CONTAINER_CREDENTIALS_FULL_URI": uri})


def test_iam_without_any_credentials_names_what_is_missing():
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        iam.load_credentials({})


def test_iam_snapstart_before_snapshot_drops_every_token():
    from leadlookup import snapstart

    env = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1"}
    tokens = iam.rds_token_source("h", 5432, "u", env, clock=lambda: NOW)
    tokens()

    snapstart.before_snapshot()
    tokens()

    assert tokens.made == 2
