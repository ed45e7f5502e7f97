"""TLS (rediss://) with an RBAC user, including credentials from Secrets Manager (moto)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from leadlookup.adapters.aws import secretsmanager
from leadlookup.config import DEFAULT_ORGANIZATION_ID, Settings
from leadlookup.container import Runtime
from tests.support.faults import new_phone
from tests.support.moto_server import CREDENTIALS, REGION, moto_server
from tests.support.redis_servers import TLS_PASSWORD, TLS_USER, tls_redis_server

USER, PASSWORD = TLS_USER, TLS_PASSWORD


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A TLS-only Redis with an RBAC user and no default-user access; yields (port, CA file)."""
    with tls_redis_server(tmp_path_factory.mktemp("tls-redis")) as server:
        yield server


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
