"""Redis failures are misses: correct answers, bounded cost, a breaker that closes by itself."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pytest

from devkit.proxy import TcpProxy
from leadlookup.config import DEFAULT_ORGANIZATION_ID, Settings
from leadlookup.container import Runtime
from tests.support.faults import new_phone
from tests.support.redis_servers import free_port

DEFAULT_ORG = DEFAULT_ORGANIZATION_ID
TIMEOUT_MS = 150
COOLDOWN_MS = 300
# Generous: a lookup against a silent Redis must cost about one socket timeout, never the
# seconds redis-py's defaults would spend (5 s per attempt, several attempts).
BOUND_S = 10 * TIMEOUT_MS / 1000


@pytest.fixture
def fragile(
    settings: Settings, redis_proxy: TcpProxy, make_runtime: Callable[..., Runtime]
) -> Runtime:
    """A runtime whose Redis sits behind a fault proxy, with short timeouts and cooldown."""
    return make_runtime(
        dataclasses.replace(
            settings,
            redis_url=redis_proxy.rewrite_url(settings.redis_url or ""),
            redis_timeout_ms=TIMEOUT_MS,
            redis_breaker_cooldown_ms=COOLDOWN_MS,
        )
    )


def test_fail_open_redis_on_a_closed_port_still_answers(
    settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    healthy = make_runtime(settings).service
    broken = make_runtime(
        dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}")
    )
    caller = new_phone()
    expected = healthy.find_or_create_lead(caller, DEFAULT_ORG)

    first = broken.service.find_or_create_lead(caller, DEFAULT_ORG)
    second = broken.service.find_or_create_lead(caller, DEFAULT_ORG)

    assert first == second == expected
    assert broken.cache.breaker.state == "open"
    assert broken.metrics.counts == {"LeadCacheError": 1, "LeadCacheBypass": 1}


def test_fail_open_silent_redis_costs_one_timeout_then_nothing(
    fragile: Runtime, redis_proxy: TcpProxy
) -> None:
    caller = new_phone()
    expected = fragile.service.find_or_create_lead(caller, DEFAULT_ORG)
    redis_proxy.set_mode("blackhole")
    redis_proxy.reset_counters()

    started = time.monotonic()
    during = fragile.service.find_or_create_lead(caller, DEFAULT_ORG)
    first_cost = time.monotonic() - started
    connections_after_first = redis_proxy.connections
    after = [fragile.service.find_or_create_lead(caller, DEFAULT_ORG) for _ in range(5)]

    assert during == expected and all(lead == expected for lead in after)
    assert first_cost < BOUND_S
    assert fragile.cache.breaker.state == "open"
    # While the breaker is open not one more byte goes to Redis.
    assert redis_proxy.connections == connections_after_first
    assert redis_proxy.round_trips <= 1
    assert fragile.metrics.counts["LeadCacheError"] == 1
    assert fragile.metrics.counts["LeadCacheBypass"] == 5


def test_fail_open_breaker_closes_by_itself_when_redis_returns(
    fragile: Runtime, redis_proxy: TcpProxy
) -> None:
    caller = new_phone()
    fragile.service.find_or_create_lead(caller, DEFAULT_ORG)
    redis_proxy.set_mode("cut")
    fragile.service.find_or_create_lead(caller, DEFAULT_ORG)
    assert fragile.cache.breaker.state == "open"

    redis_proxy.set_mode("pass")
    time.sleep(COOLDOWN_MS / 1000 + 0.1)
    recovered = fragile.service.find_or_create_lead(caller, DEFAULT_ORG)

    assert fragile.cache.breaker.state == "closed"
    assert recovered.phone_number_normalized == caller.lstrip("+")
    assert fragile.metrics.counts["LeadCacheHit"] == 1


def test_fail_open_failed_invalidation_is_counted_and_the_write_kept(
    fragile: Runtime,
    redis_proxy: TcpProxy,
    settings: Settings,
    make_runtime: Callable[..., Runtime],
) -> None:
    lead = fragile.service.find_or_create_lead(new_phone(), DEFAULT_ORG)
    redis_proxy.set_mode("cut")

    updated = fragile.service.update_lead(lead.id, {"customer_name": "Grace"})

    assert updated.customer_name == "Grace"
    # The lead's write-through and its store's change counter (the staff inbox's ETag).
    assert fragile.metrics.counts["CacheInvalidationFailed"] == 2
    assert make_runtime(settings).service.get_lead(lead.id).customer_name == "Grace"


def test_fail_open_reset_connections_are_misses(fragile: Runtime, redis_proxy: TcpProxy) -> None:
    caller = new_phone()
    expected = fragile.service.find_or_create_lead(caller, DEFAULT_ORG)
    redis_proxy.set_mode("reset")

    during = fragile.service.find_or_create_lead(caller, DEFAULT_ORG)

    assert during == expected
    assert fragile.metrics.counts["LeadCacheError"] == 1
