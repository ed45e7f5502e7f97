"""Shared-secret checks for webhooks: constant-time, failing closed when unconfigured."""

from __future__ import annotations

import hmac

from leadlookup.errors import Unauthorized
from leadlookup.observability import logger
from leadlookup.settings import Settings

_warned: set[str] = set()


def configured_secret(settings: Settings, name: str) -> str | None:
    """The secret ``name`` (plain or ``_ARN``); logs once per container when it is missing."""
    value = settings.secret(name)
    if value is None and name not in _warned:
        _warned.add(name)
        logger.error("webhook secret is not configured; rejecting requests", secret_name=name)
    return value


def same_secret(provided: str | None, expected: str) -> bool:
    """Constant-time equality of two secrets (any text, not only ASCII)."""
    if provided is None:
        return False
    return hmac.compare_digest(provided.encode(), expected.encode())


def require_header_secret(settings: Settings, name: str, provided: str | None) -> None:
    """401 unless ``provided`` equals the configured secret ``name``."""
    if settings.allow_unsigned_webhooks:
        return
    expected = configured_secret(settings, name)
    if expected is None:
        raise Unauthorized("webhook secret is not configured")
    if provided is None:
        raise Unauthorized(f"missing {settings.initiation_secret_header} header")
    if not same_secret(provided, expected):
        raise Unauthorized(f"invalid {settings.initiation_secret_header} header")
