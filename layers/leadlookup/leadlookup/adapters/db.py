"""PostgreSQL access through pg8000: one lazily opened connection per container.

Every statement is sent with the simple query protocol (``Connection.run(sql)`` without
parameters), with values rendered by pg8000's own ``literal()`` escaping. Why: pg8000's
extended protocol (``run(sql, **params)``) costs three network round trips per statement
(parse, describe, execute), and its prepared statements cost one but create named
server-side statements, session state that makes RDS Proxy pin the client to one database
connection. The simple protocol costs exactly one round trip and leaves no session state.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

from leadlookup.adapters.secrets import secret_json
from leadlookup.config import Settings
from leadlookup.errors import (
    ConfigError,
    Conflict,
    ConnectionLost,
    DatabaseError,
    DeadlineExceeded,
    InvalidInput,
    Unavailable,
)
from leadlookup.observability import logger

if TYPE_CHECKING:
    import pg8000.native

# `:name` placeholders; the look-behind leaves PostgreSQL casts (`::jsonb`) alone.
_PLACEHOLDER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
# SQLSTATE classes that mean "the connection is gone", not "the statement is wrong".
_TERMINATION_STATES = ("57P01", "57P02", "57P03")
_CONNECTION_LOST_STATES = (*_TERMINATION_STATES, "08000", "08003", "08006")
_UNIQUE_VIOLATION = "23505"


def _pg8000() -> Any:
    # Imported on first use: a container whose answers come from Redis never loads the driver
    # (its import is part of a cold start: BENCHMARKS.md, cold starts).
    import pg8000.native

    return pg8000.native


def to_literal(value: Any) -> str:
    """One SQL literal, escaped by pg8000; containers become JSON text (cast in the SQL)."""
    if isinstance(value, dict | list):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    elif isinstance(value, uuid.UUID):
        value = str(value)
    elif value is not None and not isinstance(value, str | int | float | bool | datetime | date):
        raise TypeError(f"cannot render {type(value).__name__} as SQL")
    if isinstance(value, str):
        if "\x00" in value:
            # PostgreSQL text cannot hold NUL; reject it as bad input, not a server error.
            raise InvalidInput("text must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # JSON can carry lone surrogates ("\ud800"), which have no UTF-8 form.
            raise InvalidInput("text must be valid Unicode") from None
    return str(_pg8000().literal(value))


def render(sql: str, params: Mapping[str, Any]) -> str:
    """Replace every ``:name`` in ``sql`` with the escaped literal of ``params[name]``."""
    if not params:
        return sql
    return _PLACEHOLDER.sub(lambda m: to_literal(params[m.group(1)]), sql)


@dataclass(frozen=True)
class ConnectParams:
    """What pg8000 needs to open a connection (password and TLS included)."""

    user: str
    host: str | None
    port: int
    database: str
    password: str | None
    unix_sock: str | None
    ssl_context: ssl.SSLContext | None
    # IAM authentication: called for every new connection (the token is the password).
    password_source: Callable[[], str] | None = None

    def for_connect(self) -> ConnectParams:
        """These parameters with the password a new connection presents now."""
        if self.password_source is None:
            return self
        return replace(self, password=self.password_source())


def ssl_context_for(mode: str) -> ssl.SSLContext | None:
    """A real SSLContext for a libpq-style ``sslmode``; ``disable`` means plain TCP."""
    mode = (mode or "disable").lower()
    if mode == "disable":
        return None
    if mode == "require":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if mode == "verify-ca":
        context = ssl.create_default_context()
        context.check_hostname = False
        return context
    if mode == "verify-full":
        return ssl.create_default_context()
    raise ConfigError(
        f"DB_SSLMODE must be disable, require, verify-ca or verify-full, not {mode!r}"
    )


def connect_params(settings: Settings) -> ConnectParams:
    """Connection parameters from ``DATABASE_URL``, or ``DB_HOST`` with IAM auth (``DB_USER``,
    a token per connection) or with ``DB_SECRET_ARN`` (user and password from the secret)."""
    if settings.database_url:
        url = urlsplit(settings.database_url)
        if url.scheme not in ("postgresql", "postgres"):
            raise ConfigError("DATABASE_URL must start with postgresql://")
        query = parse_qs(url.query)
        port = url.port or 5432
        socket_dir = query.get("host", [None])[0]
        mode = query.get("sslmode", [None])[0] or settings.db_sslmode
        return ConnectParams(
            user=unquote(url.username or "postgres"),
            host=url.hostname,
            port=port,
            database=unquote(url.path.lstrip("/")) or "postgres",
            password=unquote(url.password) if url.password else None,
            unix_sock=f"{socket_dir}/.s.PGSQL.{port}" if socket_dir else None,
            ssl_context=ssl_context_for(mode),
        )
    if settings.db_host and settings.db_iam_auth:
        if not settings.db_user:
            raise ConfigError("DB_USER is required with DB_IAM_AUTH=true")
        if ssl_context_for(settings.db_sslmode) is None:
            # RDS Proxy refuses IAM logins without TLS, and the token must not travel in clear.
            raise ConfigError("DB_IAM_AUTH=true needs TLS: DB_SSLMODE must not be disable")
        # Imported here: only IAM deployments sign tokens.
        from leadlookup.adapters.aws.iam import rds_token_source

        return ConnectParams(
            user=settings.db_user,
            host=settings.db_host,
            port=settings.db_port,
            database=settings.db_name,
            password=None,
            unix_sock=None,
            ssl_context=ssl_context_for(settings.db_sslmode),
            password_source=rds_token_source(
                settings.db_host, settings.db_port, settings.db_user, settings.env
            ),
        )
    if settings.db_host:
        if not settings.db_secret_arn:
            raise ConfigError("DB_SECRET_ARN (or DB_IAM_AUTH=true) is required with DB_HOST")
        secret = secret_json(settings.db_secret_arn)
        return ConnectParams(
            user=str(secret["username"]),
            host=settings.db_host,
            port=settings.db_port,
            database=settings.db_name,
            password=str(secret["password"]),
            unix_sock=None,
            ssl_context=ssl_context_for(settings.db_sslmode),
        )
    raise ConfigError("DATABASE_URL or DB_HOST must be set")


def _sqlstate(exc: BaseException) -> str | None:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], dict):
        return str(args[0].get("C")) if args[0].get("C") else None
    return None


def _closed_while_idle(conn: pg8000.native.Connection) -> bool:
    """Whether the server spoke or hung up while nobody asked (no round trip: a poll).

    Between statements an idle connection receives nothing, so readable data means a
    termination notice (RDS Proxy idle close, pg_terminate_backend) or end of file.
    """
    sock = conn._usock  # pg8000 exposes no liveness check
    try:
        readable, _, failed = select.select([sock], [], [sock], 0)
    except (OSError, ValueError):
        return True
    return bool(readable or failed)


def _timed_out(exc: BaseException) -> bool:
    # pg8000 wraps socket errors in InterfaceError, except on the first read of a message.
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__
    return False


def _is_connection_failure(exc: BaseException) -> bool:
    if isinstance(exc, OSError | _pg8000().InterfaceError):
        return True
    state = _sqlstate(exc)
    return state is not None and state.startswith(_CONNECTION_LOST_STATES)


class Database:
    """One cached pg8000 connection, reconnected once when it turns out dead."""

    def __init__(
        self,
        settings: Settings,
        connect: Callable[[ConnectParams, float], pg8000.native.Connection] | None = None,
    ) -> None:
        self._settings = settings
        self._connect = connect or _open
        self._conn: pg8000.native.Connection | None = None
        self._params: ConnectParams | None = None

    def query(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        deadline: float | None = None,
        retry: bool = True,
    ) -> list[dict[str, Any]]:
        """Run one statement in one round trip; rows as dicts keyed by column name.

        ``deadline`` (a ``time.monotonic()`` value) caps the socket timeout, so a slow database
        costs at most the caller's remaining budget. ``retry`` allows one reconnect when a cached
        connection turns out dead (RDS Proxy closes idle ones); pass False for statements that
        must not run twice.
        """
        text = render(sql, params or {})
        reused = self._conn is not None
        try:
            return self._execute(text, deadline)
        except ConnectionLost as exc:
            # A server-side termination (RDS Proxy idle close, failover, pg_terminate_backend)
            # aborts whatever had not committed, so even a non-idempotent statement may run
            # again; other broken connections leave its fate unknown.
            if not (reused and (retry or exc.server_terminated)):
                raise
            logger.info("database connection was dead; reconnecting once")
            return self._execute(text, deadline)

    def close(self) -> None:
        """Drop the connection (the next query reconnects)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            # A dead socket has nothing left to tell us.
            with contextlib.suppress(Exception):
                conn.close()

    def _timeout(self, deadline: float | None, default_ms: int) -> float:
        timeout = default_ms / 1000
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded("no time left for the database")
            timeout = min(timeout, remaining)
        return timeout

    def _execute(self, text: str, deadline: float | None) -> list[dict[str, Any]]:
        conn = self._connection(deadline)
        try:
            # Internal attribute: pg8000 has no per-call timeout, and the deadline must reach
            # the socket rather than abandon a thread mid-protocol.
            conn._usock.settimeout(self._timeout(deadline, self._settings.db_statement_timeout_ms))
            rows = conn.run(text)
            columns = [c["name"] for c in conn.columns or ()]
        except DeadlineExceeded:
            raise
        except Exception as exc:
            self._raise_mapped(exc)
        return [dict(zip(columns, row, strict=True)) for row in rows or ()]

    def _raise_mapped(self, exc: Exception) -> NoReturn:
        if _timed_out(exc):
            # The protocol state is unknown after a timeout: never reuse this connection.
            self.close()
            raise DeadlineExceeded("database did not answer in time") from exc
        state = _sqlstate(exc)
        if _is_connection_failure(exc):
            self.close()
            lost = ConnectionLost("database connection failed")
            lost.server_terminated = bool(state and state.startswith(_TERMINATION_STATES))
            raise lost from exc
        # Only the SQLSTATE is kept: server messages can quote the row (personal data).
        if state and state.startswith("22"):
            raise InvalidInput(f"a value was rejected by the database ({state})") from exc
        if state == _UNIQUE_VIOLATION:
            raise Conflict(f"a row with the same unique key already exists ({state})") from exc
        raise DatabaseError(state) from exc

    def _connection(self, deadline: float | None) -> pg8000.native.Connection:
        if self._conn is not None and _closed_while_idle(self._conn):
            logger.info("database connection was closed while idle; reconnecting")
            self.close()
        if self._conn is None:
            if self._params is None:
                self._params = connect_params(self._settings)
            timeout = self._timeout(deadline, self._settings.db_connect_timeout_ms)
            # Signing an IAM token is local work (HMACs); its errors are not connect failures.
            params = self._params.for_connect()
            try:
                self._conn = self._connect(params, timeout)
            except Exception as exc:
                if _timed_out(exc):
                    raise DeadlineExceeded("database connect timed out") from exc
                logger.warning(
                    "database connect failed",
                    sqlstate=_sqlstate(exc),
                    error_type=type(exc).__name__,
                )
                raise Unavailable("database is unreachable") from exc
        return self._conn


def _open(params: ConnectParams, timeout: float) -> pg8000.native.Connection:
    return _pg8000().Connection(
        user=params.user,
        host=params.host or "localhost",
        port=params.port,
        database=params.database,
        password=params.password,
        unix_sock=params.unix_sock,
        # pg8000 reads None as "try unverified TLS, fall back to plain"; disable means plain.
        ssl_context=params.ssl_context if params.ssl_context is not None else False,
        timeout=timeout,
        application_name="bici-lookups",
    )
