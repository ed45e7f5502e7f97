"""The layer's stdlib Secrets Manager client against moto in server mode, and a blackhole."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator

import boto3
import pytest

from leadlookup.adapters.aws.secretsmanager import SecretsClient, deadline_scope
from leadlookup.errors import DeadlineExceeded, Unavailable
from tests.support.moto_server import CREDENTIALS, REGION, moto_server


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def env(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": REGION, **CREDENTIALS}


def _create(endpoint: str, name: str, **value: object) -> str:
    client = boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name=REGION,
        **{"aws_access_key_id": "testing", "aws_secret_access_key": "testing"},
    )
    return str(client.create_secret(Name=name, **value)["ARN"])


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A port that accepts connections (the kernel completes them) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_secretsmanager_client_reads_a_string_secret_once_per_max_age(
    endpoint: str, env: dict[str, str]
) -> None:
    arn = _create(endpoint, "bici/cached", SecretString="s3cret")
    clock = FakeClock()
    client = SecretsClient(env, clock=clock, max_age_s=300)

    first = client.get(arn)
    second = client.get(arn)
    clock.now += 301
    third = client.get(arn)

    assert (first, second, third) == ("s3cret", "s3cret", "s3cret")
    assert client.requests == 2


def test_secretsmanager_client_reads_by_name_and_binary_secrets(
    endpoint: str, env: dict[str, str]
) -> None:
    _create(endpoint, "bici/binary", SecretBinary=base64.b64decode(base64.b64encode(b"bytes!")))

    value = SecretsClient(env).get("bici/binary")

    assert value == "bytes!"


def test_secretsmanager_client_missing_secret_is_unavailable_without_retry(
    env: dict[str, str],
) -> None:
    client = SecretsClient(env)

    with pytest.raises(Unavailable, match="ResourceNotFoundException"):
        client.get("bici/does-not-exist")

    assert client.requests == 1


def test_secretsmanager_client_without_credentials_is_unavailable(endpoint: str) -> None:
    client = SecretsClient({"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": REGION})

    with pytest.raises(Unavailable, match="credentials"):
        client.get("bici/anything")

    assert client.requests == 0


def test_secretsmanager_client_blackholed_read_ends_at_the_deadline(blackhole: str) -> None:
    client = SecretsClient({"AWS_ENDPOINT_URL": blackhole, "AWS_REGION": REGION, **CREDENTIALS})
    started = time.monotonic()

    with deadline_scope(started + 0.3), pytest.raises(DeadlineExceeded):
        client.get("bici/anything")

    # A bound, not a benchmark: without the scope the read would take 2 x 2 s.
    assert time.monotonic() - started < 1.0
    assert client.requests == 1


def test_secretsmanager_client_past_deadline_sends_nothing(env: dict[str, str]) -> None:
    client = SecretsClient(env)

    with deadline_scope(time.monotonic() - 1), pytest.raises(DeadlineExceeded):
        client.get("bici/anything")

    assert client.requests == 0
