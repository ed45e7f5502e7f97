"""Read-through caching with leases (no stale set), single flight and a circuit breaker."""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from leadlookup.cache.base import CacheBackend, LeaseState
from leadlookup.cache.breaker import CircuitBreaker
from leadlookup.metrics import CACHE_INVALIDATION_FAILED, Cache, Outcome, cache_metric
from leadlookup.observability import logger

T = TypeVar("T")
# Bumped whenever the cached JSON shape changes: a value of another version is a miss.
FORMAT_VERSION = 1
# TTLs vary by +/-10% so keys filled together do not all expire together.
TTL_JITTER = 0.10
# Waiting for another caller's fill: first sleep, growth factor.
_WAIT_FIRST_S = 0.002
_WAIT_GROWTH = 2.0


class MetricSink(Protocol):
    """Where counts go (Powertools Metrics in Lambda, a recorder in tests)."""

    def count(self, name: str) -> None:
        """Add 1 to the metric ``name``."""
        ...


class Codec(Protocol[T]):
    """Turns a cached object into JSON-ready data and back."""

    def to_json(self, value: T) -> dict[str, Any]: ...

    def from_json(self, data: dict[str, Any]) -> T: ...


def encode(data: dict[str, Any]) -> str:
    """The stored form: versioned JSON (never pickle)."""
    return json.dumps({"v": FORMAT_VERSION, "data": data}, separators=(",", ":"), default=str)


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
    """Get-or-load over a :class:`CacheBackend`; every Redis failure is a miss (fail open).

    ``backend`` None means caching is off (``REDIS_ENABLED=false``): not one byte to Redis.
    """

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
        self._lease_ms = lease_ms
        self._wait_s = wait_ms / 1000
        self._clock = clock
        self._sleep = sleep
        self._on_failure = on_failure

    @property
    def enabled(self) -> bool:
        """Whether a backend is configured at all."""
        return self.backend is not None

    def get_or_load(
        self,
        cache: Cache,
        key: str,
        lease_key: str,
        load: Callable[[], T | None],
        codec: Codec[T],
        ttl_s: int,
        deadline: float | None = None,
    ) -> T | None:
        """The cached value for ``key``, else ``load()``'s, filled into the cache under a lease.

        Concurrent misses on one key cause one ``load()``: the others wait briefly for the
        value, then call ``load()`` themselves without writing the cache.
        """
        backend = self.backend
        if backend is None or not self.breaker.allow():
            self.record(cache, Outcome.BYPASS)
            return load()
        token = secrets.token_hex(8)
        try:
            result = backend.get_or_lease(key, lease_key, token, self._lease_ms)
        except Exception as exc:
            self._failed(cache, exc)
            return load()
        self.breaker.success()
        if result.state is LeaseState.HIT:
            value = self._decoded(result.value, codec)
            if value is not None:
                self.record(cache, Outcome.HIT)
                return value
            # A value of another format version: drop it and load without filling.
            self._safe_delete(key)
            self.record(cache, Outcome.MISS)
            return load()
        if result.state is LeaseState.HELD:
            return self._wait_for_fill(cache, key, load, codec, deadline)
        self.record(cache, Outcome.MISS)
        loaded: T | None = None
        try:
            loaded = load()
        finally:
            data = codec.to_json(loaded) if loaded is not None else None
            self._fill(key, lease_key, token, data, ttl_s)
        return loaded

    def peek(self, key: str, codec: Codec[T]) -> T | None:
        """The cached value without loading or leasing; None on a miss or any failure."""
        if self.backend is None or not self.breaker.allow():
            return None
        try:
            raw = self.backend.get(key)
        except Exception as exc:
            self.breaker.failure()
            self._reset()
            logger.warning("cache peek failed", error_type=type(exc).__name__)
            return None
        self.breaker.success()
        return self._decoded(raw, codec)

    def invalidate(self, *keys_and_leases: str) -> bool:
        """Delete values and leases after a committed write; False (and counted) on failure.

        Runs even while the breaker is open: a skipped invalidation is a stale read later.
        """
        if self.backend is None:
            return True
        try:
            self.backend.delete(*keys_and_leases)
        except Exception as exc:
            self.breaker.failure()
            self._reset()
            self.metrics.count(CACHE_INVALIDATION_FAILED)
            logger.warning("cache invalidation failed", error_type=type(exc).__name__)
            return False
        self.breaker.success()
        return True

    def _wait_for_fill(
        self,
        cache: Cache,
        key: str,
        load: Callable[[], T | None],
        codec: Codec[T],
        deadline: float | None,
    ) -> T | None:
        backend = self.backend
        assert backend is not None
        give_up = self._clock() + self._wait_s
        if deadline is not None:
            give_up = min(give_up, deadline)
        pause = _WAIT_FIRST_S
        while self._clock() + pause < give_up:
            self._sleep(pause)
            pause *= _WAIT_GROWTH
            try:
                raw = backend.get(key)
            except Exception as exc:
                self._failed(cache, exc)
                return load()
            if raw is not None:
                value = self._decoded(raw, codec)
                if value is not None:
                    self.record(cache, Outcome.HIT)
                    return value
        # The loader is slow or gone: read the database, but leave the cache to the lease holder.
        self.record(cache, Outcome.MISS)
        return load()

    def _fill(
        self, key: str, lease_key: str, token: str, data: dict[str, Any] | None, ttl_s: int
    ) -> None:
        backend = self.backend
        assert backend is not None
        value = encode(data) if data is not None else None
        jittered = max(1, round(ttl_s * random.uniform(1 - TTL_JITTER, 1 + TTL_JITTER)))  # noqa: S311
        try:
            backend.fill(key, lease_key, token, value, jittered)
        except Exception as exc:
            # The value is already in hand; a failed fill only costs a later miss.
            self.breaker.failure()
            self._reset()
            logger.warning("cache fill failed", error_type=type(exc).__name__)

    def _decoded(self, raw: str | None, codec: Codec[T]) -> T | None:
        data = decode(raw) if raw is not None else None
        if data is None:
            return None
        try:
            return codec.from_json(data)
        except (KeyError, TypeError, ValueError):
            return None

    def _safe_delete(self, key: str) -> None:
        try:
            assert self.backend is not None
            self.backend.delete(key)
        except Exception:
            self.breaker.failure()
            self._reset()

    def _failed(self, cache: Cache, exc: Exception) -> None:
        self.breaker.failure()
        self._reset()
        self.record(cache, Outcome.ERROR)
        logger.warning("cache unavailable; reading the database", error_type=type(exc).__name__)

    def _reset(self) -> None:
        if self._on_failure is not None:
            self._on_failure()

    def record(self, cache: Cache, outcome: Outcome) -> None:
        """Count one lookup outcome (also for hits served in-process, before this cache)."""
        self.metrics.count(cache_metric(cache, outcome))
