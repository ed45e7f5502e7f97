"""Direct database access for test setup and assertions (bypassing the code under test)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pg8000.native


def connect(database_url: str) -> pg8000.native.Connection:
    """A pg8000 connection to the test database."""
    parts = urlsplit(database_url)
    return pg8000.native.Connection(
        user=parts.username or "postgres",
        password=parts.password,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        database=parts.path.lstrip("/"),
        timeout=10,
    )


def scalar(database_url: str, sql: str, **params: Any) -> Any:
    """The first column of the first row of ``sql``."""
    conn = connect(database_url)
    try:
        return conn.run(sql, **params)[0][0]
    finally:
        conn.close()


def execute(database_url: str, sql: str, **params: Any) -> None:
    """Run one statement."""
    conn = connect(database_url)
    try:
        conn.run(sql, **params)
    finally:
        conn.close()
