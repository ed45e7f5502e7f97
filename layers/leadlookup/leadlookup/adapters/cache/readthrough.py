"""The shared part of every cache region: backend, breaker, metrics and the fail-open policy.

One :class:`ReadThroughCache` per container; one
:class:`~leadlookup.adapters.cache.region.CacheRegion` per cached kind (lead, organization)
built from it. Every Redis failure is a miss (or, for a write, a counted failure), opens the
breaker and drops the client.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from leadlookup.adapters.cache.base import CacheBackend
from leadlookup.adapters.cache.breaker import CircuitBreaker
from leadlookup.errors import Unavailable
from leadlookup.metrics import CACHE_INVALIDATION_FAILED, CACHE_METRIC_NAMES, Cache, Outcome
from leadlookup.observability import logger

if TYPE_CHECKING:
    from leadlookup.adapters.cache.region import CacheRegion

T = TypeVar("T")
# Bumped whenever the cached JSON shape changes: a value of another version is a miss.
# 2: the envelope carries the value's write seq ("s") ahead of its data.
# 3: a lead carries its recent history (conversation_context).
FORMAT_VERSION = 3


def _starts(count: int) -> list[int]:
    # A counter created anew (first use, expiry, a Redis restart) starts at a random value
    # below 2**52 (exact in Lua's doubles), so it does not take up a value it had before.
    return [secrets.randbelow(1 << 52) for _ in range(count)]


class MetricSink(Protocol):
    """Where counts go (the layer's EMF writer, ``observability.emf``, in Lambda; a recorder
    in tests)."""

    def count(self, name: str) -> None:
        """Add 1 to the metric ``name``."""
        ...


class Codec(Protocol[T]):
    """Turns a cached object into JSON-ready data and back."""

    def to_json(self, value: T) -> dict[str, Any]: ...

    def from_json(self, data: dict[str, Any]) -> T: ...


def encode(data: dict[str, Any], seq: int = 0) -> str:
    """The stored form: versioned JSON (never pickle), ``{"v":..,"s":<seq>,"data":..}``.

    ``seq`` comes first after the version so that the backend's atomic step can read it
    without parsing the JSON (:func:`leadlookup.adapters.cache.base.value_seq`).
    """
    envelope = {"v": FORMAT_VERSION, "s": seq, "data": data}
    return json.dumps(envelope, separators=(",", ":"), default=str)


def decode(raw: str) -> dict[str, Any] | None:
    """The data of a stored value, or None when it is malformed or of another version."""
    try:
        envelope = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(envelope, dict) or envelope.get("v") != FORMAT_VERSION:
        return None
    data = envelope.get("data")
    return data if isinstance(data, dict) else None


class ReadThroughCache:
    """What every region shares; ``backend`` None means caching is off (not one byte to Redis)."""

    def __init__(
        self,
        backend: CacheBackend | None,
        breaker: CircuitBreaker,
        metrics: MetricSink,
        *,
        lease_ms: int = 2000,
        wait_ms: int = 250,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.backend = backend
        self.breaker = breaker
        self.metrics = metrics
        self.lease_ms = lease_ms
        self.wait_s = wait_ms / 1000
        self.clock = clock
        self.sleep = sleep
        self._on_failure = on_failure

    @property
    def enabled(self) -> bool:
        """Whether a backend is configured at all."""
        return self.backend is not None

    def region(
        self,
        cache: Cache,
        codec: Codec[T],
        ttl_s: int,
        key: Callable[..., str],
        lease: Callable[[str], str],
        seq: Callable[[T], int] | None = None,
        stale: tuple[Callable[[str], str], int] | None = None,
    ) -> CacheRegion[T]:
        """A region over this cache: its codec, TTL, key/lease derivation, value order and
        stale copy (key derivation, TTL)."""
        from leadlookup.adapters.cache.region import CacheRegion

        return CacheRegion(self, cache, codec, ttl_s, key, lease, seq, stale)

    def count(self, name: str) -> None:
        """Add 1 to a metric (outcomes of the caller's own, e.g. a degraded answer)."""
        self.metrics.count(name)

    def record(self, cache: Cache, outcome: Outcome) -> None:
        """Count one lookup outcome."""
        self.metrics.count(CACHE_METRIC_NAMES[cache, outcome])

    def delete(self, *keys: str) -> bool:
        """Delete values and leases after a committed write; False (and counted) on failure.

        Runs even while the breaker is open: a skipped invalidation is a stale read later.
        """
        if self.backend is None:
            return True
        try:
            self.backend.delete(*keys)
        except Exception as exc:
            self.failed(exc)
            self.metrics.count(CACHE_INVALIDATION_FAILED)
            logger.warning("cache invalidation failed", error_type=type(exc).__name__)
            return False
        self.breaker.success()
        return True

    def write(
        self, key: str, lease: str, value: str, ttl_s: int, stale: tuple[str, int] | None
    ) -> bool:
        """Write-through after a committed write; False (counted as a failed invalidation).

        Runs even while the breaker is open, like an invalidation.
        """
        if self.backend is None:
            return True
        try:
            self.backend.write(key, lease, value, ttl_s, stale)
        except Exception as exc:
            self.failed(exc)
            self.metrics.count(CACHE_INVALIDATION_FAILED)
            logger.warning("cache write-through failed", error_type=type(exc).__name__)
            return False
        self.breaker.success()
        return True

    def read_counters(self, keys: Sequence[str], ttl_s: int) -> list[str] | None:
        """Change counters (one round trip), a missing one created at a random start; None
        when caching is off, the breaker is open or Redis fails (the caller does without)."""
        if self.backend is None or not self.breaker.allow():
            return None
        try:
            values = self.backend.read_counters(keys, _starts(len(keys)), ttl_s)
        except Exception as exc:
            self.failed(exc)
            logger.warning("change counters unavailable", error_type=type(exc).__name__)
            return None
        self.breaker.success()
        return values

    def bump_counters(self, keys: Sequence[str], ttl_s: int, even_if_open: bool = True) -> bool:
        """Add 1 to change counters after a committed write; False (counted as a failed
        invalidation) when Redis could not be told. Runs while the breaker is open, like an
        invalidation (a skipped bump is an unchanged ETag of changed data), unless the caller
        has no time for a Redis that just failed (``even_if_open`` False: skipped, False)."""
        if self.backend is None:
            return True
        if not even_if_open and self.breaker.state != "closed":
            return False
        try:
            self.backend.bump_counters(keys, _starts(len(keys)), ttl_s)
        except Exception as exc:
            self.failed(exc)
            self.metrics.count(CACHE_INVALIDATION_FAILED)
            logger.warning("change counter bump failed", error_type=type(exc).__name__)
            return False
        self.breaker.success()
        return True

    def flush_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (every cluster node); the number removed.

        Like an invalidation it runs while the breaker is open; unlike a lookup it cannot
        quietly do nothing, so a failure is counted and raised as :class:`Unavailable`.
        """
        if self.backend is None:
            return 0
        try:
            removed = self.backend.delete_prefix(prefix)
        except Exception as exc:
            self.failed(exc)
            self.metrics.count(CACHE_INVALIDATION_FAILED)
            raise Unavailable("redis is unavailable; nothing was flushed") from exc
        self.breaker.success()
        return removed

    def status(self) -> dict[str, Any]:
        """Whether caching is on, this container's breaker state, and Redis server facts."""
        status: dict[str, Any] = {"enabled": self.enabled, "breaker": self.breaker.state}
        if self.backend is not None:
            try:
                status["server"] = self.backend.info()
            except Exception as exc:
                status["server"] = {"connected": False, "error": type(exc).__name__}
        return status

    def failed(self, _exc: Exception) -> None:
        """A Redis call failed: open the breaker and drop the client."""
        self.breaker.failure()
        if self._on_failure is not None:
            self._on_failure()
