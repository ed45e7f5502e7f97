"""Per-path latency and counted round trips, with the floors, under each network condition."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pg8000.native
import redis

from devkit.bench.database import INBOX_STORE_ID
from devkit.bench.events import EventFactory
from devkit.bench.harness import (
    INITIATION,
    LEAD_UPDATE,
    SMS_PROCESSOR,
    SMS_WEBHOOK,
    Functions,
    succeeded,
)
from devkit.bench.helper import Counts, Helper
from devkit.bench.stats import count_summary, latency_summary, percentile, ratio
from devkit.services import pg_connect_args
from leadlookup import container as runtime_module
from leadlookup.container import Runtime
from leadlookup.domain.access import StaffMember

KNOWN_CALLER = "+16045550142"  # the sample event's caller
SMS_SENDER = "+12505550112"  # the sample SMS sender
PATCHED_CALLER = "+16045550177"
# New callers are +1 250 200 0000 + n: valid numbers no seeded lead uses.
NEW_CALLER_BASE = 12502000000
# The warm path's GET, timed inside the request: the warm answer's one Redis round trip as it
# happens there. Back to back, a GET finds Redis and the proxy still running and costs least;
# a request's GET comes after the work before it, when their idle CPUs must wake first, and
# costs up to 2-3x as much on this kind of machine (BENCHMARKS.md, "Two floors"). The warm
# path's ratio is judged against the GET it contains, so the ratio is the cost of the rest.
IN_REQUEST_FLOOR = "redis_get_in_request"
IN_REQUEST_PATH = "initiation_warm"


@dataclass(frozen=True)
class Condition:
    """Network distances the proxies add per round trip."""

    name: str
    label: str
    pg_ms: float
    redis_ms: float
    requests: int

    @property
    def short(self) -> str:
        """A chart title: the two distances."""
        if not self.pg_ms and not self.redis_ms:
            return "loopback (proxies only)"
        return f"PostgreSQL {self.pg_ms:g} ms, Redis {self.redis_ms:g} ms"


@dataclass(frozen=True)
class PathSpec:
    """One measured path: which function, which event, which runtime."""

    name: str
    function: str
    event: Callable[[], dict[str, Any]]
    cache: bool = True
    about: str = ""


@dataclass
class Sample:
    """One request: latency, this process's CPU time, and the round trips counted."""

    ms: float
    cpu_ms: float
    rt: Counts
    ok: bool


@dataclass
class PathResult:
    """The samples of one path or floor under one condition."""

    samples: list[Sample] = field(default_factory=list)

    @property
    def ms(self) -> list[float]:
        """Latencies in milliseconds."""
        return [s.ms for s in self.samples]

    def summary(self) -> dict[str, Any]:
        """Latency percentiles, round trips per request and the error count."""
        cpu = sorted(s.cpu_ms for s in self.samples)
        return {
            **latency_summary(self.ms),
            # CPU time of this process during the request (the handler's own work; the
            # proxies, PostgreSQL and Redis run in other processes).
            "cpu_p50": round(percentile(cpu, 50), 3) if cpu else None,
            "db_round_trips": count_summary([s.rt.pg for s in self.samples]),
            "redis_round_trips": count_summary([s.rt.redis for s in self.samples]),
            "sqs_round_trips": count_summary([s.rt.sqs for s in self.samples]),
            "errors": sum(1 for s in self.samples if not s.ok),
        }


def measure(
    helper: Helper,
    prepare: Callable[[], Any],
    call: Callable[[Any], bool],
    requests: int,
    warmup: int,
    inner: tuple[GetTimer, PathResult] | None = None,
) -> PathResult:
    """Time ``call(prepare())`` ``requests`` times after ``warmup`` untimed calls.

    The event is built and the counters read outside the timed window. With ``inner``, the
    Redis GETs each request makes are timed too and added to that result.
    """
    for _ in range(warmup):
        call(prepare())
    result = PathResult()
    clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    for _ in range(requests):
        payload = prepare()
        before = helper.counts()
        if inner is not None:
            inner[0].take()
        cpu = cpu_clock()
        start = clock()
        ok = call(payload)
        elapsed = clock() - start
        cpu = cpu_clock() - cpu
        rt = helper.counts() - before
        result.samples.append(Sample(elapsed / 1e6, cpu / 1e6, rt, ok))
        if inner is not None:
            inner[1].samples += inner[0].take()
    return result


class GetTimer:
    """Times every ``get`` of one cache backend (the bench's own instrument, ~1 us a call)."""

    def __init__(self, backend: Any) -> None:
        self._get = backend.get
        self._samples: list[Sample] = []
        backend.get = self.get

    def get(self, key: str) -> Any:
        """The backend's GET, timed."""
        cpu, start = time.process_time_ns(), time.perf_counter_ns()
        try:
            return self._get(key)
        finally:
            elapsed, cpu = time.perf_counter_ns() - start, time.process_time_ns() - cpu
            self._samples.append(Sample(elapsed / 1e6, cpu / 1e6, Counts(0, 1, 0), True))

    def take(self) -> list[Sample]:
        """The GETs timed since the last call."""
        samples, self._samples = self._samples, []
        return samples


class PathBench:
    """Runs the floors and every path through the helper's proxies."""

    def __init__(
        self,
        helper: Helper,
        functions: Functions,
        events: EventFactory,
        cached: Runtime,
        uncached: Runtime,
        warmup: int,
    ) -> None:
        self.helper = helper
        self.functions = functions
        self.events = events
        self.cached = cached
        self.uncached = uncached
        self.warmup = warmup
        self._new_callers = itertools.count()
        patched = cached.service.find_or_create_lead(
            PATCHED_CALLER, cached.settings.default_organization_id
        )
        self.paths = [
            PathSpec(
                "initiation_warm",
                INITIATION,
                lambda: events.initiation(KNOWN_CALLER),
                about="known caller, organization and lead cached",
            ),
            PathSpec(
                "initiation_new_caller",
                INITIATION,
                lambda: events.initiation(self.new_caller()),
                about="first call from a number: lead created",
            ),
            PathSpec(
                "initiation_cache_disabled",
                INITIATION,
                lambda: events.initiation(KNOWN_CALLER),
                cache=False,
                about="known caller with REDIS_ENABLED=false",
            ),
            PathSpec(
                "sms_webhook",
                SMS_WEBHOOK,
                lambda: events.sms_webhook(SMS_SENDER),
                about="verify the Twilio signature, SendMessage to the (fake) FIFO queue",
            ),
            PathSpec(
                "sms_processor",
                SMS_PROCESSOR,
                lambda: events.sqs_batch([SMS_SENDER]),
                about="one queued SMS from a known sender: lookups, insert, invalidate",
            ),
            PathSpec(
                "lead_patch",
                LEAD_UPDATE,
                lambda: events.patch(patched.id),
                about="PATCH /leads/{id}: read, conditional update, invalidate",
            ),
            PathSpec(
                "inbox_page",
                LEAD_UPDATE,
                lambda: events.inbox(INBOX_STORE_ID),
                about="GET /leads: a 50-lead page of a store's inbox, attention first",
            ),
            PathSpec(
                "inbox_unchanged",
                LEAD_UPDATE,
                lambda: events.inbox(INBOX_STORE_ID, if_none_match=self.inbox_etag()),
                about="GET /leads with If-None-Match of an unchanged store: 304",
            ),
        ]
        self._inbox_member = StaffMember.from_groups("bench", [f"org-{INBOX_STORE_ID}"])
        self._inbox_etag: str | None = None
        self._floor_redis = redis.Redis.from_url(
            helper.redis_url, protocol=2, decode_responses=True
        )
        self._floor_pg = pg8000.native.Connection(**pg_connect_args(helper.database_url))
        self._floor_redis.set(f"{cached.settings.cache_key_prefix}floor", "x")
        self._get_timer = GetTimer(cached.cache.backend)
        self.last_ms: dict[str, list[float]] = {}

    def inbox_etag(self) -> str | None:
        """The inbox page's current ETag (checked before each timed poll, outside its window:
        a store's change counter is made anew after CHANGES_TTL_S without a write)."""
        page = self.cached.staff.leads(self._inbox_member, {"limit": "50"}, self._inbox_etag)
        if page.body is not None:
            self._inbox_etag = page.etag
        return self._inbox_etag

    def new_caller(self) -> str:
        """A number that has never called."""
        return f"+{NEW_CALLER_BASE + next(self._new_callers)}"

    def close(self) -> None:
        """Close the floor clients."""
        self._floor_redis.close()
        self._floor_pg.close()

    def run(self, condition: Condition, rounds: int = 1) -> dict[str, Any]:
        """Floors and paths under ``condition``; raw latencies stay in ``self.last_ms``.

        The requests are split into ``rounds`` that each go through the floors and every
        path, so a burst of load from elsewhere on a shared machine lands on floors and
        paths alike instead of skewing whichever ran at that moment.
        """
        self.helper.set_latency(condition.pg_ms, condition.redis_ms)
        per_round = max(1, -(-condition.requests // rounds))
        floor_key = f"{self.cached.settings.cache_key_prefix}floor"
        floors: dict[str, tuple[Callable[[], Any], Callable[[Any], bool]]] = {
            "redis_get": (lambda: floor_key, lambda k: self._floor_redis.get(k) == "x"),
            "pg_select_1": (lambda: "SELECT 1", lambda sql: self._floor_pg.run(sql) == [[1]]),
        }
        results = {
            name: PathResult()
            for name in [*floors, IN_REQUEST_FLOOR, *(p.name for p in self.paths)]
        }
        for index in range(rounds):
            print(f"  {condition.name}: round {index + 1} of {rounds}", file=sys.stderr, flush=True)
            # Switching runtimes drops the other's connection: warm up every round.
            warmup = self.warmup if index == 0 else min(self.warmup, 5)
            for name, (prepare, call) in floors.items():
                results[name].samples += measure(
                    self.helper, prepare, call, per_round, warmup
                ).samples
            for spec in self.paths:
                runtime_module.set_runtime(self.cached if spec.cache else self.uncached)
                handler = self.functions.handler(spec.function)

                # Lambda hands the handler an event and a context: both are built before the
                # timed window opens (as the runtime builds them before the handler runs).
                def prepare(
                    event: Callable[[], dict[str, Any]] = spec.event, fn: str = spec.function
                ) -> tuple[dict[str, Any], Any]:
                    return event(), self.functions.context(fn)

                def invoke(request: tuple[dict[str, Any], Any], handler: Any = handler) -> bool:
                    return succeeded(handler(*request))

                inner = (self._get_timer, results[IN_REQUEST_FLOOR])
                results[spec.name].samples += measure(
                    self.helper,
                    prepare,
                    invoke,
                    per_round,
                    warmup,
                    inner if spec.name == IN_REQUEST_PATH else None,
                ).samples
        runtime_module.set_runtime(self.cached)
        self.helper.set_latency(0, 0)
        floor_summary = {name: results[name].summary() for name in [*floors, IN_REQUEST_FLOOR]}
        redis_floor = floor_summary["redis_get"]["p50"]
        in_request = floor_summary[IN_REQUEST_FLOOR]["p50"]
        pg_floor = floor_summary["pg_select_1"]["p50"]
        paths: dict[str, Any] = {}
        for spec in self.paths:
            summary = results[spec.name].summary()
            summary["about"] = spec.about
            summary["function"] = spec.function
            summary["p50_over_redis_get"] = ratio(summary["p50"], redis_floor)
            summary["p50_over_redis_get_in_request"] = ratio(summary["p50"], in_request)
            summary["p50_over_pg_select_1"] = ratio(summary["p50"], pg_floor)
            paths[spec.name] = summary
        self.last_ms = {spec.name: results[spec.name].ms for spec in self.paths}
        return {
            "label": condition.label,
            "pg_latency_ms": condition.pg_ms,
            "redis_latency_ms": condition.redis_ms,
            "requests_per_path": per_round * rounds,
            "rounds": rounds,
            "floors": floor_summary,
            "paths": paths,
        }


def direct_floors(
    database_url: str, redis_url: str, key: str, requests: int, warmup: int
) -> dict[str, Any]:
    """The same floors straight to the servers, without the proxy hop (for reference)."""
    client = redis.Redis.from_url(redis_url, protocol=2, decode_responses=True)
    conn = pg8000.native.Connection(**pg_connect_args(database_url))
    try:
        client.set(key, "x")
        out = {}
        for name, call in (
            ("redis_get", lambda: client.get(key)),
            ("pg_select_1", lambda: conn.run("SELECT 1")),
        ):
            for _ in range(warmup):
                call()
            ms = []
            for _ in range(requests):
                start = time.perf_counter_ns()
                call()
                ms.append((time.perf_counter_ns() - start) / 1e6)
            out[name] = latency_summary(ms)
        client.delete(key)
        return out
    finally:
        client.close()
        conn.close()
