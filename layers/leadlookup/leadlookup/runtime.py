"""Per-container wiring: settings, clients and the service, built lazily once and reused."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from leadlookup.cache import CircuitBreaker, ReadThroughCache
from leadlookup.cache.base import CacheBackend
from leadlookup.cache.readthrough import MetricSink
from leadlookup.db import Database
from leadlookup.observability import emf
from leadlookup.repository import Repository
from leadlookup.service import LookupService
from leadlookup.settings import Settings


@dataclass
class Runtime:
    """Everything a warm container keeps between invocations."""

    settings: Settings
    db: Database
    cache: ReadThroughCache
    service: LookupService

    def close(self) -> None:
        """Close the PostgreSQL connection and the Redis client (their next use reconnects)."""
        self.db.close()
        # The Redis backend (not a test's fake) holds a connection pool.
        reset = getattr(self.cache.backend, "reset", None)
        if reset is not None:
            reset()


def build_runtime(
    settings: Settings,
    metrics: MetricSink | None = None,
    backend: CacheBackend | None = None,
) -> Runtime:
    """Wire a runtime; ``backend`` overrides the Redis backend chosen by settings (tests)."""
    db = Database(settings)
    on_failure = None
    if backend is None and settings.cache_enabled:
        # Imported only here: a function that never uses the cache never loads redis-py.
        from leadlookup.cache.redis_backend import RedisBackend, build_client

        redis_backend = RedisBackend(
            lambda: build_client(settings), max_age_s=settings.redis_max_connection_age_s
        )
        backend, on_failure = redis_backend, redis_backend.reset
    cache = ReadThroughCache(
        backend,
        CircuitBreaker(settings.redis_breaker_cooldown_ms / 1000),
        metrics or emf,
        lease_ms=settings.cache_lease_ms,
        wait_ms=settings.cache_wait_ms,
        on_failure=on_failure,
    )
    return Runtime(settings, db, cache, LookupService(Repository(db), cache, settings))


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    """This container's runtime, built from the environment on first use."""
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = build_runtime(Settings.from_env())
    return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Replace (or with None, forget) this container's runtime: tests and the local runner."""
    global _runtime
    with _lock:
        if _runtime is not None and _runtime is not runtime:
            _runtime.close()
        _runtime = runtime
