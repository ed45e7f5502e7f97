"""The bench's command line and the order of its stages."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import pg8000.native
import redis

from devkit.bench import database
from devkit.bench.coldstart import child_environment, measure_cold_starts
from devkit.bench.events import EventFactory
from devkit.bench.harness import (
    INITIATION,
    LEAD_UPDATE,
    SMS_PROCESSOR,
    SMS_WEBHOOK,
    Functions,
    TeeSink,
    apply_env,
    function_env,
)
from devkit.bench.helper import Helper
from devkit.bench.load import LoadSpec, run_load
from devkit.bench.paths import Condition, PathBench, direct_floors
from devkit.bench.report import chart, evaluate_targets, text_report
from devkit.bench.scale import run_scale
from devkit.lambda_env import ROOT
from devkit.services import ensure_services, pg_connect_args
from leadlookup import container as runtime_module
from leadlookup.config import Settings
from leadlookup.container import Runtime, build_runtime


@dataclass(frozen=True)
class Config:
    """Sizes and durations of one run (``--quick`` shrinks every default)."""

    out: Path
    database: str
    drop_database: bool
    requests: int
    remote_requests: int
    warmup: int
    rounds: int
    cold_runs: int
    importtime: bool
    load_workers: int
    load_duration: float
    load_warmup: float
    load_leads: int
    reads_only_duration: float
    zipf_s: float
    mix: tuple[float, float, float]
    scale_sizes: tuple[int, ...]
    scale_sample: int
    scale_fill: int
    inbox_leads: int


# Full run / --quick.
_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "requests": (1000, 30),
    "remote_requests": (200, 8),
    "warmup": (20, 3),
    "rounds": (5, 1),
    "cold_runs": (10, 1),
    "load_workers": (os.cpu_count() or 2, 1),
    "load_duration": (30.0, 3.0),
    "load_warmup": (5.0, 1.0),
    "load_leads": (10_000, 300),
    "reads_only_duration": (20.0, 0.0),
    "scale_sample": (200, 20),
    "scale_fill": (2000, 50),
    "inbox_leads": (10_000, 500),
}
SCALE_SIZES = (1_000, 100_000, 1_000_000)


def parse_args(argv: list[str] | None) -> Config:
    """The command line as a :class:`Config`."""
    p = argparse.ArgumentParser(
        prog="python -m devkit.bench",
        description="Benchmark the handlers against real PostgreSQL and Redis (BENCHMARKS.md).",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results", help="output folder")
    p.add_argument("--database", default=database.BENCH_DATABASE, help="database to recreate")
    p.add_argument("--drop-database", action="store_true", help="drop it again at the end")
    p.add_argument("--requests", type=int, help="timed requests per path, loopback")
    p.add_argument("--remote-requests", type=int, help="timed requests per path, with latency")
    p.add_argument("--warmup", type=int, help="untimed requests before each path")
    p.add_argument(
        "--rounds", type=int, help="interleaved rounds over floors and paths (remote: half)"
    )
    p.add_argument("--cold-runs", type=int, help="fresh processes per function (median)")
    p.add_argument(
        "--no-importtime", action="store_true", help="skip -X importtime (--quick skips it)"
    )
    p.add_argument("--load-workers", type=int, help="worker processes (warm containers)")
    p.add_argument("--load-duration", type=float, help="seconds of the mixed load run")
    p.add_argument("--load-warmup", type=float, help="seconds before hit rates count")
    p.add_argument("--load-leads", type=int, help="leads the callers are drawn from (M)")
    p.add_argument(
        "--reads-only-duration", type=float, help="seconds of an initiations-only run (0: skip)"
    )
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of the callers")
    p.add_argument(
        "--mix", default="80,15,5", help="initiation,sms,update weights of the mixed load"
    )
    p.add_argument(
        "--scale-sizes",
        default=",".join(str(s) for s in SCALE_SIZES),
        help="lead counts of the data-scale steps",
    )
    p.add_argument(
        "--scale-max", type=int, help="skip scale steps above this (default 1000000; quick 1000)"
    )
    p.add_argument("--scale-sample", type=int, help="leads looked up per scale step")
    p.add_argument("--scale-fill", type=int, help="leads cached per step for INFO memory")
    p.add_argument("--inbox-leads", type=int, help="leads of the staff inbox's store")
    args = p.parse_args(argv)
    pick = 1 if args.quick else 0
    values = {
        name: getattr(args, name) if getattr(args, name) is not None else defaults[pick]
        for name, defaults in _DEFAULTS.items()
    }
    scale_max = args.scale_max if args.scale_max is not None else (1000 if args.quick else 10**6)
    sizes = tuple(int(s) for s in args.scale_sizes.split(",") if s.strip())
    mix = tuple(float(w) for w in args.mix.split(","))
    if len(mix) != 3 or sum(mix) <= 0:
        p.error("--mix takes three weights: initiation,sms,update")
    return Config(
        out=args.out,
        database=args.database,
        drop_database=args.drop_database,
        importtime=not (args.no_importtime or args.quick),
        zipf_s=args.zipf,
        mix=(mix[0], mix[1], mix[2]),
        scale_sizes=tuple(s for s in sizes if s <= scale_max),
        **values,
    )


@contextlib.contextmanager
def quiet_stdout() -> Iterator[IO[str]]:
    """Point file descriptor 1 at /dev/null (the handlers' logs and EMF); yield the real one.

    Powertools holds the original ``sys.stdout`` object, so the descriptor itself is moved;
    the output is still produced and written, as it is in Lambda.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        with os.fdopen(os.dup(saved), "w", encoding="utf-8") as real:
            yield real
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def make_runtime(env: dict[str, str], **overrides: Any) -> Runtime:
    """A runtime from the function environment (not installed)."""
    settings = dataclasses.replace(Settings.from_env(env), **overrides)
    return build_runtime(settings, metrics=TeeSink())


def flush_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (the run's own keys only)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            client.unlink(key)
    finally:
        client.close()


def _meta(config: Config, urls: dict[str, str]) -> dict[str, Any]:
    conn = pg8000.native.Connection(**pg_connect_args(urls["DATABASE_URL"]))
    try:
        pg_version = str(conn.run("SHOW server_version")[0][0])
    finally:
        conn.close()
    client = redis.Redis.from_url(urls["REDIS_URL"], decode_responses=True)
    try:
        redis_version = str(client.info("server")["redis_version"])
    finally:
        client.close()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    config_json = {k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items()}
    return {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": pg_version,
        "redis": redis_version,
        "libraries": {
            name: metadata.version(name)
            for name in ("pg8000", "redis", "aws-lambda-powertools", "boto3")
        },
        "git_commit": commit or None,
        "load_average_start": list(os.getloadavg()),
        "config": config_json,
    }


def run(config: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every stage in order; (the JSON result, raw data for the chart)."""
    started = time.perf_counter()
    urls = ensure_services()
    meta = _meta(config, urls)
    log("database", config.database)
    bench_url = database.recreate_database(urls["DATABASE_URL"], config.database)
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    conn = database.connect(bench_url)
    try:
        database.seed_leads(conn, config.load_leads)
        database.seed_inbox(conn, config.inbox_leads)
        lead_ids = database.lead_ids(conn, config.load_leads)
    finally:
        conn.close()
    result: dict[str, Any] = {"meta": meta}
    raw: dict[str, Any] = {}
    with Helper(bench_url, urls["REDIS_URL"]) as helper:
        env = function_env(helper.database_url, helper.redis_url, prefix, helper.sqs_queue_url)
        apply_env(env)
        functions = Functions()
        functions.load(INITIATION, SMS_WEBHOOK, SMS_PROCESSOR, LEAD_UPDATE)
        events = EventFactory()
        cached = make_runtime(env)
        uncached = make_runtime(env, redis_enabled=False)
        runtime_module.set_runtime(cached)
        try:
            bench = PathBench(helper, functions, events, cached, uncached, config.warmup)
            conditions = [
                Condition("local", "loopback, no added latency", 0, 0, config.requests),
                Condition(
                    "remote_pg25_redis0.5",
                    "PostgreSQL 25 ms, Redis 0.5 ms per round trip",
                    25,
                    0.5,
                    config.remote_requests,
                ),
                Condition(
                    "region_pg1_redis0.5",
                    "PostgreSQL 1 ms, Redis 0.5 ms per round trip (same-region RDS/ElastiCache)",
                    1,
                    0.5,
                    config.remote_requests,
                ),
            ]
            result["conditions"] = {}
            raw["latencies"] = {}
            raw["labels"] = {}
            for condition in conditions:
                log("paths", condition.label)
                rounds = config.rounds if condition.name == "local" else max(1, config.rounds // 2)
                result["conditions"][condition.name] = bench.run(condition, rounds)
                raw["latencies"][condition.name] = bench.last_ms
                raw["labels"][condition.name] = condition.short
            bench.close()
            result["floors_direct"] = direct_floors(
                bench_url,
                urls["REDIS_URL"],
                f"{prefix}floor:direct",
                config.requests,
                config.warmup,
            )

            log("cold start", f"{config.cold_runs} runs per function")
            direct_env = function_env(
                bench_url, urls["REDIS_URL"], prefix, helper.sqs_direct_queue_url
            )
            result["cold_start"] = measure_cold_starts(
                functions,
                events,
                child_environment(env, direct_env),
                lead_ids[0],
                config.cold_runs,
                config.importtime,
            )

            result["load"] = []
            raw["series"] = {}
            load_env = {**direct_env, "CACHE_KEY_PREFIX": f"{prefix}load:"}
            runs = [("mixed", config.load_duration, config.mix)]
            if config.reads_only_duration > 0:
                runs.append(("initiations_only", config.reads_only_duration, (1.0, 0.0, 0.0)))
            for name, duration, mix in runs:
                log("load", f"{name}: {config.load_workers} workers x {duration:.0f} s")
                flush_prefix(urls["REDIS_URL"], load_env["CACHE_KEY_PREFIX"])
                spec = LoadSpec(
                    name=name,
                    workers=config.load_workers,
                    duration_s=duration,
                    leads=config.load_leads,
                    zipf_s=config.zipf_s,
                    mix=mix,
                    warmup_s=config.load_warmup,
                    lead_ttl_s=float(load_env.get("LEAD_CACHE_TTL_SECONDS", "300")),
                )
                summary, series = run_load(spec, functions, load_env, lead_ids)
                summary["per_second"] = series
                result["load"].append(summary)
                raw["series"][name] = series
            flush_prefix(urls["REDIS_URL"], load_env["CACHE_KEY_PREFIX"])

            log("scale", ", ".join(str(s) for s in config.scale_sizes))
            result["scale"] = run_scale(
                list(config.scale_sizes),
                bench_url,
                urls["REDIS_URL"],
                helper,
                functions,
                events,
                cached,
                config.scale_sample,
                config.scale_fill,
            )
            cached.service.flush_all()
        finally:
            runtime_module.set_runtime(None)
            uncached.db.close()
    if config.drop_database:
        database.drop_database(urls["DATABASE_URL"], config.database)
    result["targets"] = evaluate_targets(result)
    meta["load_average_end"] = list(os.getloadavg())
    meta["load_average_by_stage"] = [{"stage": st, "load_1m": ld} for st, ld in _STAGE_LOADS]
    meta["duration_s"] = round(time.perf_counter() - started, 1)
    return result, raw


# (stage, 1-minute load average as it began): other work on a shared machine shows here.
_STAGE_LOADS: list[tuple[str, float]] = []


def log(stage: str, detail: str = "") -> None:
    """Progress on stderr; the load average as each stage starts is kept for the JSON."""
    _STAGE_LOADS.append((f"{stage} {detail}".strip(), round(os.getloadavg()[0], 2)))
    print(f"bench: {stage} {detail}".rstrip(), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the bench; print the table; write bench.json and bench.png under ``--out``."""
    config = parse_args(argv)
    config.out.mkdir(parents=True, exist_ok=True)
    with quiet_stdout() as out:
        result, raw = run(config)
        chart_path = config.out / "bench.png"
        chart(chart_path, raw["latencies"], raw["labels"], raw["series"], config.load_warmup)
        result["chart"] = chart_path.name
        (config.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
        text = text_report(result)
        (config.out / "bench.txt").write_text(text)
        out.write(text)
        out.write(f"\nwrote {config.out / 'bench.json'}, {chart_path}\n")
    return 0
