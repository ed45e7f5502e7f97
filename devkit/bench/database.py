"""The bench's own database: recreated and migrated each run, seeded in bulk in SQL."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import pg8000.native

from devkit.services import pg_connect_args
from leadlookup.adapters.db import Database
from leadlookup.adapters.migrate import migrate
from leadlookup.config import DEFAULT_ORGANIZATION_ID, Settings

BENCH_DATABASE = "bici_bench"
# Seeded leads are +1 604 200 0000 + i: valid Vancouver numbers, a million of them.
LEAD_PHONE_BASE = 16042000000
# Bulk inserts go in chunks so each statement stays short and reports progress.
_CHUNK = 100_000
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# Leads that look like real ones (name, e-mail, interest, summary), so cached values have a
# realistic size; generate_series keeps a million rows a single round trip per chunk.
SEED_LEADS = """
INSERT INTO leads (organization_id, phone_number, phone_number_normalized, customer_name,
                   email, status, bike_interest, qualification_data, last_summary,
                   interaction_count, last_contact_at)
SELECT CAST(:organization_id AS uuid),
       '+' || (:base + i)::text,
       (:base + i)::text,
       (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Ken'])[1 + i % 6] || ' ' ||
       (ARRAY['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Thompson'])[1 + (i / 6) % 6],
       'customer' || i || '@example.com',
       (ARRAY['new', 'contacted', 'qualified', 'hot', 'customer'])[1 + i % 5],
       jsonb_build_object(
           'type', (ARRAY['gravel', 'road', 'mountain', 'e-bike', 'commuter'])[1 + i % 5],
           'frame_size', (50 + i % 8)::text),
       jsonb_build_object('budget_range', '$1,000-$2,000', 'timeline', 'this month'),
       'Asked about ' || (ARRAY['gravel', 'road', 'mountain', 'e-bike', 'commuter'])[1 + i % 5]
           || ' bikes; wants a test ride on Saturday.',
       i % 7,
       now() - make_interval(days => CAST(i % 90 AS int))
FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint) - 1) AS i
ON CONFLICT DO NOTHING"""


# The staff inbox's store: its own leads, each with a conversation (two texts in, one out,
# one call); one in fifty under human control (waiting for a staff reply) and one in a
# hundred asking for a callback: the leads a page looks at closely (repository.py).
INBOX_STORE_ID = "b0c1b1c1-0000-0000-0000-0000000000b1"
INBOX_PHONE_BASE = 16043000000
SEED_INBOX_STORE = """
INSERT INTO organizations (id, name, phone_number, phone_number_normalized, settings)
VALUES (CAST(:id AS uuid), 'BICI Inbox Bench', '+16042990001', '16042990001', '{}')
ON CONFLICT DO NOTHING"""
SEED_INBOX = """
WITH new_leads AS (
    INSERT INTO leads (organization_id, phone_number, phone_number_normalized, customer_name,
                       status, human_control, callback_requested_at, created_at)
    SELECT CAST(:id AS uuid), '+' || (CAST(:base AS bigint) + i)::text,
           (CAST(:base AS bigint) + i)::text, 'Customer ' || i,
           (ARRAY['new', 'contacted', 'qualified', 'hot', 'customer'])[1 + i % 5],
           i % 50 = 0,
           CASE WHEN i % 100 = 7 THEN now() - make_interval(hours => i % 24) END,
           now() - make_interval(days => 30 + i % 60)
    FROM generate_series(0, :count - 1) AS i
    RETURNING id, organization_id, phone_number_normalized::bigint - CAST(:base AS bigint) AS i
), texts AS (
    INSERT INTO messages (organization_id, lead_id, external_id, direction, sender_kind, body,
                          status, created_at)
    SELECT organization_id, id, 'bench:' || id || ':' || n, dir, kind, 'Do you have gravel bikes?',
           CASE WHEN dir = 'outbound' THEN 'delivered' END,
           now() - make_interval(mins => CAST(i * 7 + 30 - n * 10 AS int))
    FROM new_leads,
         LATERAL (VALUES (0, 'inbound', 'customer'), (1, 'outbound', 'agent'),
                         (2, 'inbound', 'customer')) AS t(n, dir, kind)
    RETURNING 1
), calls AS (
    INSERT INTO call_summaries (organization_id, lead_id, conversation_id, summary,
                                classification, payload, created_at)
    SELECT organization_id, id, 'conv_bench_' || id, 'Asked about gravel bikes.', 'sales',
           '{"data": {"metadata": {"call_duration_secs": 95}}}',
           now() - make_interval(mins => CAST(i * 7 + 60 AS int))
    FROM new_leads
    RETURNING 1
)
SELECT (SELECT count(*) FROM new_leads) AS leads, (SELECT count(*) FROM texts) AS texts"""


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name``."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def connect(url: str) -> pg8000.native.Connection:
    """An administrative connection without the schema's 5 s statement timeout."""
    conn = pg8000.native.Connection(**pg_connect_args(url), timeout=600)
    conn.run("SET statement_timeout = 0")
    return conn


def recreate_database(server_url: str, name: str = BENCH_DATABASE) -> str:
    """Drop ``name`` if it exists, create it, migrate and seed it; its URL."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r}")
    admin = connect(with_database(server_url, "postgres"))
    try:
        admin.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.run(f"CREATE DATABASE {name}")
    finally:
        admin.close()
    url = with_database(server_url, name)
    db = Database(Settings(database_url=url))
    try:
        migrate(db)
    finally:
        db.close()
    return url


def drop_database(server_url: str, name: str) -> None:
    """Drop ``name`` (closing its sessions)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r}")
    admin = connect(with_database(server_url, "postgres"))
    try:
        admin.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


def lead_phone(index: int) -> str:
    """The E.164 number of seeded lead ``index``."""
    return f"+{LEAD_PHONE_BASE + index}"


def seed_leads(
    conn: pg8000.native.Connection,
    stop: int,
    start: int = 0,
    organization_id: str = DEFAULT_ORGANIZATION_ID,
) -> None:
    """Insert seeded leads ``start`` .. ``stop - 1`` (existing ones are kept), then ANALYZE."""
    for low in range(start, stop, _CHUNK):
        conn.run(
            SEED_LEADS,
            organization_id=organization_id,
            base=LEAD_PHONE_BASE,
            start=low,
            stop=min(stop, low + _CHUNK),
        )
    conn.run("ANALYZE leads")


def seed_inbox(conn: pg8000.native.Connection, count: int) -> None:
    """The inbox store and ``count`` leads with their conversations, then ANALYZE."""
    conn.run(SEED_INBOX_STORE, id=INBOX_STORE_ID)
    conn.run(SEED_INBOX, id=INBOX_STORE_ID, base=INBOX_PHONE_BASE, count=count)
    conn.run("ANALYZE leads")
    conn.run("ANALYZE messages")
    conn.run("ANALYZE call_summaries")


def lead_ids(
    conn: pg8000.native.Connection, count: int, organization_id: str = DEFAULT_ORGANIZATION_ID
) -> list[str]:
    """The ids of seeded leads 0 .. ``count - 1``, in index order."""
    rows = conn.run(
        "SELECT id::text, phone_number_normalized FROM leads "
        "WHERE organization_id = CAST(:org AS uuid) "
        "AND phone_number_normalized::bigint BETWEEN :low AND :high",
        org=organization_id,
        low=LEAD_PHONE_BASE,
        high=LEAD_PHONE_BASE + count - 1,
    )
    by_index = {int(phone) - LEAD_PHONE_BASE: lead_id for lead_id, phone in rows}
    return [by_index[i] for i in range(count)]


def table_sizes(conn: pg8000.native.Connection) -> dict[str, int]:
    """Rows and on-disk bytes of the leads table and its indexes."""
    rows, total, indexes = conn.run(
        "SELECT (SELECT count(*) FROM leads), pg_total_relation_size('leads'), "
        "pg_indexes_size('leads')"
    )[0]
    return {"rows": int(rows), "total_bytes": int(total), "index_bytes": int(indexes)}
