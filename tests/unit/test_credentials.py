"""Role credentials from the environment, or from Lambda's container endpoint (SnapStart)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from leadlookup import credentials
from leadlookup.errors import DeadlineExceeded, Unavailable

URI = "http://127.0.0.1:9001/2021-04-23/credentials"
SNAPSTART_ENV = {
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": URI,
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container-token",
}
EXPIRES = 2_000_000_000.0  # 2033-05-18T03:33:20Z


class Endpoint:
    """A fake container credentials endpoint: records requests, answers ``reply``."""

    def __init__(self, reply: Any = None, error: Exception | None = None) -> None:
        self.reply = reply or {
            "AccessKeyId": "ASIACONTAINER",
            "SecretAccessKey": "container-secret",
            "Token": "session-token",
            "Expiration": "2033-05-18T03:33:20Z",
        }
        self.error = error
        self.requests: list[urllib.request.Request] = []
        self.timeouts: list[float] = []

    def __call__(self, request: urllib.request.Request, timeout: float) -> Any:
        self.requests.append(request)
        self.timeouts.append(timeout)
        if self.error is not None:
            raise self.error
        body = json.dumps(self.reply).encode()
        return type("Reply", (), {"read": lambda self: body})()


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    credentials.reset()
    yield
    credentials.reset()


def test_credentials_from_the_environment_first() -> None:
    endpoint = Endpoint()
    env = {"AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "s", **SNAPSTART_ENV}

    found = credentials.lambda_credentials(env, opener=endpoint)

    assert (found.access_key, found.secret_key, found.token) == ("AKIAENV", "s", None)
    assert endpoint.requests == []


def test_credentials_from_the_container_endpoint_with_its_token() -> None:
    endpoint = Endpoint()

    found = credentials.lambda_credentials(SNAPSTART_ENV, 0.3, opener=endpoint)

    assert (found.access_key, found.secret_key, found.token) == (
        "ASIACONTAINER",
        "container-secret",
        "session-token",
    )
    [request] = endpoint.requests
    assert request.full_url == URI
    assert request.get_header("Authorization") == "container-token"
    assert endpoint.timeouts == [0.3]


def test_credentials_are_reused_until_shortly_before_they_expire() -> None:
    endpoint = Endpoint()

    credentials.lambda_credentials(SNAPSTART_ENV, opener=endpoint, clock=lambda: EXPIRES - 3600)
    credentials.lambda_credentials(SNAPSTART_ENV, opener=endpoint, clock=lambda: EXPIRES - 3000)
    fetched_before_refresh = len(endpoint.requests)
    credentials.lambda_credentials(SNAPSTART_ENV, opener=endpoint, clock=lambda: EXPIRES - 60)

    assert fetched_before_refresh == 1
    assert len(endpoint.requests) == 2


def test_credentials_reset_forgets_the_endpoint_credentials() -> None:
    endpoint = Endpoint()
    credentials.lambda_credentials(SNAPSTART_ENV, opener=endpoint, clock=lambda: 0.0)

    credentials.reset()
    credentials.lambda_credentials(SNAPSTART_ENV, opener=endpoint, clock=lambda: 0.0)

    assert len(endpoint.requests) == 2


def test_credentials_token_can_come_from_a_file(tmp_path: Any) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    endpoint = Endpoint()
    env = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": URI,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
    }

    credentials.lambda_credentials(env, opener=endpoint)

    assert endpoint.requests[0].get_header("Authorization") == "file-token"


@pytest.mark.parametrize(
    ("endpoint", "error"),
    [
        (Endpoint(error=TimeoutError()), DeadlineExceeded),
        (Endpoint(error=ConnectionRefusedError()), Unavailable),
        (Endpoint(reply={"Code": "Failure"}), Unavailable),
    ],
)
def test_credentials_endpoint_failures_are_unavailable(
    endpoint: Endpoint, error: type[Exception]
) -> None:
    with pytest.raises(error):
        credentials.lambda_credentials(SNAPSTART_ENV, opener=endpoint)


def test_credentials_none_at_all_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="no AWS credentials"):
        credentials.lambda_credentials({})
