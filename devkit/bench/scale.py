"""Data scale: lookup latency (lead cached and not) and Redis memory per cached lead as the
leads table grows to each size, seeded in bulk with ``generate_series``."""

from __future__ import annotations

import random
import statistics
import sys
import time
from typing import Any

import redis

from devkit.bench import database
from devkit.bench.events import EventFactory
from devkit.bench.harness import INITIATION, Functions, succeeded
from devkit.bench.helper import Helper
from devkit.bench.paths import measure
from leadlookup import container as runtime_module
from leadlookup.container import Runtime


def run_scale(
    sizes: list[int],
    bench_url: str,
    redis_url: str,
    helper: Helper,
    functions: Functions,
    events: EventFactory,
    runtime: Runtime,
    sample: int,
    fill: int,
    seed: int = 11,
) -> list[dict[str, Any]]:
    """For each size (ascending): grow the table, then measure lookups and cache memory."""
    rng = random.Random(seed)
    service = runtime.service
    org_id = runtime.settings.default_organization_id
    client = redis.Redis.from_url(redis_url, protocol=2, decode_responses=True)
    conn = database.connect(bench_url)
    results: list[dict[str, Any]] = []
    try:
        conn.run("TRUNCATE leads CASCADE")
        service.flush_all()
        runtime_module.set_runtime(runtime)
        present = 0
        for size in sorted(sizes):
            print(f"  scale: {size} leads", file=sys.stderr, flush=True)
            start = time.perf_counter()
            database.seed_leads(conn, size, start=present)
            insert_s = time.perf_counter() - start
            present = size
            picked = rng.sample(range(size), min(sample, size))
            phones = [database.lead_phone(i) for i in picked]
            keys = [service.leads.key(phone[1:], org_id) for phone in phones]

            cold, warm = _lookups(helper, functions, events, runtime, phones)
            usage = [int(client.memory_usage(key, samples=0) or 0) for key in keys]
            values = [int(client.strlen(key)) for key in keys]
            per_lead_info = _info_bytes_per_lead(client, service, org_id, size, picked, fill, rng)
            mean_usage = statistics.fmean(usage) if usage else 0.0
            results.append(
                {
                    "leads": size,
                    **database.table_sizes(conn),
                    "insert_s": round(insert_s, 1),
                    "lookup_not_cached": cold,
                    "lookup_cached": warm,
                    "redis_memory_usage_bytes_per_lead": round(mean_usage, 1),
                    "redis_value_bytes_per_lead": round(statistics.fmean(values), 1)
                    if values
                    else None,
                    "redis_used_memory_delta_bytes_per_lead": per_lead_info,
                    "redis_mb_if_all_cached": round(mean_usage * size / 2**20, 1),
                }
            )
            service.flush_all()
    finally:
        conn.close()
        client.close()
    return results


def _lookups(
    helper: Helper,
    functions: Functions,
    events: EventFactory,
    runtime: Runtime,
    phones: list[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Initiations from ``phones``: first with each lead flushed from the cache, then cached."""
    handler = functions.handler(INITIATION)
    service = runtime.service
    org_id = runtime.settings.default_organization_id

    def call(event: dict[str, Any]) -> bool:
        return succeeded(handler(event, functions.context(INITIATION)))

    cold_phones, warm_phones = iter(phones), iter(phones)

    def cold_event() -> dict[str, Any]:
        phone = next(cold_phones)
        service.flush_lead(phone, org_id)  # untimed: the lead is not cached
        return events.initiation(phone)

    # One untimed request first, so a fresh connection does not count as a lookup.
    call(events.initiation(phones[0]))
    cold = measure(helper, cold_event, call, len(phones), 0).summary()
    warm = measure(
        helper, lambda: events.initiation(next(warm_phones)), call, len(phones), 0
    ).summary()
    return cold, warm


def _info_bytes_per_lead(
    client: redis.Redis,
    service: Any,
    org_id: str,
    size: int,
    picked: list[int],
    fill: int,
    rng: random.Random,
) -> float | None:
    """``INFO memory`` growth per lead while ``fill`` more leads are cached (noisy: the
    server is shared)."""
    taken = set(picked)
    candidates = [
        i for i in rng.sample(range(size), min(size, fill + len(taken))) if i not in taken
    ]
    candidates = candidates[:fill]
    if not candidates:
        return None
    before = int(client.info("memory")["used_memory"])
    for index in candidates:
        service.find_or_create_lead(database.lead_phone(index), org_id)
    after = int(client.info("memory")["used_memory"])
    return round((after - before) / len(candidates), 1)
