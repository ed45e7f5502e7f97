"""Load: N forked workers, each a warm container with its own connections, for a bounded
time; Zipf-distributed callers over M leads; a mix of initiations, SMS and lead updates."""

from __future__ import annotations

import itertools
import multiprocessing
import random
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devkit.bench.database import lead_phone
from devkit.bench.events import EventFactory
from devkit.bench.harness import (
    INITIATION,
    LEAD_UPDATE,
    SMS_PROCESSOR,
    Functions,
    install_runtime,
    succeeded,
)
from devkit.bench.stats import latency_summary, percentile
from leadlookup import container as runtime_module

OPS = ("initiation", "sms", "update")
_FUNCTION = {"initiation": INITIATION, "sms": SMS_PROCESSOR, "update": LEAD_UPDATE}
_LEAD_HIT, _LEAD_MISS, _LEAD_ERROR = "LeadCacheHit", "LeadCacheMiss", "LeadCacheError"
# Operations that read the lead through the cache (a PATCH reads the database row itself).
_CACHED_READS = ("initiation", "sms")
# A lead untouched for longer than the shortest jittered TTL may have expired.
_TTL_FLOOR = 0.9
_ORG_HIT, _ORG_MISS = "OrgCacheHit", "OrgCacheMiss"


@dataclass(frozen=True)
class LoadSpec:
    """One load run's shape."""

    name: str
    workers: int
    duration_s: float
    leads: int
    zipf_s: float
    mix: tuple[float, float, float]
    warmup_s: float
    seed: int = 7
    lead_ttl_s: float = 300.0


# (start s, end s, op index, lead index, latency ms, ok,
#  lead hits, lead misses, org hits, org misses, lead errors)
Record = tuple[float, float, int, int, float, bool, int, int, int, int, int]


def _worker(
    index: int,
    spec: LoadSpec,
    env: Mapping[str, str],
    lead_ids: Sequence[str],
    ranks: Sequence[int],
    cum_weights: Sequence[float],
    functions: Functions,
    start_at: float,
    conn: Any,
) -> None:
    records: list[Record] = []
    try:
        _runtime, sink = install_runtime(env)
        counts = sink.counts
        events = EventFactory()
        rng = random.Random(spec.seed * 1000 + index)
        handlers = {op: functions.handler(fn) for op, fn in _FUNCTION.items()}
        population = range(spec.leads)
        deadline = start_at + spec.duration_s
        while time.monotonic() < start_at:
            time.sleep(0.001)
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            op = rng.choices(range(3), weights=spec.mix)[0]
            lead = ranks[rng.choices(population, cum_weights=cum_weights)[0]]
            name = OPS[op]
            if name == "initiation":
                event = events.initiation(lead_phone(lead))
            elif name == "sms":
                event = events.sqs_batch([lead_phone(lead)])
            else:
                event = events.patch(lead_ids[lead])
            context = functions.context(_FUNCTION[name])
            before = (
                counts.get(_LEAD_HIT, 0),
                counts.get(_LEAD_MISS, 0),
                counts.get(_ORG_HIT, 0),
                counts.get(_ORG_MISS, 0),
                counts.get(_LEAD_ERROR, 0),
            )
            started = time.monotonic()
            t0 = time.perf_counter_ns()
            try:
                ok = succeeded(handlers[name](event, context))
            except Exception:
                ok = False
            elapsed = (time.perf_counter_ns() - t0) / 1e6
            records.append(
                (
                    started - start_at,
                    time.monotonic() - start_at,
                    op,
                    lead,
                    elapsed,
                    ok,
                    counts.get(_LEAD_HIT, 0) - before[0],
                    counts.get(_LEAD_MISS, 0) - before[1],
                    counts.get(_ORG_HIT, 0) - before[2],
                    counts.get(_ORG_MISS, 0) - before[3],
                    counts.get(_LEAD_ERROR, 0) - before[4],
                )
            )
    finally:
        runtime_module.set_runtime(None)
        conn.send(records)
        conn.close()


def run_load(
    spec: LoadSpec,
    functions: Functions,
    env: Mapping[str, str],
    lead_ids: Sequence[str],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the load; (summary, per-second series)."""
    functions.load(*_FUNCTION.values())
    # Forked workers must not share this process's connections: drop them first.
    runtime_module.set_runtime(None)
    rng = random.Random(spec.seed)
    ranks = list(range(spec.leads))
    rng.shuffle(ranks)  # the hottest callers are spread over the table, not its first rows
    cum_weights = list(itertools.accumulate(1 / (k**spec.zipf_s) for k in range(1, spec.leads + 1)))
    ctx = multiprocessing.get_context("fork")
    start_at = time.monotonic() + 0.5 + 0.1 * spec.workers
    pipes, procs = [], []
    for index in range(spec.workers):
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_worker,
            args=(index, spec, env, lead_ids, ranks, cum_weights, functions, start_at, sender),
        )
        proc.start()
        sender.close()
        pipes.append(receiver)
        procs.append(proc)
    records: list[Record] = []
    for receiver in pipes:
        records.extend(receiver.recv())
    for proc in procs:
        proc.join()
    print(f"  load {spec.name}: {len(records)} requests", file=sys.stderr, flush=True)
    return summarize(spec, records)


def summarize(spec: LoadSpec, records: list[Record]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Throughput, latency, hit rates (overall, after warm-up, per second) and miss causes."""
    records.sort(key=lambda r: r[0])
    duration = spec.duration_s
    seconds = max(1, int(duration + 0.999))
    buckets: list[dict[str, int]] = [defaultdict(int) for _ in range(seconds + 1)]
    for r in records:
        b = buckets[min(int(r[1]), seconds)]
        b["requests"] += 1
        b["errors"] += 0 if r[5] else 1
        b["lead_hits"] += r[6]
        b["lead_misses"] += r[7]
    series = [
        {
            "second": i,
            "requests": b["requests"],
            "errors": b["errors"],
            "lead_hits": b["lead_hits"],
            "lead_misses": b["lead_misses"],
            "lead_hit_rate": _rate(b["lead_hits"], b["lead_misses"]),
        }
        for i, b in enumerate(buckets[:seconds])
    ]
    after = [r for r in records if r[0] >= spec.warmup_s]
    per_op = {}
    for op_index, op in enumerate(OPS):
        ms = [r[4] for r in records if r[2] == op_index]
        per_op[op] = {
            **latency_summary(ms),
            "errors": sum(1 for r in records if r[2] == op_index and not r[5]),
        }
    all_ms = [r[4] for r in records]
    lead_hits = sum(r[6] for r in records)
    lead_misses = sum(r[7] for r in records)
    org_hits = sum(r[8] for r in records)
    org_misses = sum(r[9] for r in records)
    causes = miss_causes(records, spec.warmup_s, spec.lead_ttl_s)
    hits_after = sum(r[6] for r in after)
    summary = {
        "name": spec.name,
        "workers": spec.workers,
        "duration_s": duration,
        "warmup_s": spec.warmup_s,
        "leads": spec.leads,
        "zipf_s": spec.zipf_s,
        "mix": dict(zip(OPS, spec.mix, strict=True)),
        "requests": len(records),
        "throughput_rps": round(len(records) / duration, 1),
        "p50_ms": round(percentile(all_ms, 50), 3) if all_ms else None,
        "p99_ms": round(percentile(all_ms, 99), 3) if all_ms else None,
        "errors": sum(1 for r in records if not r[5]),
        "per_op": per_op,
        "lead_hit_rate": _rate(lead_hits, lead_misses),
        "lead_hit_rate_after_warmup": _rate(hits_after, sum(r[7] for r in after)),
        # Compulsory misses (a lead's first lookup in the run) left out: what repeat lookups get.
        "lead_hit_rate_after_warmup_repeat_lookups": _rate(
            hits_after, sum(n for cause, n in causes.items() if cause != "first_touch")
        ),
        "org_hit_rate": _rate(org_hits, org_misses),
        "db_lookups_avoided": {"lead": lead_hits, "organization": org_hits},
        "db_lookups_made": {"lead": lead_misses, "organization": org_misses},
        "lead_misses_after_warmup_by_cause": causes,
        "distinct_leads": len({r[3] for r in records}),
    }
    return summary, series


def miss_causes(
    records: Sequence[Record], warmup_s: float, lead_ttl_s: float = 300.0
) -> dict[str, int]:
    """Why lead lookups after warm-up went to the database, one class per miss.

    - ``first_touch``: no earlier request read this lead through the cache;
    - ``error``: Redis failed (counted ``LeadCacheError``; the lookup read the database);
    - ``expired``: the lead was untouched for longer than its shortest jittered TTL;
    - ``after_write``: the previous request of this lead was a write (SMS or PATCH);
    - ``other``: none of these (a concurrent miss that waited past the lease, an eviction).

    Requests are replayed in start order (across workers), so the classification is
    approximate where two requests for one lead overlapped.
    """
    last_write: dict[int, bool] = {}
    last_touch: dict[int, float] = {}
    read_before: set[int] = set()
    causes = {"first_touch": 0, "after_write": 0, "expired": 0, "error": 0, "other": 0}
    for r in records:
        start, op, lead, misses, errors = r[0], OPS[r[2]], r[3], r[7], r[10]
        if (misses or errors) and start >= warmup_s:
            if lead not in read_before:
                cause = "first_touch"
            elif errors:
                cause = "error"
            elif start - last_touch[lead] > lead_ttl_s * _TTL_FLOOR:
                cause = "expired"
            elif last_write.get(lead):
                cause = "after_write"
            else:
                cause = "other"
            causes[cause] += misses + errors
        if op in _CACHED_READS:
            read_before.add(lead)
        last_write[lead] = op in ("sms", "update")
        last_touch[lead] = start
    return causes


def _rate(hits: int, misses: int) -> float | None:
    return round(hits / (hits + misses), 4) if hits + misses else None
