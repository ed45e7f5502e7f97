"""In-memory backend: the fake that obeys the same contract as Redis (tests, local demos)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from leadlookup.adapters.cache.base import LeaseResult, LeaseState, value_seq


class MemoryBackend:
    """A dict with expiry and leases, safe across threads of one process."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, ordered: bool = True
    ) -> None:
        self._clock = clock
        # False only in tests that show what the seq check prevents.
        self._ordered = ordered
        self._data: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires_at = item
        if self._clock() >= expires_at:
            del self._data[key]
            return None
        return value

    def get(self, key: str) -> str | None:
        """The value, or None."""
        with self._lock:
            return self._live(key)

    def get_or_lease(
        self, key: str, lease_key: str, token: str, lease_ms: int, stale_key: str | None = None
    ) -> LeaseResult:
        """The value if present; else take the free lease (and hand back the stale copy)."""
        with self._lock:
            value = self._live(key)
            if value is not None:
                return LeaseResult(LeaseState.HIT, value)
            stale = self._live(stale_key) if stale_key else None
            if self._live(lease_key) is not None:
                return LeaseResult(LeaseState.HELD, stale=stale)
            self._data[lease_key] = (token, self._clock() + lease_ms / 1000)
            return LeaseResult(LeaseState.GRANTED, stale=stale)

    def fill(
        self,
        key: str,
        lease_key: str,
        token: str,
        value: str | None,
        ttl_s: int,
        stale: tuple[str, int] | None = None,
    ) -> bool:
        """Store while ``token`` holds the lease, and release it."""
        with self._lock:
            if self._live(lease_key) != token:
                return False
            del self._data[lease_key]
            if value is None:
                return False
            seq, held = value_seq(value), self._mark(key)
            if held is not None and held >= seq:
                return False
            self._data[key] = (value, self._clock() + ttl_s)
            stale_mark = None if stale is None else self._mark(stale[0])
            if stale is not None and (stale_mark is None or stale_mark <= seq):
                self._data[stale[0]] = (value, self._clock() + stale[1])
            return True

    def write(
        self,
        key: str,
        lease_key: str,
        value: str,
        ttl_s: int,
        stale: tuple[str, int] | None = None,
    ) -> bool:
        """Drop the lease; replace held copies of a smaller seq."""
        with self._lock:
            self._data.pop(lease_key, None)
            copies = [key] if stale is None else [key, stale[0]]
            marks = [self._mark(k) for k in copies]
            if all(m is None for m in marks):
                return False
            if self._ordered and max(m for m in marks if m is not None) >= value_seq(value):
                return False
            self._data[key] = (value, self._clock() + ttl_s)
            if stale is not None:
                self._data[stale[0]] = (value, self._clock() + stale[1])
            return True

    def _mark(self, key: str) -> int | None:
        """The seq held under ``key`` (None: nothing; and always -1 when unordered)."""
        held = self._live(key)
        if held is None:
            return None
        return value_seq(held) if self._ordered else -1

    def delete(self, *keys: str) -> None:
        """Remove keys."""
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def read_counters(self, keys: Sequence[str], starts: Sequence[int], ttl_s: int) -> list[str]:
        """Each counter; a missing one starts at its ``starts`` value."""
        with self._lock:
            values = []
            for key, start in zip(keys, starts, strict=True):
                value = self._live(key)
                if value is None:
                    value = str(start)
                    self._data[key] = (value, self._clock() + ttl_s)
                values.append(value)
            return values

    def bump_counters(self, keys: Sequence[str], starts: Sequence[int], ttl_s: int) -> None:
        """Add 1 to each counter (a missing one starts at its ``starts`` value)."""
        with self._lock:
            for key, start in zip(keys, starts, strict=True):
                value = self._live(key)
                self._data[key] = (str(int(value or start) + 1), self._clock() + ttl_s)

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key under ``prefix``."""
        with self._lock:
            doomed = [k for k in self._data if k.startswith(prefix)]
            for key in doomed:
                del self._data[key]
            return len(doomed)

    def ttl(self, key: str) -> float | None:
        """Seconds left for ``key`` (tests check TTL jitter with it)."""
        with self._lock:
            item = self._data.get(key)
            return None if item is None else item[1] - self._clock()

    def info(self) -> dict[str, Any]:
        """Counts, in the shape of the Redis answer's interesting part."""
        with self._lock:
            return {"backend": "memory", "connected": True, "keys": len(self._data)}
