"""The cache backend contract, shared by Redis, Redis Cluster and the in-memory fake.

A backend stores opaque strings under keys with a TTL and supports memcache-style leases:
a miss hands out a lease token, and only the holder of the current token may fill the key.
Invalidation deletes the value and the lease, so a reader that loaded a row before an update
can no longer write it into the cache afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol


class LeaseState(Enum):
    """What a get-or-lease call found."""

    HIT = "hit"  # the value is there
    GRANTED = "granted"  # a miss, and this caller holds the lease: it loads and fills
    HELD = "held"  # a miss, and another caller holds the lease: wait for its value


@dataclass(frozen=True)
class LeaseResult:
    """The answer of :meth:`CacheBackend.get_or_lease`."""

    state: LeaseState
    value: str | None = None


class CacheBackend(Protocol):
    """What the read-through cache needs from a store. Every method is one round trip."""

    def get(self, key: str) -> str | None:
        """The value, or None."""
        ...

    def get_or_lease(self, key: str, lease_key: str, token: str, lease_ms: int) -> LeaseResult:
        """The value if present; else take the lease if it is free (atomically)."""
        ...

    def fill(self, key: str, lease_key: str, token: str, value: str | None, ttl_s: int) -> bool:
        """Store ``value`` only while ``token`` still holds the lease; release the lease.

        ``value`` None only releases the lease. Returns whether the value was stored.
        """
        ...

    def delete(self, *keys: str) -> None:
        """Remove keys (values and leases); keys of one call share a cluster slot."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix`` (on every cluster node); the count."""
        ...

    def info(self) -> dict[str, Any]:
        """Server facts for the admin ``status`` action."""
        ...
