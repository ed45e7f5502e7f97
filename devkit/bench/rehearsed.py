"""Cold starts of the built artifact in the rehearsal (devkit.rehearsal), every function.

    python -m devkit.bench.rehearsed [--runs 10] [--no-bytecode-runs 3] [--out bench-results]

Each cold start is a fresh execution environment: python3.13 under awslambdaric, the sam
build output, the template's environment against the local stack (moto, TLS cluster Redis
with an RBAC user, TLS PostgreSQL). Rounds are interleaved (every function once per round),
so load from elsewhere on the machine lands on all of them alike. Beside the template's
functions runs a Powertools-only function (Logger, Metrics, Tracer, APIGatewayHttpResolver,
one route) on the same layer: what a handler built the usual Powertools way starts from
(the initiation webhook skips the resolver and the Tracer, so it can start below). Once more
without bytecode (the build's __pycache__ removed) for the effect of shipping .pyc files.

Prints a table, writes coldstart-rehearsal.json and coldstart-rehearsal.png to --out. A
benchmark, not a test: nothing here passes or fails on timings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devkit.lambda_env import ROOT, FunctionSpec
from devkit.rehearsal.function import BUILD, RUNTIME_DIR, FunctionProcess
from devkit.rehearsal.session import Rehearsal

BASELINE = "PowertoolsOnlyFunction"
INITIATION = "ConversationInitiationFunction"
EVENTS = ROOT / "events"
FIRST_EVENTS = {
    INITIATION: "conversation_initiation/known_caller.json",
    BASELINE: "conversation_initiation/known_caller.json",
    "SmsWebhookFunction": "sms_webhook/signed.json",
    "SmsProcessorFunction": "sms_processor/sqs_batch.json",
    "LeadUpdateFunction": "lead_update/get_by_phone.json",
    "CacheAdminFunction": "cache_admin/status.json",
    "PostCallProcessorFunction": "post_call_processor/sqs_batch.json",
    "SmsOutcomeFunction": "sms_outcome/sqs_outcome.json",
}
# Left out: SmsResponderFunction calls ElevenLabs and Twilio, which have no stand-ins here;
# MigrateFunction logs in as the RDS master user, whose secret RDS manages (not in the stack).
BASELINE_APP = '''"""Powertools only: the floor for a handler on this layer (cold-start bench)."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

logger = Logger(service="bici-lookups")
tracer = Tracer(service="bici-lookups")
metrics = Metrics(namespace="BiciLookups", service="bici-lookups")
app = APIGatewayHttpResolver()


@app.post("/webhooks/elevenlabs/conversation-initiation")
def initiation() -> dict:
    return {"type": "conversation_initiation_client_data", "dynamic_variables": {}}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event, context):
    return app.resolve(event, context)
'''


def bench_build(python: Path, bytecode: bool) -> Path:
    """A build folder: sam build's output plus the Powertools-only function; with
    ``bytecode=False`` a copy without any ``__pycache__``."""
    target = RUNTIME_DIR / ("bench-build" if bytecode else "bench-build-nopyc")
    shutil.rmtree(target, ignore_errors=True)
    if bytecode:
        target.mkdir(parents=True)
        for entry in BUILD.iterdir():
            if entry.is_dir():
                (target / entry.name).symlink_to(entry.resolve(), target_is_directory=True)
    else:
        shutil.copytree(BUILD, target, ignore=shutil.ignore_patterns("__pycache__"))
    baseline = target / BASELINE
    baseline.mkdir()
    (baseline / "app.py").write_text(BASELINE_APP, encoding="utf-8")
    if bytecode:
        subprocess.run(
            [
                str(python),
                "-m",
                "compileall",
                "-q",
                "--invalidation-mode",
                "unchecked-hash",
                str(baseline),
            ],
            check=True,
        )
    return target


class _ResponseSink(BaseHTTPRequestHandler):
    """Where MigrateFunction PUTs its CloudFormation response (S3 in AWS)."""

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def load_events(sink_url: str) -> dict[str, Any]:
    """The first event of each function (MigrateFunction's response goes to the sink)."""
    events = {
        name: json.loads((EVENTS / path).read_text(encoding="utf-8"))
        for name, path in FIRST_EVENTS.items()
    }
    del sink_url  # kept for MigrateFunction once the stack holds the master user's secret
    return events


def one_cold_start(
    rehearsal: Rehearsal, spec: FunctionSpec, event: Any, build: Path
) -> dict[str, float]:
    """Start, first invoke, one warm invoke; the durations in ms."""
    env = rehearsal.environment(INITIATION if spec.logical_id == BASELINE else spec.logical_id)
    fn = FunctionProcess(spec, env, rehearsal.runtime, build=build, ports=rehearsal.ports)
    try:
        fn.start()
        first = fn.invoke(event)
        warm = fn.invoke(event)
        status = (first.result or {}).get("statusCode") if isinstance(first.result, dict) else None
        waits = fn.waits(fn.started_at, first.done_at or 0)
        return {
            "init_ms": fn.init_ms,
            "first_ms": first.duration_ms or 0.0,
            "cold_ms": fn.init_ms + (first.duration_ms or 0.0),
            "warm_ms": warm.duration_ms or 0.0,
            "ok": float(first.error is None and status in (None, 200)),
            "tls_ms": sum(kinds.get("tls", 0.0) for kinds in waits.values()),
            "aws_ms": sum(waits.get("aws", {}).values()),
        }
    finally:
        fn.stop()


def measure(
    rehearsal: Rehearsal,
    specs: dict[str, FunctionSpec],
    events: dict[str, Any],
    build: Path,
    runs: int,
    progress: Callable[[str], None],
) -> dict[str, list[dict[str, float]]]:
    """``runs`` interleaved rounds over ``specs``."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in specs}
    for index in range(runs):
        progress(f"  round {index + 1} of {runs} ({build.name})")
        for name, spec in specs.items():
            results[name].append(one_cold_start(rehearsal, spec, events[name], build))
    return results


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians (and the cold range) of one function's runs."""

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 1)

    return {
        "runs": len(runs),
        "errors": sum(1 for r in runs if not r["ok"]),
        "init_ms": median("init_ms"),
        "first_ms": median("first_ms"),
        "cold_ms": median("cold_ms"),
        "cold_min_ms": round(min(r["cold_ms"] for r in runs), 1),
        "cold_max_ms": round(max(r["cold_ms"] for r in runs), 1),
        "warm_ms": median("warm_ms"),
        "tls_ms": median("tls_ms"),
        "secrets_ms": median("aws_ms"),
    }


def table(result: dict[str, Any]) -> str:
    """The printed table: one line per function, with and without bytecode."""
    header = (
        f"{'function':32} {'init':>7} {'first':>7} {'cold':>7} {'(min-max)':>15} {'warm':>6}"
        f" {'tls':>6} {'aws':>6} {'no .pyc':>8} {'err':>4}"
    )
    lines = [header, "-" * len(header)]
    for name, row in result["bytecode"].items():
        nopyc = result["no_bytecode"].get(name, {}).get("cold_ms", float("nan"))
        lines.append(
            f"{name:32} {row['init_ms']:7.1f} {row['first_ms']:7.1f} {row['cold_ms']:7.1f}"
            f" {row['cold_min_ms']:7.1f}-{row['cold_max_ms']:<7.1f} {row['warm_ms']:6.1f}"
            f" {row['tls_ms']:6.1f} {row['secrets_ms']:6.1f} {nopyc:8.1f} {row['errors']:4d}"
        )
    lines.append(
        f"initiation (known caller, from Redis) / Powertools-only, cold medians: "
        f"{result['initiation_over_baseline']:.2f}x"
    )
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path) -> None:
    """Bars: median init + first answer per function, with and without bytecode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["bytecode"])
    with_pyc = [result["bytecode"][n]["cold_ms"] for n in names]
    without = [result["no_bytecode"].get(n, {}).get("cold_ms", 0.0) for n in names]
    positions = range(len(names))
    fig, ax = plt.subplots(figsize=(10, 4.8))
    ax.barh([p + 0.2 for p in positions], without, 0.4, label="source only (no .pyc)")
    ax.barh([p - 0.2 for p in positions], with_pyc, 0.4, label="as built (unchecked-hash .pyc)")
    ax.set_yticks(list(positions), [n.removesuffix("Function") for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("init + first answer, median ms (rehearsal, python3.13 under awslambdaric)")
    ax.set_title("Cold starts of the sam build output")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.bench.rehearsed", description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="cold starts per function")
    parser.add_argument("--no-bytecode-runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    sink = ThreadingHTTPServer(("127.0.0.1", 0), _ResponseSink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    events = load_events(f"http://127.0.0.1:{sink.server_address[1]}/response")
    started = time.monotonic()
    with Rehearsal.open() as rehearsal:
        initiation = rehearsal.spec(INITIATION)
        specs = {
            INITIATION: initiation,
            BASELINE: replace(initiation, logical_id=BASELINE, environment={}),
            **{n: rehearsal.spec(n) for n in FIRST_EVENTS if n not in (INITIATION, BASELINE)},
        }
        with_pyc = bench_build(rehearsal.runtime.python, bytecode=True)
        # The known caller's lead and store go into Redis first, as in a running system.
        one_cold_start(rehearsal, specs[INITIATION], events[INITIATION], with_pyc)
        bytecode = measure(rehearsal, specs, events, with_pyc, args.runs, progress)
        without_pyc = bench_build(rehearsal.runtime.python, bytecode=False)
        no_bytecode = measure(
            rehearsal, specs, events, without_pyc, args.no_bytecode_runs, progress
        )
    sink.shutdown()
    result: dict[str, Any] = {
        "runs": args.runs,
        "no_bytecode_runs": args.no_bytecode_runs,
        "seconds": round(time.monotonic() - started, 1),
        "bytecode": {name: summarize(runs) for name, runs in bytecode.items()},
        "no_bytecode": {name: summarize(runs) for name, runs in no_bytecode.items()},
        "raw": bytecode,
    }
    result["initiation_over_baseline"] = round(
        result["bytecode"][INITIATION]["cold_ms"] / result["bytecode"][BASELINE]["cold_ms"], 2
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coldstart-rehearsal.json").write_text(json.dumps(result, indent=2) + "\n")
    chart(result, args.out / "coldstart-rehearsal.png")
    print(table(result))
    print(f"wrote {args.out / 'coldstart-rehearsal.json'} and coldstart-rehearsal.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
