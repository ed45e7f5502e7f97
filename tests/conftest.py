"""Shared fixtures: a fresh migrated PostgreSQL database and a Redis key prefix per session.

Tests talk to a real PostgreSQL and a real Redis (``DATABASE_URL``/``REDIS_URL``, else the
local services, else embedded ones: see devkit.services).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pg8000.native
import pytest

from devkit import lambda_env
from devkit.services import ensure_services
from leadlookup import container as runtime_module
from leadlookup.adapters.db import Database
from leadlookup.adapters.migrate import migrate
from leadlookup.config import Settings
from leadlookup.container import Runtime, build_runtime
from leadlookup.observability import RecordingMetricSink
from tests.support.db import connect

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
FUNCTIONS = ROOT / "functions"

# The test secrets the sample events are signed with (documented in the README).
TEST_SECRETS = {
    "INITIATION_WEBHOOK_SECRET": "test-initiation-secret",
    "TWILIO_AUTH_TOKEN": "test-twilio-auth-token",
    "ELEVENLABS_WEBHOOK_SECRET": "test-elevenlabs-secret",
}


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin_connection(url: str) -> pg8000.native.Connection:
    return connect(_with_database(url, "postgres"))


@pytest.fixture(scope="session")
def service_urls() -> dict[str, str]:
    """URLs of a reachable PostgreSQL and Redis (started if needed)."""
    return ensure_services()


@pytest.fixture(scope="session")
def database_url(service_urls: dict[str, str]) -> Iterator[str]:
    """A fresh database for this session, migrated and seeded; dropped afterwards."""
    name = f"bici_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _admin_connection(service_urls["DATABASE_URL"])
    admin.run(f"CREATE DATABASE {name}")
    url = _with_database(service_urls["DATABASE_URL"], name)
    db = Database(Settings(database_url=url))
    migrate(db)
    db.close()
    try:
        yield url
    finally:
        admin.run(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        admin.run(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@pytest.fixture(scope="session")
def redis_url(service_urls: dict[str, str]) -> str:
    """URL of the shared test Redis (tests isolate themselves with a key prefix)."""
    return service_urls["REDIS_URL"]


@pytest.fixture
def db(database_url: str) -> Iterator[pg8000.native.Connection]:
    """A direct connection to the test database, for arranging and checking rows."""
    conn = connect(database_url)
    yield conn
    conn.close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy AWS credentials and region; no profile or config file from this machine."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


@pytest.fixture
def key_prefix() -> str:
    """A Redis key prefix of this test alone, so tests never see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def settings(database_url: str, redis_url: str, key_prefix: str) -> Settings:
    """Settings pointing at the test database and Redis."""
    return Settings(database_url=database_url, redis_url=redis_url, cache_key_prefix=key_prefix)


@pytest.fixture
def make_runtime() -> Iterator[Callable[..., Runtime]]:
    """Build runtimes (closed at the end of the test); each keeps counts in ``.metrics``."""
    built: list[Runtime] = []

    def make(settings: Settings, **kwargs: Any) -> Runtime:
        sink = kwargs.pop("metrics", None) or RecordingMetricSink()
        runtime = build_runtime(settings, metrics=sink, **kwargs)
        runtime.metrics = sink  # type: ignore[attr-defined]
        built.append(runtime)
        return runtime

    yield make
    for runtime in built:
        runtime.db.close()


@pytest.fixture
def app_env(
    monkeypatch: pytest.MonkeyPatch, database_url: str, redis_url: str, key_prefix: str
) -> Iterator[dict[str, str]]:
    """Environment of a deployed function, pointed at the test services; fresh runtime."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CACHE_KEY_PREFIX": key_prefix,
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "BiciLookups",
        **TEST_SECRETS,
    }
    for name in ("INBOUND_SMS_QUEUE_URL", "PUBLIC_BASE_URL", "REDIS_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime_module.set_runtime(None)
    yield env
    runtime_module.set_runtime(None)


@functools.cache
def function_spec(function_dir: str) -> lambda_env.FunctionSpec:
    """The template.yaml function whose code is ``functions/<function_dir>``."""
    return lambda_env.function_for_code(function_dir)


def load_handler(function_dir: str) -> ModuleType:
    """The handler module of ``functions/<function_dir>``, imported once through the loader
    the local runner and the benchmarks use (devkit.lambda_env, which reads template.yaml)."""
    return lambda_env.load_module(function_spec(function_dir))


def lambda_context(function_dir: str) -> lambda_env.LambdaContext:
    """A fresh context object for one invocation (name, memory and timeout from the template)."""
    return lambda_env.LambdaContext(function_spec(function_dir))


@pytest.fixture
def invoke() -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """Invoke a function's real ``lambda_handler`` with an event."""

    def call(function_dir: str, event: dict[str, Any]) -> dict[str, Any]:
        return load_handler(function_dir).lambda_handler(event, lambda_context(function_dir))

    return call
