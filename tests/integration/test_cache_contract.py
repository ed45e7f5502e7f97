"""One cache-backend contract, run against the in-memory fake, a real Redis and a Redis Cluster."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from leadlookup.cache import CacheKeys, LeaseState
from leadlookup.cache.base import CacheBackend
from leadlookup.cache.memory import MemoryBackend
from leadlookup.cache.redis_backend import RedisBackend, build_client
from leadlookup.settings import Settings
from tests.support.redis_servers import redis_cluster


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    with redis_cluster(3) as ports:
        yield ports


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend(request: pytest.FixtureRequest, redis_url: str) -> Iterator[CacheBackend]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    if request.param == "redis":
        settings = Settings(redis_url=redis_url)
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


def test_backend_info_reports_a_connected_server(backend: CacheBackend) -> None:
    assert backend.info()["connected"] is True
