"""Lookups against real PostgreSQL and Redis: normalization, read-through, round trips."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from devkit.proxy import TcpProxy
from leadlookup.adapters.cache.readthrough import FORMAT_VERSION
from leadlookup.config import DEFAULT_ORGANIZATION_ID, Settings
from leadlookup.container import Runtime
from leadlookup.domain.models import InboundMessage
from leadlookup.errors import InvalidInput
from leadlookup.usecases.initiation import initiate
from tests.support.db import execute, scalar
from tests.support.faults import new_phone

DEFAULT_ORG = DEFAULT_ORGANIZATION_ID


def test_lookup_phone_formats_find_one_lead(
    settings: Settings, make_runtime: Callable[..., Runtime], database_url: str
) -> None:
    service = make_runtime(settings).service
    phone = "+1 778 555 0142"
    execute(database_url, "DELETE FROM leads WHERE phone_number_normalized = '17785550142'")

    ids = {
        service.find_or_create_lead(raw, DEFAULT_ORG).id
        for raw in ("(778) 555-0142", "778-555-0142", "17785550142", phone)
    }

    assert len(ids) == 1
    rows = scalar(
        database_url,
        "SELECT count(*) FROM leads WHERE phone_number_normalized = '17785550142'",
    )
    assert rows == 1


@pytest.mark.parametrize("raw", ["anonymous", "+266696687", "client:web-123", "12345"])
def test_lookup_non_numbers_create_no_lead(
    raw: str, settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    service = make_runtime(settings).service

    with pytest.raises(InvalidInput):
        service.find_or_create_lead(raw, DEFAULT_ORG)


def test_lookup_organization_in_legacy_format_is_found(
    settings: Settings, make_runtime: Callable[..., Runtime], database_url: str
) -> None:
    org_id = str(uuid.uuid4())
    # A legacy row: dashes and no country code in phone_number, and a normalized column that
    # an old importer filled without the country code either.
    execute(
        database_url,
        "INSERT INTO organizations (id, name, phone_number, phone_number_normalized) "
        "VALUES (:id, 'Legacy Cycles', '403-555-0177', '4035550177')",
        id=org_id,
    )
    service = make_runtime(settings).service

    org = service.get_organization_by_phone("+14035550177")

    assert (org.id, org.name) == (org_id, "Legacy Cycles")


def test_lookup_unknown_or_missing_number_gets_the_default_organization(
    settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    service = make_runtime(settings).service

    unknown = service.get_organization_by_phone("+18005550100")
    missing = service.get_organization_by_phone(None)

    assert unknown.id == missing.id == DEFAULT_ORG
    assert unknown.name == "BICI Bike Store"


def test_lookup_warm_known_lead_costs_no_database_and_one_redis_round_trip(
    counted: Runtime, pg_proxy: TcpProxy, redis_proxy: TcpProxy
) -> None:
    caller = new_phone()
    first = counted.service.find_or_create_lead(caller, DEFAULT_ORG)
    pg_proxy.reset_counters()
    redis_proxy.reset_counters()

    warm = counted.service.find_or_create_lead(caller, DEFAULT_ORG)

    assert warm == first
    assert pg_proxy.round_trips == 0
    assert redis_proxy.round_trips <= 1
    assert counted.metrics.counts.get("LeadCacheHit") == 1


def test_lookup_new_caller_costs_one_database_round_trip(
    counted: Runtime, pg_proxy: TcpProxy
) -> None:
    counted.service.find_or_create_lead(new_phone(), DEFAULT_ORG)  # connect outside the count
    pg_proxy.reset_counters()

    lead = counted.service.find_or_create_lead(new_phone(), DEFAULT_ORG)

    assert lead.status == "new" and lead.interaction_count == 0
    assert pg_proxy.round_trips == 1


def test_lookup_each_statement_is_one_round_trip(counted: Runtime, pg_proxy: TcpProxy) -> None:
    counted.db.query("SELECT 1")
    pg_proxy.reset_counters()

    counted.db.query("SELECT :a::int + :b::int AS total", {"a": 1, "b": 2})

    assert pg_proxy.round_trips == 1


def test_lookup_with_redis_disabled_gives_identical_answers_and_sends_nothing(
    settings: Settings,
    make_runtime: Callable[..., Runtime],
    pg_proxy: TcpProxy,
    redis_proxy: TcpProxy,
) -> None:
    caller = new_phone()
    cached = make_runtime(settings).service
    disabled = make_runtime(
        dataclasses.replace(
            settings,
            redis_enabled=False,
            redis_url=redis_proxy.rewrite_url(settings.redis_url or ""),
        )
    )
    expected_lead = cached.find_or_create_lead(caller, DEFAULT_ORG)
    expected_org = cached.get_organization_by_phone("+17786528784")

    lead = disabled.service.find_or_create_lead(caller, DEFAULT_ORG)
    org = disabled.service.get_organization_by_phone("+17786528784")

    assert (lead, org) == (expected_lead, expected_org)
    assert redis_proxy.connections == 0 and redis_proxy.round_trips == 0
    assert disabled.metrics.counts == {"LeadCacheBypass": 1, "OrgCacheBypass": 1}


def test_lookup_organization_is_held_in_process(counted: Runtime, redis_proxy: TcpProxy) -> None:
    counted.service.get_organization_by_phone("+17786528784")
    redis_proxy.reset_counters()

    org = counted.service.get_organization_by_phone("+17786528784")

    assert org.id == DEFAULT_ORG
    assert redis_proxy.round_trips == 0


def test_lookup_update_is_visible_to_the_next_read(
    settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    reader = make_runtime(settings).service
    writer = make_runtime(settings).service
    lead = reader.find_or_create_lead(new_phone(), DEFAULT_ORG)

    writer.update_lead(lead.id, {"customer_name": "Ada"})

    assert reader.find_or_create_lead(lead.phone_number, DEFAULT_ORG).customer_name == "Ada"


def test_lookup_cached_values_carry_a_format_version(
    settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    runtime = make_runtime(settings)
    caller = new_phone()
    lead = runtime.service.find_or_create_lead(caller, DEFAULT_ORG)
    key = runtime.service.leads.key(lead.phone_number_normalized, DEFAULT_ORG)
    backend = runtime.cache.backend
    assert backend is not None
    assert backend.get(key).startswith(f'{{"v":{FORMAT_VERSION},"s":{lead.write_seq},')
    backend.delete(key)
    backend.get_or_lease(key, key + ":l", "t", 1000)
    backend.fill(key, key + ":l", "t", '{"v":0,"data":{"id":"stale"}}', 60)

    again = runtime.service.find_or_create_lead(caller, DEFAULT_ORG)

    assert again.id == lead.id
    assert runtime.metrics.counts["LeadCacheMiss"] == 2


def test_lookup_keys_follow_the_documented_format(
    settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    service = make_runtime(dataclasses.replace(settings, cache_key_prefix="bici:")).service

    key = service.leads.key("17786528784", DEFAULT_ORG)

    assert key == f"bici:lead:{{17786528784}}:{DEFAULT_ORG}"
    assert service.leads.lease_key(key) == f"bici:lease:lead:{{17786528784}}:{DEFAULT_ORG}"
    assert service.orgs.key("17786528784") == "bici:org:{17786528784}"


def test_lookup_ttls_are_jittered_around_the_configured_values(
    settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    runtime = make_runtime(settings)
    import redis

    client = redis.Redis.from_url(settings.redis_url or "")
    ttls = []
    for _ in range(30):
        lead = runtime.service.find_or_create_lead(new_phone(), DEFAULT_ORG)
        ttls.append(
            client.ttl(runtime.service.leads.key(lead.phone_number_normalized, DEFAULT_ORG))
        )
    client.close()

    assert all(270 <= t <= 330 for t in ttls)
    assert len(set(ttls)) > 1


@pytest.mark.parametrize("write", ["patch", "sms", "stop"])
def test_lookup_initiation_after_a_write_costs_no_database_round_trip_and_shows_it(
    write: str,
    settings: Settings,
    counted: Runtime,
    make_runtime: Callable[..., Runtime],
    pg_proxy: TcpProxy,
    redis_proxy: TcpProxy,
) -> None:
    caller = new_phone()
    request = {"caller_id": caller, "called_number": "+17786528784"}
    writer = make_runtime(settings).service  # another container
    initiate(counted.service, request, datetime.now(UTC), 1500)  # the caller is known and cached
    lead = writer.find_or_create_lead(caller, DEFAULT_ORG)
    if write == "patch":
        writer.update_lead(lead.id, {"customer_name": "Ada", "bike_interest": {"type": "gravel"}})
    else:
        message = InboundMessage(
            f"SM{uuid.uuid4().hex}",
            caller,
            "+17786528784",
            "STOP" if write == "stop" else "Ada here",
            {},
            opt_change="out" if write == "stop" else None,
        )
        writer.record_inbound_message(message, DEFAULT_ORG, lead)
    committed = writer.get_lead(lead.id)
    pg_proxy.reset_counters()
    redis_proxy.reset_counters()

    body, degraded = initiate(counted.service, request, datetime.now(UTC), 1500)

    assert pg_proxy.round_trips == 0
    assert redis_proxy.round_trips == 1
    assert not degraded
    variables = body["dynamic_variables"]
    assert variables["lead_id"] == lead.id
    if write == "patch":
        assert (variables["customer_name"], variables["bike_interest"]) == ("Ada", "gravel")
    cached = counted.service.leads.peek(counted.service.leads.key(caller[1:], DEFAULT_ORG))
    assert cached == committed  # last_contact_at, opted_out_at and write_seq included
    if write == "stop":
        assert cached is not None and cached.opted_out_at is not None
