"""Migration 0004's application role: DML and EXECUTE yes, DDL no, owns nothing."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pg8000.native
import pytest

from leadlookup.config import DEFAULT_ORGANIZATION_ID
from tests.support.db import connect, execute, scalar

APP_ROLE = "bici_app"
PERMISSION_DENIED = "42501"


def _as_app(database_url: str) -> str:
    parts = urlsplit(database_url)
    netloc = f"{APP_ROLE}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
def app(database_url: str) -> Iterator[pg8000.native.Connection]:
    """A connection to the test database as the application role."""
    conn = connect(_as_app(database_url))
    yield conn
    conn.close()


def _sqlstate(exc: pg8000.native.DatabaseError) -> str:
    return str(exc.args[0]["C"])


def test_app_role_reads_and_writes_rows_and_calls_functions(app: pg8000.native.Connection):
    phone = "16045550199"

    created = app.run(
        "SELECT id FROM find_or_create_lead(:org, :raw, :phone)",
        org=DEFAULT_ORGANIZATION_ID,
        raw="+" + phone,
        phone=phone,
    )
    lead_id = created[0][0]
    app.run("UPDATE leads SET notes = 'x' WHERE id = :id", id=lead_id)
    app.run(
        "INSERT INTO messages (organization_id, lead_id, external_id, direction) "
        "VALUES (:org, :id, :sid, 'inbound')",
        org=DEFAULT_ORGANIZATION_ID,
        id=lead_id,
        sid=f"SM{lead_id.hex}",
    )
    app.run(
        "INSERT INTO call_summaries (organization_id, lead_id, conversation_id) "
        "VALUES (:org, :id, :cid)",
        org=DEFAULT_ORGANIZATION_ID,
        id=lead_id,
        cid=f"conv_{lead_id.hex}",
    )
    app.run(
        "UPDATE organizations SET updated_at = now() WHERE id = :org", org=DEFAULT_ORGANIZATION_ID
    )
    app.run("DELETE FROM leads WHERE id = :id", id=lead_id)

    assert app.run("SELECT count(*) FROM leads WHERE id = :id", id=lead_id) == [[0]]
    assert app.run("SELECT count(*) FROM messages WHERE lead_id = :id", id=lead_id) == [[0]]


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE TABLE app_made (id int)",
        "CREATE FUNCTION app_fn() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE INDEX app_idx ON leads (notes)",
        "ALTER TABLE leads ADD COLUMN app_col text",
        "DROP TABLE call_summaries",
        "TRUNCATE messages",
        "CREATE SCHEMA app_schema",
        "CREATE ROLE app_child",
        "INSERT INTO schema_migrations (version, checksum) VALUES ('9999_x', 'x')",
        "DELETE FROM schema_migrations",
        "CREATE OR REPLACE FUNCTION find_or_create_lead(uuid, text, text) RETURNS SETOF leads "
        "LANGUAGE sql AS 'SELECT * FROM leads'",
    ],
)
def test_app_role_cannot_change_the_schema(app: pg8000.native.Connection, ddl: str):
    with pytest.raises(pg8000.native.DatabaseError) as raised:
        app.run(ddl)

    assert _sqlstate(raised.value) == PERMISSION_DENIED


def test_app_role_owns_nothing_and_has_no_special_attributes(database_url: str):
    owned = scalar(
        database_url,
        "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
        "WHERE r.rolname = :role",
        role=APP_ROLE,
    )
    owned_functions = scalar(
        database_url,
        "SELECT count(*) FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner "
        "WHERE r.rolname = :role",
        role=APP_ROLE,
    )
    attributes = scalar(
        database_url,
        "SELECT ARRAY[rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, "
        "rolbypassrls] FROM pg_roles WHERE rolname = :role",
        role=APP_ROLE,
    )

    assert owned == 0
    assert owned_functions == 0
    assert attributes == [True, False, False, False, False, False]


def test_app_role_carries_its_own_statement_timeout(database_url: str):
    # On the role itself, not only on this database (0002), so it holds in every database.
    config = scalar(
        database_url,
        "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
        "WHERE r.rolname = :role AND s.setdatabase = 0",
        role=APP_ROLE,
    )

    assert "statement_timeout=5s" in config
    assert "idle_in_transaction_session_timeout=10s" in config


def test_app_role_may_use_tables_that_a_later_migration_creates(database_url: str):
    # A later migration runs as the owner, like this statement; default privileges cover it.
    execute(database_url, "CREATE TABLE IF NOT EXISTS later_migration_table (id int)")
    conn = connect(_as_app(database_url))
    try:
        conn.run("INSERT INTO later_migration_table VALUES (1)")
        rows = conn.run("SELECT id FROM later_migration_table")
        conn.run("DELETE FROM later_migration_table")
    finally:
        conn.close()
        execute(database_url, "DROP TABLE later_migration_table")

    assert rows == [[1]]
