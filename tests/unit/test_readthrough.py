"""The read-through cache over the in-memory backend and a backend that always fails."""

from __future__ import annotations

from typing import Any

import pytest

from leadlookup.adapters.cache import CacheRegion, CircuitBreaker, ReadThroughCache
from leadlookup.adapters.cache.memory import MemoryBackend
from leadlookup.adapters.db import render
from leadlookup.domain.models import Organization
from leadlookup.errors import Unavailable
from leadlookup.metrics import Cache
from leadlookup.observability import RecordingMetricSink

ORG = Organization("b0c1b1c1-0000-0000-0000-000000000001", "BICI", "+1778", "1778", {})


class BrokenBackend:
    """Every call fails, like a Redis that went away."""

    calls = 0

    def __getattr__(self, name: str) -> Any:
        def fail(*_args: Any, **_kwargs: Any) -> Any:
            BrokenBackend.calls += 1
            raise ConnectionError("redis is gone")

        return fail


def _cache(backend: Any) -> tuple[ReadThroughCache, RecordingMetricSink]:
    sink = RecordingMetricSink()
    return ReadThroughCache(backend, CircuitBreaker(60), sink), sink


def _region(cache: ReadThroughCache, kind: Cache = Cache.ORG) -> CacheRegion[Organization]:
    return cache.region(kind, Organization, 60, lambda k: k, lambda k: f"lease:{k}")


def test_readthrough_miss_loads_once_then_hits() -> None:
    cache, sink = _cache(MemoryBackend())
    loads = []

    def load() -> Organization:
        loads.append(1)
        return ORG

    first = _region(cache).get_or_create("k", load)
    second = _region(cache).get_or_create("k", load)

    assert first == second == ORG
    assert len(loads) == 1
    assert sink.counts == {"OrgCacheMiss": 1, "OrgCacheHit": 1}


def test_readthrough_absent_value_is_not_cached_and_releases_the_lease() -> None:
    backend = MemoryBackend()
    cache, _ = _cache(backend)

    _region(cache, Cache.LEAD).get_or_create("k", lambda: None)

    assert backend.get("k") is None and backend.get("lease:k") is None


def test_readthrough_broken_backend_fails_open_and_opens_the_breaker() -> None:
    cache, sink = _cache(BrokenBackend())
    BrokenBackend.calls = 0

    values = [_region(cache).get_or_create("k", lambda: ORG) for _ in range(3)]

    assert values == [ORG, ORG, ORG]
    assert BrokenBackend.calls == 1
    assert sink.counts == {"OrgCacheError": 1, "OrgCacheBypass": 2}


def test_readthrough_disabled_cache_only_bypasses() -> None:
    cache, sink = _cache(None)

    value = _region(cache).get_or_create("k", lambda: ORG)

    assert value == ORG and sink.counts == {"OrgCacheBypass": 1}


def test_readthrough_failed_invalidation_is_counted() -> None:
    cache, sink = _cache(BrokenBackend())

    assert _region(cache).invalidate("k") is False
    assert sink.counts == {"CacheInvalidationFailed": 1}


def test_readthrough_failed_flush_all_opens_the_breaker_and_raises_unavailable() -> None:
    cache, sink = _cache(BrokenBackend())

    with pytest.raises(Unavailable):
        cache.flush_prefix("bici:")

    assert cache.breaker.state == "open"
    assert sink.counts == {"CacheInvalidationFailed": 1}


def test_render_escapes_values_and_leaves_casts_alone() -> None:
    sql = render("SELECT :a, :b::jsonb, :c, :d", {"a": "it's", "b": {"k": "v"}, "c": None, "d": 3})

    assert sql == "SELECT 'it''s', '{\"k\":\"v\"}'::jsonb, NULL, 3"


def _stale_region(cache: ReadThroughCache) -> CacheRegion[Organization]:
    return cache.region(
        Cache.ORG,
        Organization,
        60,
        lambda k: k,
        lambda k: f"lease:{k}",
        stale=(lambda k: f"stale:{k}", 3600),
    )


def _database_down() -> Organization:
    raise Unavailable("database is down")


def test_readthrough_stale_copy_answers_only_when_the_source_is_unavailable() -> None:
    clock = [0.0]
    backend = MemoryBackend(clock=lambda: clock[0])
    cache, sink = _cache(backend)
    region = _stale_region(cache)
    region.get_or_create("k", lambda: ORG)
    clock[0] = 100.0  # the fresh entry (60 s) expired, the stale copy (3600 s) did not

    served = region.get_or_create("k", _database_down)
    again = region.get_or_create("k", _database_down)

    assert served == again == ORG
    assert sink.counts == {"OrgCacheMiss": 3, "OrgCacheStaleServed": 2}
    assert backend.get("k") is None  # a stale answer never becomes a fresh value
    assert backend.get("lease:k") is None


def test_readthrough_without_a_stale_copy_the_outage_is_raised() -> None:
    cache, sink = _cache(MemoryBackend())

    with pytest.raises(Unavailable):
        _stale_region(cache).get_or_create("k", _database_down)

    assert sink.counts == {"OrgCacheMiss": 1}


def test_readthrough_other_failures_are_never_answered_from_the_stale_copy() -> None:
    clock = [0.0]
    cache, _ = _cache(MemoryBackend(clock=lambda: clock[0]))
    region = _stale_region(cache)
    region.get_or_create("k", lambda: ORG)
    clock[0] = 100.0

    def bug() -> Organization:
        raise KeyError("a bug, not an outage")

    with pytest.raises(KeyError):
        region.get_or_create("k", bug)


def test_readthrough_invalidate_deletes_the_stale_copy_too() -> None:
    backend = MemoryBackend()
    cache, _ = _cache(backend)
    region = _stale_region(cache)
    region.get_or_create("k", lambda: ORG)
    assert backend.get("stale:k") is not None

    region.invalidate("k")

    assert backend.get("k") is None and backend.get("stale:k") is None


class CountingCodec:
    """Organization's codec, counting how often a stored value is decoded."""

    def __init__(self) -> None:
        self.decoded = 0

    def to_json(self, value: Organization) -> dict[str, Any]:
        return value.to_json()

    def from_json(self, data: dict[str, Any]) -> Organization:
        self.decoded += 1
        return Organization.from_json(data)


def _counting_region(cache: ReadThroughCache, codec: CountingCodec) -> CacheRegion[Organization]:
    return cache.region(Cache.ORG, codec, 60, lambda k: k, lambda k: f"lease:{k}")


def test_readthrough_unchanged_entry_is_decoded_once_per_region() -> None:
    backend = MemoryBackend()
    codec = CountingCodec()
    cache, sink = _cache(backend)
    region = _counting_region(cache, codec)
    region.get_or_create("k", lambda: ORG)  # miss: filled, nothing decoded

    hits = [region.get_or_create("k", lambda: None) for _ in range(3)]

    assert hits == [ORG, ORG, ORG] and hits[0] is hits[1] is hits[2]
    assert codec.decoded == 1
    assert sink.counts == {"OrgCacheMiss": 1, "OrgCacheHit": 3}


def test_readthrough_entry_changed_elsewhere_is_decoded_again() -> None:
    backend = MemoryBackend()
    codec = CountingCodec()
    here, _ = _cache(backend)
    elsewhere, _ = _cache(backend)  # another container on the same Redis
    region = _counting_region(here, codec)
    region.get_or_create("k", lambda: ORG)
    region.get_or_create("k", lambda: None)
    renamed = Organization(ORG.id, "BICI Kitsilano", ORG.phone_number, "1778", {})

    other = _region(elsewhere)
    other.invalidate("k")
    other.get_or_create("k", lambda: renamed)

    assert region.get_or_create("k", lambda: None) == renamed
    assert codec.decoded == 2


def test_readthrough_entry_erased_elsewhere_leaves_no_decoded_copy_here() -> None:
    backend = MemoryBackend()
    here, _ = _cache(backend)
    elsewhere, _ = _cache(backend)
    region = _region(here)
    region.get_or_create("k", lambda: ORG)
    region.get_or_create("k", lambda: None)  # decoded and kept
    _region(elsewhere).invalidate("k")
    loads = []

    value = region.get_or_create("k", lambda: loads.append(1))

    assert value is None and loads == [1]
    # The copy kept in this process goes with the entry (erasure leaves no personal data).
    assert "k" not in region._decoded_last
