"""A per-container circuit breaker: after a Redis failure, skip Redis for a cooldown."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    """Closed -> (failure) -> open for ``cooldown_s`` -> one trial call -> closed or open again.

    One failure is enough to open: a Lambda container serves one request at a time, and a
    second timed-out call would double the cost the breaker exists to avoid.
    """

    def __init__(self, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._open_until: float | None = None
        self._lock = threading.Lock()
        self.failures = 0

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (the cooldown is over; next call is a trial)."""
        with self._lock:
            if self._open_until is None:
                return "closed"
            return "open" if self._clock() < self._open_until else "half-open"

    def allow(self) -> bool:
        """Whether a call may go to Redis now. A trial call re-arms the cooldown."""
        with self._lock:
            if self._open_until is None:
                return True
            now = self._clock()
            if now < self._open_until:
                return False
            # Only one caller gets the trial; others keep bypassing until it reports back.
            self._open_until = now + self._cooldown_s
            return True

    def success(self) -> None:
        """A call succeeded: close."""
        with self._lock:
            self._open_until = None

    def failure(self) -> None:
        """A call failed: open for the cooldown."""
        with self._lock:
            self.failures += 1
            self._open_until = self._clock() + self._cooldown_s
