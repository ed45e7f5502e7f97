"""The layer's errors: one base, a few kinds, each mapped to one HTTP status in one place."""

from __future__ import annotations


class LookupServiceError(Exception):
    """Base of every error the layer raises on purpose."""

    status = 500


class InvalidInput(LookupServiceError):
    """The request names something that cannot be accepted (field, value, shape)."""

    status = 400


class Unauthorized(LookupServiceError):
    """Missing or wrong webhook secret or signature."""

    status = 401


class Forbidden(LookupServiceError):
    """A signature scheme that answers 403 (Twilio)."""

    status = 403


class NotFound(LookupServiceError):
    """The addressed lead does not exist."""

    status = 404


class PreconditionFailed(LookupServiceError):
    """``If-Match`` named a version that is not the current one."""

    status = 412


class UnsupportedMediaType(LookupServiceError):
    """The body's content type is not one the route accepts."""

    status = 415


class PayloadTooLarge(LookupServiceError):
    """The body is over the route's size limit."""

    status = 413


class Unavailable(LookupServiceError):
    """A dependency (database, queue) cannot be reached now; the caller may retry."""

    status = 503


class DeadlineExceeded(Unavailable):
    """The remaining time budget ran out before (or while) talking to a dependency."""
