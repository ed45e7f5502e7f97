"""The pg8000 adapter: escaping, reconnects, deadlines, TLS modes and migrations."""

from __future__ import annotations

import dataclasses
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devkit.proxy import TcpProxy
from leadlookup.adapters.db import Database, ssl_context_for
from leadlookup.adapters.migrate import MIGRATIONS_DIR, migrate
from leadlookup.config import DEFAULT_ORGANIZATION_ID, Settings
from leadlookup.container import Runtime
from leadlookup.errors import DeadlineExceeded, InvalidInput, MigrationError, Unavailable
from tests.support.db import execute, scalar

HOSTILE = [
    "'; DROP TABLE leads; --",
    "Robert'); DELETE FROM organizations; --",
    "\\'; SELECT pg_sleep(10); --",
    "$$; DROP TABLE leads; $$",
    ":id",
    "<script>alert(1)</script>",
    "名前 🚲 Ñandú",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_database_values_are_escaped_not_executed(
    text: str, settings: Settings, make_runtime: Callable[..., Runtime], database_url: str
) -> None:
    service = make_runtime(settings).service
    lead = service.find_or_create_lead("+16045550111", DEFAULT_ORGANIZATION_ID)

    saved = service.update_lead(lead.id, {"customer_name": text, "notes": text})

    assert saved.customer_name == saved.notes == text
    assert (
        scalar(database_url, "SELECT customer_name FROM leads WHERE id = :id", id=lead.id) == text
    )
    assert scalar(database_url, "SELECT count(*) FROM organizations") >= 1


def test_database_nul_characters_are_bad_input(
    settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    service = make_runtime(settings).service
    lead = service.find_or_create_lead("+16045550112", DEFAULT_ORGANIZATION_ID)

    with pytest.raises(InvalidInput):
        service.update_lead(lead.id, {"notes": "before\x00after"})


def test_database_reconnects_once_after_the_server_killed_the_connection(
    settings: Settings, database_url: str
) -> None:
    db = Database(settings)
    pid = db.query("SELECT pg_backend_pid() AS pid")[0]["pid"]
    execute(database_url, "SELECT pg_terminate_backend(:pid)", pid=pid)
    time.sleep(0.1)

    rows = db.query("SELECT pg_backend_pid() AS pid")

    assert rows[0]["pid"] != pid
    db.close()


def test_database_deadline_reaches_the_socket_and_the_connection_is_discarded(
    settings: Settings,
) -> None:
    with TcpProxy.from_url(settings.database_url or "") as proxy:
        db = Database(
            dataclasses.replace(
                settings, database_url=proxy.rewrite_url(settings.database_url or "")
            )
        )
        db.query("SELECT 1")
        proxy.set_mode("blackhole")
        connections = proxy.connections

        with pytest.raises(DeadlineExceeded):
            db.query("SELECT 1", deadline=time.monotonic() + 0.2)
        proxy.set_mode("pass")
        rows = db.query("SELECT 2 AS two")

        assert rows == [{"two": 2}]
        assert proxy.connections == connections + 1  # a new connection, not the timed-out one
        db.close()


def test_database_unreachable_is_unavailable(settings: Settings) -> None:
    db = Database(dataclasses.replace(settings, database_url="postgresql://postgres@127.0.0.1:1/x"))

    with pytest.raises(Unavailable):
        db.query("SELECT 1")


def test_database_sslmode_require_never_falls_back_to_plaintext(
    settings: Settings, database_url: str
) -> None:
    server_ssl = scalar(database_url, "SHOW ssl")
    db = Database(dataclasses.replace(settings, database_url=database_url + "?sslmode=require"))

    if server_ssl == "on":
        assert db.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [
            {"ssl": True}
        ]
    else:
        with pytest.raises(Unavailable):
            db.query("SELECT 1")
    db.close()


def test_database_ssl_contexts_match_libpq_modes() -> None:
    full = ssl_context_for("verify-full")
    ca = ssl_context_for("verify-ca")
    require = ssl_context_for("require")

    assert ssl_context_for("disable") is None
    assert full is not None and full.check_hostname and full.verify_mode == ssl.CERT_REQUIRED
    assert ca is not None and not ca.check_hostname and ca.verify_mode == ssl.CERT_REQUIRED
    assert require is not None and require.verify_mode == ssl.CERT_NONE


def test_database_statement_timeout_is_set_without_a_session_set(database_url: str) -> None:
    assert scalar(database_url, "SHOW statement_timeout") == "5s"


def test_migrations_are_idempotent(settings: Settings) -> None:
    db = Database(settings)

    assert migrate(db) == []
    assert migrate(db) == []
    db.close()


def test_migrations_refuse_an_edited_applied_migration(settings: Settings, tmp_path: Path) -> None:
    for source in MIGRATIONS_DIR.glob("*.sql"):
        (tmp_path / source.name).write_text(source.read_text() + "\n-- edited\n")
    db = Database(settings)

    with pytest.raises(MigrationError, match="changed after it ran"):
        migrate(db, tmp_path)
    db.close()


def test_migrations_seed_the_default_organization_from_the_layer_snapshot(
    database_url: str,
) -> None:
    name = scalar(
        database_url, "SELECT name FROM organizations WHERE id = :id", id=DEFAULT_ORGANIZATION_ID
    )
    tz = scalar(
        database_url,
        "SELECT settings->>'timezone' FROM organizations WHERE id = :id",
        id=DEFAULT_ORGANIZATION_ID,
    )

    assert (name, tz) == ("BICI Bike Store", "America/Vancouver")
