"""IAM authentication end to end: the servers are given the tokens botocore would make as
passwords (frozen credentials and clock), and the layer logs in with the tokens it signs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import botocore.auth
import pg8000.native
import pytest

from leadlookup import iam
from leadlookup.db import Database
from leadlookup.errors import Unavailable
from leadlookup.settings import Settings
from tests.support.pg_servers import PasswordServer, password_postgres

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
