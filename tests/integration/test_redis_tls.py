"""TLS (rediss://) with an RBAC user, including credentials from Secrets Manager (moto)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from leadlookup import secretsmanager
from leadlookup.runtime import Runtime
from leadlookup.settings import DEFAULT_ORGANIZATION_ID, Settings
from tests.support.faults import new_phone
from tests.support.moto_server import CREDENTIALS, REGION, moto_server
from tests.support.redis_servers import free_port, start_redis, stop

USER, PASSWORD = "bici-app", "s3cret-Passw0rd"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A TLS-only Redis with an RBAC user and no default-user access; yields (port, CA file)."""
    directory = tmp_path_factory.mktemp("tls-redis")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    # fmt: off
    process = start_redis(
        directory, 0,
        "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
        # Each ACL rule is its own argument; the default user is switched off.
        "--user", "default", "off",
        "--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all",
        tls_port=port,
    )
    # fmt: on
    try:
        yield port, cert
    finally:
        stop(process)


def test_redis_tls_with_rbac_user_in_the_url_caches(
    tls_redis: tuple[int, Path], settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    port, ca = tls_redis
    runtime = make_runtime(
        dataclasses.replace(
            settings, redis_url=f"rediss://{USER}:{PASSWORD}@localhost:{port}?ssl_ca_certs={ca}"
        )
    )
    caller = new_phone()

    first = runtime.service.find_or_create_lead(caller, DEFAULT_ORGANIZATION_ID)
    second = runtime.service.find_or_create_lead(caller, DEFAULT_ORGANIZATION_ID)

    assert first == second
    assert runtime.metrics.counts == {"LeadCacheMiss": 1, "LeadCacheHit": 1}


def test_redis_tls_credentials_from_secrets_manager(
    tls_redis: tuple[int, Path],
    settings: Settings,
    make_runtime: Callable[..., Runtime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, ca = tls_redis
    for name, value in {"AWS_DEFAULT_REGION": REGION, **CREDENTIALS}.items():
        monkeypatch.setenv(name, value)
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        secretsmanager.reset()
        client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=REGION)
        arn = client.create_secret(
            Name="bici/redis-auth",
            SecretString=json.dumps({"username": USER, "password": PASSWORD}),
        )["ARN"]
        runtime = make_runtime(
            dataclasses.replace(
                settings,
                redis_url=f"rediss://localhost:{port}?ssl_ca_certs={ca}",
                redis_auth_arn=arn,
            )
        )
        caller = new_phone()

        runtime.service.find_or_create_lead(caller, DEFAULT_ORGANIZATION_ID)
        runtime.service.find_or_create_lead(caller, DEFAULT_ORGANIZATION_ID)

    assert runtime.metrics.counts == {"LeadCacheMiss": 1, "LeadCacheHit": 1}


def test_redis_tls_wrong_password_fails_open(
    tls_redis: tuple[int, Path], settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    port, ca = tls_redis
    runtime = make_runtime(
        dataclasses.replace(
            settings, redis_url=f"rediss://{USER}:wrong@localhost:{port}?ssl_ca_certs={ca}"
        )
    )

    lead = runtime.service.find_or_create_lead(new_phone(), DEFAULT_ORGANIZATION_ID)

    assert lead.status == "new"
    assert runtime.metrics.counts == {"LeadCacheError": 1}
