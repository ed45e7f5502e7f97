"""Secrets by name: a plain ``NAME`` (local runs) or ``NAME_ARN`` (Secrets Manager, cached).

Configuration (:mod:`leadlookup.config`) only says where a secret is; reading it is I/O, done
here on first use, so a function reads only the secrets its requests need.
"""

from __future__ import annotations

import json
from typing import Any

from leadlookup.config import Settings
from leadlookup.errors import ConfigError


def secret(settings: Settings, name: str) -> str | None:
    """The secret ``name``: ``NAME`` as given, or the value of the ``NAME_ARN`` secret."""
    plain = (settings.env.get(name) or "").strip()
    if plain:
        return plain
    arn = (settings.env.get(f"{name}_ARN") or "").strip()
    if not arn:
        return None
    return fetch_secret(arn)


def secret_json(arn: str) -> dict[str, Any]:
    """A Secrets Manager secret holding a JSON object (database and Redis credentials)."""
    raw = fetch_secret(arn)
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError(f"secret {arn} does not hold JSON") from None
    if not isinstance(value, dict):
        raise ConfigError(f"secret {arn} does not hold a JSON object")
    return value


def fetch_secret(arn: str) -> str:
    """Read a secret from Secrets Manager, cached per container.

    Raises :class:`~leadlookup.errors.Unavailable` (fail closed: the caller answers 503, never
    with the secret unchecked), or its subclass ``DeadlineExceeded`` when a deadline scope ran
    out.
    """
    # Imported here: local runs, which give secrets as plain values, never need it.
    from leadlookup.adapters.aws import secretsmanager

    return secretsmanager.client().get(arn)
