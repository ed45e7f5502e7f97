"""Cold starts: each function imported and invoked in fresh interpreters, with the
``python -X importtime`` breakdown of what its import spends the time on."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from devkit.bench.events import EventFactory
from devkit.bench.harness import (
    CACHE_ADMIN,
    INITIATION,
    LEAD_UPDATE,
    SMS_PROCESSOR,
    SMS_WEBHOOK,
    Functions,
    succeeded,
)
from devkit.bench.paths import KNOWN_CALLER, SMS_SENDER

CHILD = Path(__file__).with_name("coldstart_child.py")
_START = "bench: import start"
_IMPORTED = "bench: import done"
_END = "bench: first answer"
_TOP = 10


def first_events(events: EventFactory, lead_id: str) -> dict[str, Callable[[], dict[str, Any]]]:
    """The first event each function answers after its cold start."""
    return {
        INITIATION: lambda: events.initiation(KNOWN_CALLER),
        SMS_WEBHOOK: lambda: events.sms_webhook(SMS_SENDER),
        SMS_PROCESSOR: lambda: events.sqs_batch([SMS_SENDER]),
        LEAD_UPDATE: lambda: events.get_lead(lead_id),
        CACHE_ADMIN: lambda: {"action": "status"},
    }


# (self us, cumulative us, nesting level, module, during the first answer rather than import)
Entry = tuple[int, int, int, str, bool]


def parse_importtime(stderr: str) -> list[Entry]:
    """Each import the handler's module import and its first answer made (between markers)."""
    entries: list[Entry] = []
    phase = None
    for line in stderr.splitlines():
        if line.startswith(_START):
            phase = "import"
        elif line.startswith(_IMPORTED):
            phase = "answer"
        elif line.startswith(_END):
            break
        elif phase and line.startswith("import time:"):
            own, cumulative, raw = line[len("import time:") :].split("|", 2)
            if not own.strip().isdigit():
                continue  # the header line
            level = (len(raw) - len(raw.lstrip()) - 1) // 2
            entries.append((int(own), int(cumulative), level, raw.strip(), phase == "answer"))
    return entries


def import_breakdown(entries: list[Entry]) -> dict[str, Any]:
    """The heaviest packages (own time of all their modules) and the handler's imports."""
    by_package: dict[str, int] = defaultdict(int)
    for own, _cumulative, _level, name, _later in entries:
        by_package[name.split(".")[0]] += own
    packages = sorted(by_package.items(), key=lambda item: -item[1])[:_TOP]
    # Level 0 is the handler module itself; level 1 the modules it imports, and so on.
    direct = sorted((e for e in entries if e[2] == 1 and not e[4]), key=lambda e: -e[1])[:_TOP]
    later = sorted((e for e in entries if e[2] == 0 and e[4]), key=lambda e: -e[1])[:_TOP]
    layer = sorted((e for e in entries if e[3].startswith("leadlookup")), key=lambda e: -e[0])
    return {
        "total_ms": round(sum(e[0] for e in entries) / 1000, 1),
        "during_first_answer_ms": round(sum(e[0] for e in entries if e[4]) / 1000, 1),
        "modules": len(entries),
        "packages_self_ms": {name: round(us / 1000, 1) for name, us in packages},
        "handler_imports_cumulative_ms": {e[3]: round(e[1] / 1000, 1) for e in direct},
        "first_answer_imports_cumulative_ms": {e[3]: round(e[1] / 1000, 1) for e in later},
        "layer_modules_self_ms": {e[3]: round(e[0] / 1000, 1) for e in layer[:_TOP]},
    }


def lambda_variables(functions: Functions, logical_id: str) -> dict[str, str]:
    """The variables Lambda's runtime sets; libraries read them (the X-Ray SDK, for one,
    skips creating its sampling client when it sees it runs in Lambda)."""
    spec = functions.specs[logical_id]
    return {
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "LAMBDA_RUNTIME_DIR": str(spec.code_dir),
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_REGION": "us-east-1",
        "_HANDLER": spec.handler,
    }


def _child_args(
    functions: Functions, logical_id: str, event: Callable[[], dict[str, Any]], out: Path
) -> str:
    spec = functions.specs[logical_id]
    module, _, handler = spec.handler.rpartition(".")
    return json.dumps(
        {
            "code_dir": str(spec.code_dir),
            "module": module,
            "handler": handler,
            "layer_dirs": [str(p) for p in spec.layer_dirs],
            "events": [event(), event()],
            "out": str(out),
        }
    )


def _interpreter_ms(env: Mapping[str, str], runs: int) -> float:
    """Median wall time of ``python -c pass``: the runtime's own start, not ours."""
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
        walls.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(walls), 1)


def measure_cold_starts(
    functions: Functions,
    events: EventFactory,
    env: Mapping[str, str],
    lead_id: str,
    runs: int,
    importtime: bool = True,
) -> dict[str, Any]:
    """Median import + first answer per function over ``runs`` fresh processes.

    Rounds go through every function in turn, so a burst of load from elsewhere on the
    machine lands on all functions alike rather than on whichever ran at that moment.
    """
    makers = first_events(events, lead_id)
    envs = {name: {**env, **lambda_variables(functions, name)} for name in makers}
    runs_out: dict[str, list[dict[str, Any]]] = {name: [] for name in makers}
    results: dict[str, Any] = {"runs_per_function": runs, "functions": {}}
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        for index in range(runs):
            print(f"  cold start: round {index + 1} of {runs}", file=sys.stderr, flush=True)
            for name, maker in makers.items():
                out = Path(tmp) / f"{name}-{index}.json"
                start = time.perf_counter()
                proc = _child(functions, name, maker, out, envs[name])
                wall = (time.perf_counter() - start) * 1000
                if proc.returncode != 0:
                    raise RuntimeError(f"{name} cold start failed:\n{proc.stderr[-2000:]}")
                run = json.loads(out.read_text())
                run["process_wall_ms"] = wall
                run["ok"] = succeeded(run.pop("first_response"))
                runs_out[name].append(run)
        for name, maker in makers.items():
            entry = _summarize(runs_out[name])
            if importtime:
                out = Path(tmp) / f"{name}-importtime.json"
                proc = _child(functions, name, maker, out, envs[name], "-X", "importtime")
                entry["imports"] = import_breakdown(parse_importtime(proc.stderr))
            results["functions"][name] = entry
        results["interpreter_start_ms"] = _interpreter_ms(env, max(3, min(runs, 10)))
    return results


def _child(
    functions: Functions,
    name: str,
    maker: Callable[[], dict[str, Any]],
    out: Path,
    env: Mapping[str, str],
    *options: str,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *options, str(CHILD), _child_args(functions, name, maker, out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(name: str) -> float:
        return round(statistics.median(r[name] for r in runs), 1)

    cold = [r["import_ms"] + r["first_answer_ms"] for r in runs]
    return {
        "cold_ms_median": round(statistics.median(cold), 1),
        "cold_ms_min": round(min(cold), 1),
        "cold_ms_max": round(max(cold), 1),
        "import_ms_median": median("import_ms"),
        "first_answer_ms_median": median("first_answer_ms"),
        "second_answer_ms_median": median("second_answer_ms"),
        "process_wall_ms_median": median("process_wall_ms"),
        "errors": sum(1 for r in runs if not r["ok"]),
        "runs": len(runs),
    }


def child_environment(base: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """The bench's environment with direct service URLs (no proxy) for the cold processes."""
    env = {**os.environ, **base, **overrides}
    env.pop("PYTHONPATH", None)
    return env
