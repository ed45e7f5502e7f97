"""Versioned SQL migrations with an idempotent runner; they seed the default organization."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from leadlookup.adapters.db import Database, render
from leadlookup.domain.models import default_organization_snapshot
from leadlookup.errors import LookupServiceError, MigrationError, Unavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every runner of this schema.
_ADVISORY_LOCK_KEY = 4_242_001

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
SELECT_APPLIED = "SELECT version, checksum FROM schema_migrations"
RECORD_APPLIED = "INSERT INTO schema_migrations (version, checksum) VALUES (:version, :checksum)"
LOCK = f"SELECT pg_advisory_lock({_ADVISORY_LOCK_KEY})"
UNLOCK = f"SELECT pg_advisory_unlock({_ADVISORY_LOCK_KEY})"
SEED_DEFAULT_ORGANIZATION = """
INSERT INTO organizations (id, name, phone_number, phone_number_normalized, settings)
VALUES (:id, :name, :phone_number, :phone_number_normalized, :settings::jsonb)
ON CONFLICT (id) DO NOTHING"""


@dataclass(frozen=True)
class Migration:
    """One SQL file: ``0001_name.sql`` is version ``0001_name``."""

    version: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file, so an edited, already-applied migration is noticed."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file, in version order."""
    return [Migration(p.stem, p.read_text()) for p in sorted(directory.glob("*.sql"))]


def migrate(db: Database, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; return their versions.

    Safe to run concurrently (an advisory lock serializes runners) and repeatedly.
    """
    db.query(CREATE_LEDGER)
    db.query(LOCK)
    try:
        applied = {row["version"]: row["checksum"] for row in db.query(SELECT_APPLIED)}
        done: list[str] = []
        for migration in load_migrations(directory):
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(f"migration {migration.version} changed after it ran")
                continue
            record = render(
                RECORD_APPLIED, {"version": migration.version, "checksum": migration.checksum}
            )
            try:
                # One simple-protocol message with several statements runs as one transaction.
                db.query(f"{migration.sql};\n{record}", retry=False)
            except Unavailable:
                raise  # the database is down: the custom resource retries
            except LookupServiceError as exc:
                # The SQL itself failed: retrying cannot help, so the deploy fails now.
                raise MigrationError(f"migration {migration.version} failed: {exc}") from exc
            done.append(migration.version)
        db.query(SEED_DEFAULT_ORGANIZATION, default_organization_snapshot())
        return done
    finally:
        db.query(UNLOCK)
