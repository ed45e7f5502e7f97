"""Metrics where speed does not matter: the layer's EMF writer against Powertools Metrics.

    python -m devkit.bench.metrics [--requests N] [--rounds R] [--cold-runs K]
        [--build-dir .aws-sam/build] [--out bench-results]

The layer writes its EMF records itself (``observability.emf``) because the warm initiation
could not afford Powertools Metrics (BENCHMARKS.md, "Warm path vs one Redis GET"). This asks
what Powertools Metrics would cost in the other functions, on their real handlers:

- **warm**: each path's real handler, in this process, against the local PostgreSQL and Redis
  (no proxies), in interleaved rounds, once with the layer's writer and once with Powertools
  Metrics behind the same metric calls (``count``/``milliseconds`` become ``add_metric``, the
  flush ``flush_metrics``). Reported: the handler's p50 and the writer's own time per
  invocation (its calls and its flush, timed inside the handler), and that as a share of p50.
- **cold**: what ``import aws_lambda_powertools.metrics`` and one ``Metrics()`` add to a cold
  start after the function's own imports, in fresh interpreters, on the ``sam build`` output
  (bytecode) when there is one, else on the source tree (said in the output); milliseconds and
  modules added, median of ``--cold-runs``.

Prints a table; writes ``<out>/metrics.json``. It needs what ``make test`` needs (PostgreSQL
and Redis), uses a database of its own that it drops, and Redis keys under its own prefix.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devkit.bench import database
from devkit.bench.cli import flush_prefix, quiet_stdout
from devkit.bench.events import EventFactory
from devkit.bench.harness import LEAD_UPDATE, SMS_PROCESSOR, Functions, apply_env, function_env
from devkit.lambda_env import ROOT
from devkit.services import ensure_services
from leadlookup import container as runtime_module
from leadlookup import observability
from leadlookup.config import Settings
from leadlookup.container import build_runtime
from leadlookup.metrics import NAMESPACE, SERVICE_NAME

LAYER = "layer"
POWERTOOLS = "powertools"
WRITERS = (LAYER, POWERTOOLS)
SENDER = "+12505550112"  # the sample SMS sender
PATCHED = "+16045550177"
COLD_FUNCTIONS = ("SmsProcessorFunction", "LeadUpdateFunction", "SmsWebhookFunction")
WARMUP = 20

# One fresh interpreter: the function's imports, then Powertools Metrics on top of them.
_COLD_CHILD = r"""
import json, os, sys, time
args = json.loads(sys.argv[1])
sys.path[:0] = args["paths"]
sys.path.extend(args["fallback"])
os.environ.update(args["env"])
start = time.perf_counter()
import app
imported = time.perf_counter()
before = set(sys.modules)
begin = time.perf_counter()
from aws_lambda_powertools.metrics import Metrics
Metrics(namespace=args["namespace"], service=args["service"])
end = time.perf_counter()
print(json.dumps({
    "function_import_ms": (imported - start) * 1000,
    "metrics_ms": (end - begin) * 1000,
    "modules": sorted(set(sys.modules) - before),
}))
"""


class TimedWriter:
    """One writer's ``count``/``milliseconds``/``flush``, each call timed (ns per invocation)."""

    def __init__(
        self,
        count: Callable[[str], None],
        milliseconds: Callable[[str, float], None],
        flush: Callable[[], None],
    ) -> None:
        self._count, self._milliseconds, self._flush = count, milliseconds, flush
        self.ns = 0
        self.calls = 0

    def count(self, name: str) -> None:
        """The writer's count, timed."""
        start = time.perf_counter_ns()
        self._count(name)
        self.ns += time.perf_counter_ns() - start
        self.calls += 1

    def milliseconds(self, name: str, value: float) -> None:
        """The writer's latency sample, timed."""
        start = time.perf_counter_ns()
        self._milliseconds(name, value)
        self.ns += time.perf_counter_ns() - start
        self.calls += 1

    def flush(self) -> None:
        """The writer's flush, timed."""
        start = time.perf_counter_ns()
        self._flush()
        self.ns += time.perf_counter_ns() - start

    def take(self) -> tuple[int, int]:
        """(ns, metric calls) since the last take."""
        taken = self.ns, self.calls
        self.ns = self.calls = 0
        return taken


def powertools_writer() -> TimedWriter:
    """Powertools Metrics behind the layer's writer interface."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    metrics = Metrics(namespace=NAMESPACE, service=SERVICE_NAME)

    def count(name: str) -> None:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)

    def milliseconds(name: str, value: float) -> None:
        metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=value)

    return TimedWriter(count, milliseconds, metrics.flush_metrics)


def layer_writer() -> TimedWriter:
    """The layer's own writer (``observability.emf``), as the handlers use it."""
    emf = observability.EmbeddedMetrics
    writer = observability.emf
    return TimedWriter(
        lambda name: emf.count(writer, name),
        lambda name, value: emf.milliseconds(writer, name, value),
        lambda: emf.flush(writer),
    )


@contextlib.contextmanager
def writing_with(writer: TimedWriter) -> Iterator[None]:
    """Route the handlers' metric calls (``observability.emf``) through ``writer``."""
    emf = observability.emf
    emf.count = writer.count  # type: ignore[method-assign]
    emf.milliseconds = writer.milliseconds  # type: ignore[method-assign]
    emf.flush = writer.flush  # type: ignore[method-assign]
    try:
        yield
    finally:
        for name in ("count", "milliseconds", "flush"):
            vars(emf).pop(name, None)


@dataclass
class Samples:
    """One path and writer: handler milliseconds, writer microseconds, metric calls."""

    ms: list[float] = field(default_factory=list)
    writer_us: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Medians (and the mean of the writer's time, which a few slow flushes move)."""
        p50 = statistics.median(self.ms)
        writer = statistics.median(self.writer_us)
        return {
            "requests": len(self.ms),
            "p50_ms": round(p50, 3),
            "writer_p50_us": round(writer, 1),
            "writer_mean_us": round(statistics.fmean(self.writer_us), 1),
            "writer_share_of_p50_pct": round(writer / 10 / p50, 2) if p50 else None,
            "metric_calls_per_invocation": round(statistics.fmean(self.calls), 2),
        }


def measure_warm(requests: int, rounds: int) -> dict[str, Any]:
    """Each path with each writer, interleaved; summaries by path and writer."""
    urls = ensure_services()
    name = f"bici_bench_metrics_{uuid.uuid4().hex[:8]}"
    url = database.recreate_database(urls["DATABASE_URL"], name)
    prefix = f"bench:metrics:{name}:"
    env = function_env(url, urls["REDIS_URL"], prefix, "http://127.0.0.1:9/unused")
    apply_env(env)
    functions = Functions()
    functions.load(SMS_PROCESSOR, LEAD_UPDATE)
    runtime = build_runtime(Settings.from_env(env))
    runtime_module.set_runtime(runtime)
    events = EventFactory()
    lead = runtime.service.find_or_create_lead(PATCHED, runtime.settings.default_organization_id)
    paths: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
        # One queued text from a known sender: lookups, insert, the in-process reply decision.
        "sms_processor": (SMS_PROCESSOR, lambda: events.sqs_batch([SENDER])),
        "lead_patch": (LEAD_UPDATE, lambda: events.patch(lead.id)),
        "lead_get": (LEAD_UPDATE, lambda: events.get_lead(lead.id)),
    }
    writers = {LAYER: layer_writer(), POWERTOOLS: powertools_writer()}
    samples = {(path, writer): Samples() for path in paths for writer in WRITERS}
    try:
        with quiet_stdout(), warnings.catch_warnings():
            # Powertools warns on every flush with nothing to publish (lead_get's).
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            for round_number, (path, (function, event)) in itertools.product(
                range(rounds), paths.items()
            ):
                handler = functions.handler(function)
                order = WRITERS if round_number % 2 == 0 else WRITERS[::-1]
                for writer_name in order:
                    writer = writers[writer_name]
                    with writing_with(writer):
                        for _ in range(WARMUP):
                            handler(event(), functions.context(function))
                        writer.take()
                        for _ in range(requests):
                            payload, context = event(), functions.context(function)
                            start = time.perf_counter_ns()
                            handler(payload, context)
                            elapsed = time.perf_counter_ns() - start
                            ns, calls = writer.take()
                            sample = samples[(path, writer_name)]
                            sample.ms.append(elapsed / 1e6)
                            sample.writer_us.append(ns / 1e3)
                            sample.calls.append(calls)
    finally:
        with contextlib.suppress(Exception):
            flush_prefix(urls["REDIS_URL"], prefix)
        runtime_module.set_runtime(None)
        database.drop_database(urls["DATABASE_URL"], name)
    return {
        path: {writer: samples[(path, writer)].summary() for writer in WRITERS} for path in paths
    }


def measure_cold(runs: int, build_dir: Path) -> dict[str, Any]:
    """Powertools Metrics' import cost after each function's imports, median of ``runs``."""
    built = (build_dir / "LeadLookupLayer" / "python").is_dir()
    site = [p for p in sys.path if p.endswith("site-packages")]
    results: dict[str, Any] = {"code": "sam build output" if built else "source tree"}
    for function in COLD_FUNCTIONS:
        if built:
            paths = [str(build_dir / function), str(build_dir / "LeadLookupLayer" / "python")]
        else:
            from devkit import lambda_env

            spec = lambda_env.functions()[function]
            paths = [str(spec.code_dir), str(ROOT / "layers" / "leadlookup")]
        args = {
            "paths": paths,
            # boto3 only, as the runtime provides it; everything else comes from the paths.
            "fallback": site,
            "env": {"POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"},
            "namespace": NAMESPACE,
            "service": SERVICE_NAME,
        }
        taken = []
        for _ in range(runs):
            child = subprocess.run(
                [sys.executable, "-S", "-c", _COLD_CHILD, json.dumps(args)],
                cwd=paths[0],
                env={"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"},
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            taken.append(json.loads(child.stdout.strip().splitlines()[-1]))
        results[function] = {
            "runs": runs,
            "function_import_ms": round(
                statistics.median(t["function_import_ms"] for t in taken), 1
            ),
            "metrics_import_ms": round(statistics.median(t["metrics_ms"] for t in taken), 1),
            "modules_added": len(taken[0]["modules"]),
            "modules_sample": [m for m in taken[0]["modules"] if m.startswith("aws_lambda")][:8],
        }
    return results


def measure_cold_start_record(times: int = 2000) -> float:
    """Microseconds the layer writer's ColdStart record costs (once per container)."""

    class Context:
        function_name = "bench-cold-start"

    with quiet_stdout():
        writer = observability.EmbeddedMetrics(NAMESPACE, SERVICE_NAME)
        start = time.perf_counter_ns()
        for _ in range(times):
            writer.reset()
            writer.cold_start(Context())
        elapsed = time.perf_counter_ns() - start
    return round(elapsed / times / 1e3, 1)


def table(result: dict[str, Any]) -> str:
    """The printed report."""
    lines = [
        f"{'path':15} {'writer':11} {'p50 ms':>8} {'writer us':>10} {'mean us':>8}"
        f" {'share':>7} {'calls':>6}",
        "-" * 70,
    ]
    for path, by_writer in result["warm"].items():
        for writer, row in by_writer.items():
            lines.append(
                f"{path:15} {writer:11} {row['p50_ms']:8.3f} {row['writer_p50_us']:10.1f}"
                f" {row['writer_mean_us']:8.1f} {row['writer_share_of_p50_pct']:6.2f}%"
                f" {row['metric_calls_per_invocation']:6.2f}"
            )
    cold = result["cold"]
    lines += ["", f"cold start, Powertools Metrics on top of each function ({cold['code']}):"]
    for function in COLD_FUNCTIONS:
        row = cold[function]
        # 0 modules: `import aws_lambda_powertools` (the Logger's import) already imported
        # Metrics, in the package's __init__, whichever writer the function uses.
        added = f"{row['modules_added']} modules" if row["modules_added"] else "already imported"
        lines.append(
            f"  {function:24} function imports {row['function_import_ms']:7.1f} ms,"
            f" + Powertools Metrics {row['metrics_import_ms']:5.1f} ms"
            f" ({added}), median of {row['runs']}"
        )
    lines.append(
        f"  the layer writer's ColdStart record: {result['cold_start_record_us']} us, once"
        " per container"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write metrics.json."""
    parser = argparse.ArgumentParser(prog="python -m devkit.bench.metrics", description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="per path, writer and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    result: dict[str, Any] = {
        "meta": {
            "git_commit": commit or None,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "load_average_start": list(os.getloadavg()),
            "requests": args.requests,
            "rounds": args.rounds,
        },
        "warm": measure_warm(args.requests, args.rounds),
        "cold": measure_cold(args.cold_runs, args.build_dir),
        "cold_start_record_us": measure_cold_start_record(),
    }
    result["meta"]["load_average_end"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\nwritten: {args.out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
