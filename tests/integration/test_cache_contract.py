"""One cache-backend contract, run against the in-memory fake, a real Redis, a Redis Cluster
and a TLS-only Redis with an RBAC user."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadlookup.adapters.cache import CacheKeys, LeaseState
from leadlookup.adapters.cache.base import CacheBackend
from leadlookup.adapters.cache.memory import MemoryBackend
from leadlookup.adapters.cache.readthrough import encode
from leadlookup.adapters.cache.redis_backend import RedisBackend, build_client
from leadlookup.config import Settings
from tests.support.redis_servers import TLS_PASSWORD, TLS_USER, redis_cluster, tls_redis_server


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    with redis_cluster(3) as ports:
        yield ports


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    with tls_redis_server(tmp_path_factory.mktemp("tls-contract")) as server:
        yield server


@pytest.fixture(params=["memory", "redis", "cluster", "tls"])
def backend(request: pytest.FixtureRequest, redis_url: str) -> Iterator[CacheBackend]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    if request.param == "redis":
        settings = Settings(redis_url=redis_url)
    elif request.param == "tls":
        port, ca = request.getfixturevalue("tls_server")
        url = f"rediss://{TLS_USER}:{TLS_PASSWORD}@localhost:{port}?ssl_ca_certs={ca}"
        settings = Settings(redis_url=url)
    else:
        port = request.getfixturevalue("cluster_ports")[0]
        settings = Settings(redis_url=f"redis://127.0.0.1:{port}", redis_cluster=True)
    redis_backend = RedisBackend(lambda: build_client(settings))
    yield redis_backend
    redis_backend.reset()


@pytest.fixture
def keys() -> CacheKeys:
    return CacheKeys(prefix=f"c{uuid.uuid4().hex[:8]}:")


def test_backend_get_of_missing_key_is_none(backend: CacheBackend, keys: CacheKeys) -> None:
    assert backend.get(keys.lead("16045550142", "org")) is None


def test_backend_first_miss_gets_the_lease_and_second_waits(
    backend: CacheBackend, keys: CacheKeys
) -> None:
    key = keys.lead("16045550142", "org")

    first = backend.get_or_lease(key, keys.lease(key), "token-a", 5000)
    second = backend.get_or_lease(key, keys.lease(key), "token-b", 5000)

    assert first.state is LeaseState.GRANTED
    assert second.state is LeaseState.HELD


def test_backend_lease_holder_fills_and_readers_hit(backend: CacheBackend, keys: CacheKeys) -> None:
    key = keys.org("17786528784")
    backend.get_or_lease(key, keys.lease(key), "token-a", 5000)

    stored = backend.fill(key, keys.lease(key), "token-a", '{"v":1}', 60)

    assert stored is True
    assert backend.get(key) == '{"v":1}'
    hit = backend.get_or_lease(key, keys.lease(key), "token-b", 5000)
    assert (hit.state, hit.value) == (LeaseState.HIT, '{"v":1}')


def test_backend_fill_with_a_stale_token_is_refused(backend: CacheBackend, keys: CacheKeys) -> None:
    key = keys.lead("16045550142", "org")
    backend.get_or_lease(key, keys.lease(key), "token-a", 5000)

    stored = backend.fill(key, keys.lease(key), "token-other", "old", 60)

    assert stored is False
    assert backend.get(key) is None


def test_backend_invalidation_voids_an_outstanding_lease(
    backend: CacheBackend, keys: CacheKeys
) -> None:
    key = keys.lead("16045550142", "org")
    backend.get_or_lease(key, keys.lease(key), "reader", 5000)

    backend.delete(key, keys.lease(key))
    stored = backend.fill(key, keys.lease(key), "reader", "old row", 60)

    assert stored is False
    assert backend.get(key) is None


def test_backend_fill_without_value_releases_the_lease(
    backend: CacheBackend, keys: CacheKeys
) -> None:
    key = keys.lead("16045550142", "org")
    backend.get_or_lease(key, keys.lease(key), "token-a", 5000)

    backend.fill(key, keys.lease(key), "token-a", None, 60)

    assert backend.get_or_lease(key, keys.lease(key), "token-b", 5000).state is LeaseState.GRANTED


def test_backend_lease_expires_by_itself(backend: CacheBackend, keys: CacheKeys) -> None:
    key = keys.lead("16045550142", "org")
    backend.get_or_lease(key, keys.lease(key), "crashed-loader", 50)

    time.sleep(0.15)

    assert backend.get_or_lease(key, keys.lease(key), "next", 5000).state is LeaseState.GRANTED


def test_backend_value_expires_after_its_ttl(backend: CacheBackend, keys: CacheKeys) -> None:
    key = keys.org("17786528784")
    backend.get_or_lease(key, keys.lease(key), "t", 5000)
    backend.fill(key, keys.lease(key), "t", "value", 1)

    time.sleep(1.2)

    assert backend.get(key) is None


def test_backend_delete_prefix_removes_only_that_prefix_on_every_node(
    backend: CacheBackend, keys: CacheKeys
) -> None:
    other = CacheKeys(prefix=f"o{uuid.uuid4().hex[:8]}:")
    # Many hash tags, so on a cluster the keys land on every node.
    for n in range(40):
        for k in (keys, other):
            key = k.org(f"1604555{n:04d}")
            backend.get_or_lease(key, k.lease(key), "t", 5000)
            backend.fill(key, k.lease(key), "t", "value", 60)

    removed = backend.delete_prefix(keys.prefix)

    assert removed == 40
    assert backend.get(keys.org("16045550007")) is None
    assert backend.get(other.org("16045550007")) == "value"
    backend.delete_prefix(other.prefix)


def _reads(info: dict[str, Any]) -> tuple[int, int]:
    """(keyspace hits, misses) of a Redis or Redis Cluster INFO summary."""
    nodes = info["nodes"].values() if "nodes" in info else [info]
    return sum(n["keyspace_hits"] for n in nodes), sum(n["keyspace_misses"] for n in nodes)


def test_backend_info_reflects_what_the_server_did(backend: CacheBackend, keys: CacheKeys) -> None:
    before = backend.info()
    key = keys.lead("16045550142", "org")
    _cached(backend, keys, key, "v")

    assert backend.get(key) == "v" and backend.get(keys.lead("16045550143", "org")) is None
    after = backend.info()

    assert before["connected"] is True and after["connected"] is True
    if isinstance(backend, MemoryBackend):
        assert after["keys"] == before["keys"] + 1
    else:
        # At least our hit and our miss (a shared server also counts other clients' reads).
        (hits_before, misses_before), (hits, misses) = _reads(before), _reads(after)
        assert hits >= hits_before + 1 and misses >= misses_before + 1


def _cached(backend: CacheBackend, keys: CacheKeys, key: str, value: str) -> None:
    backend.get_or_lease(key, keys.lease(key), "t", 5000)
    backend.fill(key, keys.lease(key), "t", value, 60)


def test_backend_write_replaces_an_older_value(backend: CacheBackend, keys: CacheKeys) -> None:
    key = keys.lead("16045550142", "org")
    _cached(backend, keys, key, encode({"notes": "old"}, seq=5))

    stored = backend.write(key, keys.lease(key), encode({"notes": "new"}, seq=6), 60)

    assert stored is True
    assert backend.get(key) == encode({"notes": "new"}, seq=6)


def test_backend_write_never_replaces_a_newer_or_equal_value(
    backend: CacheBackend, keys: CacheKeys
) -> None:
    key = keys.lead("16045550142", "org")
    _cached(backend, keys, key, encode({"notes": "newer"}, seq=9))

    older = backend.write(key, keys.lease(key), encode({"notes": "older"}, seq=8), 60)
    equal = backend.write(key, keys.lease(key), encode({"notes": "same"}, seq=9), 60)

    assert (older, equal) == (False, False)
    assert backend.get(key) == encode({"notes": "newer"}, seq=9)


def test_backend_write_of_an_absent_key_stores_nothing_and_voids_a_readers_lease(
    backend: CacheBackend, keys: CacheKeys
) -> None:
    key = keys.lead("16045550142", "org")
    backend.get_or_lease(key, keys.lease(key), "reader", 5000)  # a reader loading the old row

    stored = backend.write(key, keys.lease(key), encode({"notes": "new"}, seq=3), 60)
    filled = backend.fill(key, keys.lease(key), "reader", encode({"notes": "old"}, seq=2), 60)

    assert (stored, filled) == (False, False)
    assert backend.get(key) is None and backend.get(keys.lease(key)) is None


def test_backend_write_replaces_a_value_of_an_older_format(
    backend: CacheBackend, keys: CacheKeys
) -> None:
    key = keys.lead("16045550142", "org")
    _cached(backend, keys, key, '{"v":1,"data":{"notes":"v1"}}')

    stored = backend.write(key, keys.lease(key), encode({"notes": "v2"}, seq=1), 60)

    assert stored is True and backend.get(key) == encode({"notes": "v2"}, seq=1)


def test_backend_fill_keeps_a_stale_copy_that_a_miss_hands_back(
    backend: CacheBackend, keys: CacheKeys
) -> None:
    key = keys.lead("16045550142", "org")
    stale = keys.stale(key)
    backend.get_or_lease(key, keys.lease(key), "t", 5000, stale)
    backend.fill(key, keys.lease(key), "t", encode({"n": 1}, seq=4), 1, (stale, 60))

    time.sleep(1.2)  # the value expired; its stale copy has not
    miss = backend.get_or_lease(key, keys.lease(key), "u", 5000, stale)
    held = backend.get_or_lease(key, keys.lease(key), "w", 5000, stale)

    assert (miss.state, miss.stale) == (LeaseState.GRANTED, encode({"n": 1}, seq=4))
    assert (held.state, held.stale) == (LeaseState.HELD, encode({"n": 1}, seq=4))
    assert backend.get_or_lease(keys.org("1"), keys.lease(keys.org("1")), "x", 50).stale is None


def test_backend_write_replaces_a_held_stale_copy_and_orders_by_it(
    backend: CacheBackend, keys: CacheKeys
) -> None:
    key = keys.lead("16045550142", "org")
    stale = keys.stale(key)
    backend.get_or_lease(key, keys.lease(key), "t", 5000, stale)
    backend.fill(key, keys.lease(key), "t", encode({"n": 1}, seq=4), 60, (stale, 60))
    backend.delete(key)  # as if expired: only the stale copy is held

    older = backend.write(key, keys.lease(key), encode({"n": 0}, seq=3), 60, (stale, 60))
    newer = backend.write(key, keys.lease(key), encode({"n": 2}, seq=5), 60, (stale, 60))

    assert (older, newer) == (False, True)
    assert backend.get(key) == backend.get(stale) == encode({"n": 2}, seq=5)
