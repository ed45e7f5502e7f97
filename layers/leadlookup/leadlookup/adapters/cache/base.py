"""The cache backend contract, shared by Redis, Redis Cluster and the in-memory fake.

A backend stores strings under keys with a TTL and supports memcache-style leases: a miss
hands out a lease token, and only the holder of the current token may fill the key. A write
(write-through after commit) and an invalidation delete the lease, so a reader that loaded a
row before an update can no longer write it into the cache afterwards.

Values are ordered: each starts ``{"v":<format>,"s":<seq>,`` (see :func:`value_seq`), and a
fill or a write stores its value only over one of a smaller ``seq``, in the same atomic step.

Optionally a key has a stale copy (``stale_key``): the last known value, kept much longer, set
by every fill and write together with the value and handed back with every miss, so that the
caller can answer from it when its own source (the database) is down.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

_SEQ = re.compile(r'^\{"v":\d+,"s":(\d+)')


def value_seq(raw: str) -> int:
    """The ``seq`` a stored value starts with; -1 for a value without one (any older format)."""
    match = _SEQ.match(raw)
    return int(match.group(1)) if match else -1


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
    # On a miss: the stale copy, if the caller asked for one and it is there.
    stale: str | None = None


class CacheBackend(Protocol):
    """What the read-through cache needs from a store. Every method is one round trip."""

    def get(self, key: str) -> str | None:
        """The value, or None."""
        ...

    def get_or_lease(
        self, key: str, lease_key: str, token: str, lease_ms: int, stale_key: str | None = None
    ) -> LeaseResult:
        """The value if present; else take the lease if it is free (atomically), and the stale
        copy."""
        ...

    def fill(
        self,
        key: str,
        lease_key: str,
        token: str,
        value: str | None,
        ttl_s: int,
        stale: tuple[str, int] | None = None,
    ) -> bool:
        """Store ``value`` only while ``token`` still holds the lease; release the lease.

        ``value`` None only releases the lease; a held value of a larger or equal ``seq`` is
        kept. ``stale`` (key, TTL) also stores the value as the stale copy, unless that copy is
        newer. Returns whether the value was stored.
        """
        ...

    def write(
        self,
        key: str,
        lease_key: str,
        value: str,
        ttl_s: int,
        stale: tuple[str, int] | None = None,
    ) -> bool:
        """After a committed write: delete the lease, and replace the held value (and stale copy)
        with ``value`` if either is held and neither has a larger or equal ``seq``. An absent key
        stays absent, so a slow writer cannot bring back an erased lead. Whether it stored.
        """
        ...

    def delete(self, *keys: str) -> None:
        """Remove keys (values and leases); keys of one call share a cluster slot."""
        ...

    def read_counters(self, keys: Sequence[str], starts: Sequence[int], ttl_s: int) -> list[str]:
        """Each counter's value; a missing one is created at its ``starts`` value, expiring in
        ``ttl_s`` (an existing one keeps its expiry). Keys share a cluster slot."""
        ...

    def bump_counters(self, keys: Sequence[str], starts: Sequence[int], ttl_s: int) -> None:
        """Add 1 to each counter (created at its ``starts`` value first when missing) and let
        it expire ``ttl_s`` from now. Keys share a cluster slot."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix`` (on every cluster node); the count."""
        ...

    def info(self) -> dict[str, Any]:
        """Server facts for the admin ``status`` action."""
        ...
