"""IAM authentication end to end: the servers are given the tokens botocore would make as
passwords (frozen credentials and clock), and the layer logs in with the tokens it signs."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pg8000.native
import pytest
import redis
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from leadlookup.adapters.aws import iam
from leadlookup.adapters.cache.redis_backend import RedisBackend, build_client
from leadlookup.adapters.db import Database
from leadlookup.config import DEFAULT_ORGANIZATION_ID, Settings
from leadlookup.container import Runtime
from leadlookup.errors import Unavailable
from tests.support.faults import new_phone
from tests.support.pg_servers import PasswordServer, password_postgres
from tests.support.redis_servers import free_port, start_redis, stop

FROZEN = datetime(2026, 12, 1, 20, 0, 0, tzinfo=UTC)
REGION = "ca-central-1"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "ASIAIAMTESTEXAMPLE01",
    "AWS_SECRET_ACCESS_KEY": "iam/test+secret/key=",
    "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjE/test+session/token==",
    "AWS_REGION": REGION,
}
APP_USER = "bici_app"


class WallClock:
    """A settable UTC clock for the token sources."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[WallClock]:
    """Freeze the layer's signing clock; forget tokens and credentials before and after."""
    wall = WallClock(FROZEN)
    monkeypatch.setattr(iam, "utc_now", wall)
    iam.reset()
    yield wall
    iam.reset()


def _botocore_token(monkeypatch: pytest.MonkeyPatch, at: datetime, host: str, port: int) -> str:
    """What botocore's generate_db_auth_token makes for these credentials at ``at``."""
    naive = at.astimezone(UTC).replace(tzinfo=None)
    with monkeypatch.context() as patch:
        patch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: naive)
        client = boto3.client(
            "rds",
            region_name=REGION,
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=AWS_ENV["AWS_SESSION_TOKEN"],
        )
        return str(client.generate_db_auth_token(host, port, APP_USER, Region=REGION))


@pytest.fixture(scope="module")
def pg() -> Iterator[PasswordServer]:
    """A TLS PostgreSQL that checks passwords, with the application role."""
    with password_postgres() as server:
        admin = _admin(server)
        admin.run(f"CREATE ROLE {APP_USER} LOGIN")
        admin.close()
        yield server


def _admin(server: PasswordServer) -> pg8000.native.Connection:
    return pg8000.native.Connection(
        user="postgres", host="127.0.0.1", port=server.port, database="postgres", timeout=10
    )


def _set_password(server: PasswordServer, password: str) -> None:
    admin = _admin(server)
    try:
        admin.run(f"ALTER ROLE {APP_USER} PASSWORD {pg8000.native.literal(password)}")
    finally:
        admin.close()


@pytest.fixture
def iam_db(pg: PasswordServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A Database configured as the serving functions are in AWS (DB_HOST + DB_IAM_AUTH)."""
    # verify-full against the system trust store, which OpenSSL lets this variable extend.
    monkeypatch.setenv("SSL_CERT_FILE", str(pg.ca_file))
    env = {
        **AWS_ENV,
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(pg.port),
        "DB_NAME": "postgres",
        "DB_USER": APP_USER,
        "DB_IAM_AUTH": "true",
    }
    db = Database(Settings.from_env(env))
    yield db
    db.close()


def test_iam_db_logs_in_with_the_token_botocore_would_make(
    pg: PasswordServer, iam_db: Database, clock: WallClock, monkeypatch: pytest.MonkeyPatch
):
    _set_password(pg, _botocore_token(monkeypatch, FROZEN, "127.0.0.1", pg.port))

    rows = iam_db.query(
        "SELECT session_user AS who, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    )

    assert rows == [{"who": APP_USER, "ssl": True}]


def test_iam_db_rejects_when_the_server_expects_another_token(
    pg: PasswordServer, iam_db: Database, clock: WallClock, monkeypatch: pytest.MonkeyPatch
):
    later = FROZEN + timedelta(seconds=1)
    _set_password(pg, _botocore_token(monkeypatch, later, "127.0.0.1", pg.port))

    with pytest.raises(Unavailable):
        iam_db.query("SELECT 1")


def test_iam_db_reuses_a_token_within_its_lifetime_and_replaces_it_after(
    pg: PasswordServer, iam_db: Database, clock: WallClock, monkeypatch: pytest.MonkeyPatch
):
    _set_password(pg, _botocore_token(monkeypatch, FROZEN, "127.0.0.1", pg.port))
    iam_db.query("SELECT 1")
    iam_db.close()
    clock.advance(iam.TOKEN_REUSE_S - 1)
    iam_db.query("SELECT 1")  # a new connection, still the first token
    iam_db.close()
    clock.advance(2)
    replaced_at = clock.now
    _set_password(pg, _botocore_token(monkeypatch, replaced_at, "127.0.0.1", pg.port))

    rows = iam_db.query("SELECT session_user AS who")

    assert rows == [{"who": APP_USER}]
    assert iam_db._params is not None and iam_db._params.password_source is not None
    assert iam_db._params.password_source.made == 2  # type: ignore[attr-defined]


def test_iam_db_signs_again_after_a_reset(
    pg: PasswordServer, iam_db: Database, clock: WallClock, monkeypatch: pytest.MonkeyPatch
):
    _set_password(pg, _botocore_token(monkeypatch, FROZEN, "127.0.0.1", pg.port))
    iam_db.query("SELECT 1")
    iam_db.close()
    clock.advance(5)
    _set_password(pg, _botocore_token(monkeypatch, clock.now, "127.0.0.1", pg.port))

    iam.reset()  # what a SnapStart restore does: nothing signed before it is presented after
    rows = iam_db.query("SELECT session_user AS who")

    assert rows == [{"who": APP_USER}]


# ---------------------------------------------------------------- ElastiCache (Redis)

CACHE_NAME = "bici-lookups-test"
CACHE_USER = "bici-app-test"
ADMIN_PASSWORD = "admin-password"


def _botocore_cache_token(monkeypatch: pytest.MonkeyPatch, at: datetime) -> str:
    """What botocore's SigV4 query signer makes for the ElastiCache IAM token at ``at``."""
    naive = at.astimezone(UTC).replace(tzinfo=None)
    with monkeypatch.context() as patch:
        patch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: naive)
        query = f"Action=connect&User={CACHE_USER}&ResourceType=ServerlessCache"
        request = AWSRequest(method="GET", url=f"https://{CACHE_NAME}/?{query}")
        creds = BotoCredentials(
            AWS_ENV["AWS_ACCESS_KEY_ID"],
            AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            AWS_ENV["AWS_SESSION_TOKEN"],
        )
        botocore.auth.SigV4QueryAuth(creds, "elasticache", REGION, expires=900).add_auth(request)
        return request.url.removeprefix("https://")


@pytest.fixture(scope="module")
def tls_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A TLS-only Redis, default user off, an admin user, and the IAM user (no password yet)."""
    directory = tmp_path_factory.mktemp("iam-redis")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    process = start_redis(
        directory, 0,
        "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
        "--user", "default", "off",
        "--user", "admin", "on", f">{ADMIN_PASSWORD}", "~*", "&*", "+@all",
        "--user", CACHE_USER, "on", "~bici:*", "+@all",
        tls_port=port,
    )  # fmt: skip
    try:
        yield port, cert
    finally:
        stop(process)


def _cache_admin(tls_cache: tuple[int, Path]) -> redis.Redis:
    port, ca = tls_cache
    return redis.Redis(
        host="localhost", port=port, ssl=True, ssl_ca_certs=str(ca),
        username="admin", password=ADMIN_PASSWORD, socket_timeout=2, decode_responses=True,
    )  # fmt: skip


def _set_cache_password(tls_cache: tuple[int, Path], token: str) -> None:
    admin = _cache_admin(tls_cache)
    try:
        admin.execute_command("ACL", "SETUSER", CACHE_USER, "resetpass", f">{token}")
    finally:
        admin.close()


def _cache_connections(tls_cache: tuple[int, Path]) -> list[dict[str, Any]]:
    admin = _cache_admin(tls_cache)
    try:
        return [c for c in admin.client_list() if c.get("user") == CACHE_USER]
    finally:
        admin.close()


def _iam_cache_settings(tls_cache: tuple[int, Path], database_url: str) -> Settings:
    port, ca = tls_cache
    return Settings.from_env(
        {
            **AWS_ENV,
            "DATABASE_URL": database_url,
            "REDIS_URL": f"rediss://localhost:{port}?ssl_ca_certs={ca}",
            "REDIS_IAM_USER": CACHE_USER,
            "REDIS_CACHE_NAME": CACHE_NAME,
            "CACHE_KEY_PREFIX": f"bici:iam{uuid.uuid4().hex[:8]}:",
        }
    )


def test_iam_cache_authenticates_with_the_token_botocore_would_make(
    tls_cache, database_url: str, clock: WallClock, monkeypatch: pytest.MonkeyPatch,
    make_runtime: Callable[..., Runtime],
):  # fmt: skip
    _set_cache_password(tls_cache, _botocore_cache_token(monkeypatch, FROZEN))
    runtime = make_runtime(_iam_cache_settings(tls_cache, database_url))
    caller = new_phone()

    first = runtime.service.find_or_create_lead(caller, DEFAULT_ORGANIZATION_ID)
    second = runtime.service.find_or_create_lead(caller, DEFAULT_ORGANIZATION_ID)

    assert first == second
    assert runtime.metrics.counts == {"LeadCacheMiss": 1, "LeadCacheHit": 1}


def test_iam_cache_with_a_token_the_server_does_not_expect_fails_open(
    tls_cache, database_url: str, clock: WallClock, monkeypatch: pytest.MonkeyPatch,
    make_runtime: Callable[..., Runtime],
):  # fmt: skip
    _set_cache_password(
        tls_cache, _botocore_cache_token(monkeypatch, FROZEN + timedelta(seconds=1))
    )
    runtime = make_runtime(_iam_cache_settings(tls_cache, database_url))

    runtime.service.find_or_create_lead(new_phone(), DEFAULT_ORGANIZATION_ID)

    assert runtime.metrics.counts == {"LeadCacheError": 1}


def test_iam_cache_new_connection_after_the_token_lifetime_gets_a_new_token(
    tls_cache, database_url: str, clock: WallClock, monkeypatch: pytest.MonkeyPatch
):
    _set_cache_password(tls_cache, _botocore_cache_token(monkeypatch, FROZEN))
    client = build_client(_iam_cache_settings(tls_cache, database_url))
    client.get("bici:probe")
    clock.advance(iam.TOKEN_REUSE_S + 1)
    _set_cache_password(tls_cache, _botocore_cache_token(monkeypatch, clock.now))
    admin = _cache_admin(tls_cache)
    admin.client_kill_filter(user=CACHE_USER)  # the server drops the old connection
    admin.close()

    value = client.get("bici:probe")  # reconnects once, presenting the new token

    provider = client.connection_pool.connection_kwargs["credential_provider"]
    assert value is None
    assert provider._tokens.made == 2
    client.close()


def test_iam_cache_connections_older_than_the_limit_are_recycled(
    tls_cache, database_url: str, clock: WallClock, monkeypatch: pytest.MonkeyPatch
):
    _set_cache_password(tls_cache, _botocore_cache_token(monkeypatch, FROZEN))
    settings = _iam_cache_settings(tls_cache, database_url)
    monotonic = [1000.0]
    backend = RedisBackend(
        lambda: build_client(settings), max_age_s=3600, clock=lambda: monotonic[0]
    )
    backend.get("bici:probe")
    first_id = backend.client.client_id()
    monotonic[0] += 3599
    backend.get("bici:probe")
    same_id = backend.client.client_id()
    monotonic[0] += 2

    backend.get("bici:probe")

    assert same_id == first_id
    assert backend.client.client_id() != first_id
    assert [c["id"] for c in _cache_connections(tls_cache)] == [str(backend.client.client_id())]
    backend.reset()
