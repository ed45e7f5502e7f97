"""A cache region: one cached kind with its codec, TTL and key and lease derivation.

The shape of dogpile.cache's region (``get_or_create(key, creator)``): callers name a key and a
creator, never a lease, a backend or a metric. Reads are read-through under memcache-style
leases (no stale set) with single flight; every Redis failure is a miss (fail open).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from typing import Generic, TypeVar

from leadlookup.adapters.cache.base import LeaseState
from leadlookup.adapters.cache.readthrough import Codec, ReadThroughCache, decode, encode
from leadlookup.errors import Unavailable
from leadlookup.metrics import Cache, Outcome
from leadlookup.observability import logger

T = TypeVar("T")
# TTLs vary by +/-10% so keys filled together do not all expire together.
TTL_JITTER = 0.10
# Waiting for another caller's fill: first sleep, growth factor.
_WAIT_FIRST_S = 0.002
_WAIT_GROWTH = 2.0
# Decoded values kept per region (a few hundred KB at most); all dropped when it is full.
_DECODED_MAX = 512


class CacheRegion(Generic[T]):
    """Get-or-create for one kind of value over the shared :class:`ReadThroughCache`."""

    def __init__(
        self,
        store: ReadThroughCache,
        cache: Cache,
        codec: Codec[T],
        ttl_s: int,
        key: Callable[..., str],
        lease: Callable[[str], str],
        seq: Callable[[T], int] | None = None,
        stale: tuple[Callable[[str], str], int] | None = None,
    ) -> None:
        self._store = store
        # Orders the values of one key (a lead's write_seq); None: the region has no writes.
        self._seq = seq
        # Stale-if-error: where the last known value of a key lives, and for how long.
        self._stale: Callable[[str], str] | None = None
        self._stale_ttl_s = 0
        if stale is not None and stale[1] > 0:
            self._stale, self._stale_ttl_s = stale
        self.cache = cache
        # The last value decoded per key, with the bytes it came from: a warm container that
        # reads the same unchanged entry again (a caller who calls back, a text after a call)
        # reuses it instead of parsing ~1 KB of JSON and building the record again.
        self._decoded_last: dict[str, tuple[str, T]] = {}
        self._codec = codec
        self.ttl_s = ttl_s
        self._key = key
        self._lease = lease

    def key(self, *parts: str) -> str:
        """The cache key of the value identified by ``parts``."""
        return self._key(*parts)

    def lease_key(self, key: str) -> str:
        """The lease guarding ``key`` (the contract's key format; callers never need it)."""
        return self._lease(key)

    def get_or_create(
        self, key: str, creator: Callable[[], T | None], deadline: float | None = None
    ) -> T | None:
        """The cached value for ``key``, else ``creator()``'s, filled into the cache under a lease.

        Concurrent misses on one key cause one ``creator()``: the others wait briefly for the
        value, then call ``creator()`` themselves without writing the cache.
        """
        store = self._store
        backend = store.backend
        if backend is None or not store.breaker.allow():
            self.record(Outcome.BYPASS)
            return creator()
        lease = token = ""
        result = None
        try:
            # A hit is a plain GET: measured interleaved on one Redis, the EVAL costs about
            # 40% more than a GET, and after write-through nearly every lookup is a hit. A
            # miss then takes the lease (and the stale copy) in a second, atomic step.
            raw = backend.get(key)
            if raw is None:
                self._decoded_last.pop(key, None)  # gone from Redis (erased?): from here too
                lease, token = self._lease(key), secrets.token_hex(8)  # only a miss leases
                stale_key = self._stale(key) if self._stale else None
                result = backend.get_or_lease(key, lease, token, store.lease_ms, stale_key)
                if result.state is LeaseState.HIT:  # filled since the GET
                    raw = result.value
        except Exception as exc:
            self._unavailable(exc)
            return creator()
        store.breaker.success()
        if raw is not None:
            value = self._value_of(key, raw)
            if value is not None:
                self.record(Outcome.HIT)
                return value
            # A value of another format version: drop it and load without filling.
            self._quiet_delete(key)
            self.record(Outcome.MISS)
            return creator()
        assert result is not None  # no value: the EVAL answered GRANTED or HELD
        if result.state is LeaseState.HELD:
            return self._wait_for_fill(key, creator, deadline, result.stale)
        self.record(Outcome.MISS)
        created: T | None = None
        try:
            created = creator()
        except Unavailable as exc:
            # Only the lease is released: a stale copy never becomes a fresh value again.
            self._fill(key, lease, token, None)
            return self._stale_or_raise(exc, result.stale)
        except BaseException:
            self._fill(key, lease, token, None)
            raise
        self._fill(key, lease, token, created)
        return created

    def peek(self, key: str) -> T | None:
        """The cached value without loading or leasing; None on a miss or any failure."""
        store = self._store
        if store.backend is None or not store.breaker.allow():
            return None
        try:
            raw = store.backend.get(key)
        except Exception as exc:
            store.failed(exc)
            logger.warning("cache peek failed", error_type=type(exc).__name__)
            return None
        store.breaker.success()
        return self._decoded(raw)

    def put(self, key: str, value: T) -> bool:
        """Write-through after a committed write: ``value`` replaces an older cached value (and
        stale copy) and the lease is dropped; False (counted) when Redis could not be told.
        """
        if self._seq is None:
            raise TypeError(f"the {self.cache} region has no order for writes")
        stale = (self._stale(key), self._stale_ttl_s) if self._stale else None
        return self._store.write(key, self._lease(key), self._encode(value), self._ttl(), stale)

    def invalidate(self, key: str) -> bool:
        """Delete every copy (value, stale copy) and the lease; False (counted) on failure."""
        self._decoded_last.pop(key, None)
        copies = (
            (key, self._lease(key), self._stale(key)) if self._stale else (key, self._lease(key))
        )
        return self._store.delete(*copies)

    # By identity rather than key: the lookup service names a value by its parts (number,
    # organization) and the key stays this adapter's business, one call per operation.

    def get_or_create_for(
        self, parts: tuple[str, ...], creator: Callable[[], T | None], deadline: float | None = None
    ) -> T | None:
        """:meth:`get_or_create` of the value identified by ``parts``."""
        return self.get_or_create(self._key(*parts), creator, deadline)

    def put_for(self, parts: tuple[str, ...], value: T) -> bool:
        """:meth:`put` of the value identified by ``parts``."""
        return self.put(self._key(*parts), value)

    def invalidate_for(self, parts: tuple[str, ...]) -> bool:
        """:meth:`invalidate` of the value identified by ``parts``."""
        return self.invalidate(self._key(*parts))

    def record(self, outcome: Outcome) -> None:
        """Count one lookup outcome (also for hits served in-process, before this region)."""
        self._store.record(self.cache, outcome)

    def _stale_or_raise(self, exc: Unavailable, stale: str | None) -> T:
        """The stale copy, when the source is unavailable and there is one; else ``exc``."""
        last_known = self._decoded(stale)
        if last_known is None:
            raise exc
        self.record(Outcome.STALE_SERVED)
        logger.warning("answered from the stale copy", reason=type(exc).__name__)
        return last_known

    def _wait_for_fill(
        self,
        key: str,
        creator: Callable[[], T | None],
        deadline: float | None,
        stale: str | None,
    ) -> T | None:
        store = self._store
        backend = store.backend
        assert backend is not None
        give_up = store.clock() + store.wait_s
        if deadline is not None:
            give_up = min(give_up, deadline)
        pause = _WAIT_FIRST_S
        while store.clock() + pause < give_up:
            store.sleep(pause)
            pause *= _WAIT_GROWTH
            try:
                raw = backend.get(key)
            except Exception as exc:
                self._unavailable(exc)
                return creator()
            if raw is not None:
                value = self._decoded(raw)
                if value is not None:
                    self.record(Outcome.HIT)
                    return value
        # The loader is slow or gone: read the database, but leave the cache to the lease holder.
        self.record(Outcome.MISS)
        try:
            return creator()
        except Unavailable as exc:
            return self._stale_or_raise(exc, stale)

    def _fill(self, key: str, lease: str, token: str, created: T | None) -> None:
        backend = self._store.backend
        assert backend is not None
        value = self._encode(created) if created is not None else None
        stale = (self._stale(key), self._stale_ttl_s) if self._stale else None
        try:
            backend.fill(key, lease, token, value, self._ttl(), stale)
        except Exception as exc:
            # The value is already in hand; a failed fill only costs a later miss.
            self._store.failed(exc)
            logger.warning("cache fill failed", error_type=type(exc).__name__)

    def _encode(self, value: T) -> str:
        return encode(self._codec.to_json(value), self._seq(value) if self._seq else 0)

    def _ttl(self) -> int:
        return max(1, round(self.ttl_s * random.uniform(1 - TTL_JITTER, 1 + TTL_JITTER)))  # noqa: S311

    def _decoded(self, raw: str | None) -> T | None:
        data = decode(raw) if raw is not None else None
        if data is None:
            return None
        try:
            return self._codec.from_json(data)
        except (KeyError, TypeError, ValueError):
            return None

    def _value_of(self, key: str, raw: str) -> T | None:
        """``raw`` (the entry of ``key``) decoded, or the value decoded from the same bytes
        last time; None when it does not decode."""
        last = self._decoded_last.get(key)
        if last is not None and last[0] == raw:
            return last[1]
        value = self._decoded(raw)
        if value is not None:
            if len(self._decoded_last) >= _DECODED_MAX:
                self._decoded_last.clear()
            self._decoded_last[key] = (raw, value)
        return value

    def _quiet_delete(self, key: str) -> None:
        backend = self._store.backend
        assert backend is not None
        try:
            backend.delete(key)
        except Exception as exc:
            self._store.failed(exc)

    def _unavailable(self, exc: Exception) -> None:
        self._store.failed(exc)
        self.record(Outcome.ERROR)
        logger.warning("cache unavailable; reading the database", error_type=type(exc).__name__)
