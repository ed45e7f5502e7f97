"""The layer's errors: one base and a few kinds. Their HTTP statuses live in ``http.py`` only."""

from __future__ import annotations


class LookupServiceError(Exception):
    """Base of every error the layer raises on purpose.

    ``details``: fields the error's JSON body carries beside its message.
    """

    def __init__(self, *args: object, details: dict[str, object] | None = None) -> None:
        super().__init__(*args)
        self.details: dict[str, object] = details or {}


class InvalidInput(LookupServiceError):
    """The request names something that cannot be accepted (field, value, shape)."""


class Unauthorized(LookupServiceError):
    """Missing or wrong webhook secret or signature."""


class Forbidden(LookupServiceError):
    """A signature scheme that answers 403 (Twilio)."""


class NotFound(LookupServiceError):
    """The addressed lead does not exist."""


class Conflict(LookupServiceError):
    """The write would duplicate a unique key another row already holds."""


class PreconditionFailed(LookupServiceError):
    """``If-Match`` named a version that is not the current one."""


class UnsupportedMediaType(LookupServiceError):
    """The body's content type is not one the route accepts."""


class PayloadTooLarge(LookupServiceError):
    """The body is over the route's size limit."""


class ConfigError(LookupServiceError, ValueError):
    """A configuration variable is missing or malformed; the message names it (operators only)."""


class Unavailable(LookupServiceError):
    """A dependency (database, queue) cannot be reached now; the caller may retry."""


class DeadlineExceeded(Unavailable):
    """The remaining time budget ran out before (or while) talking to a dependency."""


class ConnectionLost(Unavailable):
    """The connection broke under a statement; the statement may be retried on a new one."""

    server_terminated = False


class DatabaseError(LookupServiceError):
    """A statement failed on the server (not an outage: a retry fails the same way).

    Carries the SQLSTATE, never the server's message, which can quote the row.
    """

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"database error {sqlstate or 'unknown'}")
        self.sqlstate = sqlstate


class MigrationError(LookupServiceError):
    """A migration failed, or an applied migration's file was changed after it ran."""
