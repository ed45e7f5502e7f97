"""Races: concurrent first contacts, stale sets after updates, and single flight."""

from __future__ import annotations

import dataclasses
import multiprocessing
import random
import threading
from collections.abc import Callable
from typing import Any

from leadlookup.models import Lead
from leadlookup.observability import RecordingMetricSink
from leadlookup.runtime import Runtime, build_runtime
from leadlookup.settings import DEFAULT_ORGANIZATION_ID, Settings
from tests.support.db import scalar
from tests.support.faults import new_phone

DEFAULT_ORG = DEFAULT_ORGANIZATION_ID


def _first_contact(settings: Settings, caller: str, start: Any, results: Any) -> None:
    # A separate process, like a separate Lambda container: its own connections.
    runtime = build_runtime(settings, metrics=RecordingMetricSink())
    start.wait(timeout=30)
    try:
        results.put(runtime.service.find_or_create_lead(caller, DEFAULT_ORG).id)
    except Exception as exc:  # reported to the test, which fails on it
        results.put(f"error: {type(exc).__name__}: {exc}")
    finally:
        runtime.db.close()


def test_concurrent_first_contacts_from_processes_make_one_lead(
    settings: Settings, database_url: str
) -> None:
    caller = "+16045550123"
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    workers = [
        context.Process(target=_first_contact, args=(settings, caller, start, results))
        for _ in range(50)
    ]
    for worker in workers:
        worker.start()

    start.set()
    ids = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)

    assert len(ids) == 50
    assert len(set(ids)) == 1, ids
    count = scalar(
        database_url, "SELECT count(*) FROM leads WHERE phone_number_normalized = '16045550123'"
    )
    assert count == 1


def test_no_stale_set_when_an_update_lands_during_a_slow_load(
    settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    reader = make_runtime(settings)
    writer = make_runtime(settings)
    caller = new_phone()
    lead = writer.service.find_or_create_lead(caller, DEFAULT_ORG)
    writer.service.invalidate_lead(lead.phone_number_normalized, DEFAULT_ORG)
    key = reader.service.leads.key(lead.phone_number_normalized, DEFAULT_ORG)
    loaded_old_row = threading.Event()
    update_returned = threading.Event()

    def slow_load() -> Lead | None:
        old = reader.service.repo.find_lead(DEFAULT_ORG, lead.phone_number_normalized)
        loaded_old_row.set()
        update_returned.wait(timeout=10)
        return old

    result: list[Lead | None] = []
    thread = threading.Thread(
        target=lambda: result.append(reader.service.leads.get_or_create(key, slow_load))
    )
    thread.start()
    assert loaded_old_row.wait(timeout=10)

    writer.service.update_lead(lead.id, {"customer_name": "New Name"})
    update_returned.set()
    thread.join(timeout=10)

    assert result[0] is not None and result[0].customer_name is None  # it did load the old row
    assert reader.service.leads.peek(key) is None  # ...but could not write it into the cache
    fresh = make_runtime(settings).service.find_or_create_lead(caller, DEFAULT_ORG)
    assert fresh.customer_name == "New Name"


def test_no_stale_reads_after_update_returns_in_a_randomized_run(
    settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    caller = new_phone()
    writer = make_runtime(settings)
    checker = make_runtime(settings)
    lead = writer.service.find_or_create_lead(caller, DEFAULT_ORG)
    readers = [make_runtime(settings) for _ in range(3)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def read_forever(runtime: Runtime) -> None:
        rng = random.Random()
        while not stop.is_set():
            try:
                runtime.service.find_or_create_lead(caller, DEFAULT_ORG)
                if rng.random() < 0.3:
                    runtime.service.invalidate_lead(lead.phone_number_normalized, DEFAULT_ORG)
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=read_forever, args=(r,)) for r in readers]
    for thread in threads:
        thread.start()
    stale = 0
    try:
        for cycle in range(1000):
            writer.service.update_lead(lead.id, {"notes": f"cycle {cycle}"})
            if checker.service.find_or_create_lead(caller, DEFAULT_ORG).notes != f"cycle {cycle}":
                stale += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)

    assert not errors
    assert stale == 0
    total = sum(r.metrics.counts.get("LeadCacheHit", 0) for r in [checker, *readers])
    assert total > 0  # the cache really served reads during the run


def test_single_flight_twenty_concurrent_misses_load_once(
    settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    caller = new_phone()
    make_runtime(settings).service.find_or_create_lead(caller, DEFAULT_ORG)
    # Waiters give up after cache_wait_ms and read the database themselves; on a loaded CI
    # machine the holder's load can take longer than the default, so allow plenty here.
    patient = dataclasses.replace(settings, cache_wait_ms=10_000)
    runtimes = [make_runtime(patient) for _ in range(20)]
    runtimes[0].service.invalidate_lead(caller.lstrip("+"), DEFAULT_ORG)
    loads = []
    barrier = threading.Barrier(20)

    for runtime in runtimes:
        original = runtime.service.repo.find_or_create_lead

        def counting_find(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            loads.append(1)
            threading.Event().wait(0.05)  # a slow database widens the race window
            return _original(*args, **kwargs)

        runtime.service.repo.find_or_create_lead = counting_find  # type: ignore[method-assign]

    def lookup(runtime: Runtime) -> str:
        barrier.wait(timeout=10)
        return runtime.service.find_or_create_lead(caller, DEFAULT_ORG).id

    results: list[str] = []
    threads = [threading.Thread(target=lambda r=r: results.append(lookup(r))) for r in runtimes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert len(results) == 20 and len(set(results)) == 1
    assert len(loads) == 1
    hits = sum(r.metrics.counts.get("LeadCacheHit", 0) for r in runtimes)
    assert hits == 19
