"""`make invoke`: one cold start of the built function, the way Lambda runs it.

    python -m devkit.rehearsal ConversationInitiationFunction \
        events/conversation_initiation/known_caller.json

Prints the first answer on stdout (like `sam local invoke`), and on stderr the function's own
output, then init duration, first and warm invoke, and the split of the cold part.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from devkit.rehearsal.function import FunctionProcess, RehearsalError
from devkit.rehearsal.session import Rehearsal

_TOP = 6


# Imported by the interpreter and awslambdaric before the handler (Lambda's runtime part).
_RUNTIME_MODULES = ("awslambdaric", "rehearsal_probe", "runpy", "encodings", "zipimport", "io")


def import_profile(stderr: str) -> dict[str, Any]:
    """From ``-X importtime`` lines: the function's imports (handler module and everything it
    pulls in, during init and the first invoke), the runtime's, and the heaviest packages."""
    function_us = runtime_us = 0
    packages: dict[str, int] = defaultdict(int)
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        own, cumulative, raw = line[len("import time:") :].split("|", 2)
        if not own.strip().isdigit():
            continue  # the header
        name = raw.strip()
        packages[name.split(".")[0]] += int(own)
        if len(raw) - len(raw.lstrip()) == 1:  # a top-level import
            if name.split(".")[0] in _RUNTIME_MODULES:
                runtime_us += int(cumulative)
            else:
                # awslambdaric executes the handler file rather than importing it by name,
                # so the handler's own imports are the top-level ones.
                function_us += int(cumulative)
    heaviest = sorted(packages.items(), key=lambda item: -item[1])[:_TOP]
    return {
        "function_ms": round(function_us / 1000, 1),
        "runtime_ms": round(runtime_us / 1000, 1),
        "modules": sum(1 for line in stderr.splitlines() if line.startswith("import time:")) - 1,
        "packages_self_ms": {name: round(us / 1000, 1) for name, us in heaviest},
    }


def cold_report(fn: FunctionProcess, first: Any, warm: Any) -> dict[str, Any]:
    """Init, first and warm durations, and what the cold part waited on."""
    cold_end = first.done_at or fn.started_at
    return {
        "function": fn.spec.logical_id,
        "init_ms": round(fn.init_ms, 1),
        "first_invoke_ms": round(first.duration_ms or 0, 1),
        "warm_invoke_ms": round(warm.duration_ms or 0, 1) if warm is not None else None,
        "cold_ms": round((cold_end - fn.started_at) * 1000, 1),
        "imports": import_profile(fn.stderr()),
        # ms per peer (aws = Secrets Manager/SQS on moto): connect, TLS handshake, other I/O.
        "waits_ms": fn.waits(fn.started_at, cold_end),
    }


def format_report(report: dict[str, Any]) -> str:
    """The human-readable lines of :func:`cold_report`."""
    imports = report["imports"]
    lines = [
        f"{report['function']}: init {report['init_ms']} ms, first invoke "
        f"{report['first_invoke_ms']} ms, warm invoke {report['warm_invoke_ms']} ms",
        f"  cold part {report['cold_ms']} ms: function imports {imports['function_ms']} ms"
        f" ({imports['modules']} modules), runtime imports {imports['runtime_ms']} ms"
        + "".join(
            f", {peer} {sum(kinds.values()):.1f} ms ("
            + ", ".join(f"{kind} {ms}" for kind, ms in sorted(kinds.items()))
            + ")"
            for peer, kinds in sorted(report["waits_ms"].items())
        )
        + ", the rest Python work and interpreter start",
        "  heaviest imports (self ms): "
        + ", ".join(f"{name} {ms}" for name, ms in imports["packages_self_ms"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.rehearsal", description=__doc__)
    parser.add_argument("function", metavar="FN", help="logical id in template.yaml")
    parser.add_argument("event", metavar="EVENT", type=Path, help="event JSON file")
    parser.add_argument("--json", action="store_true", help="the report as JSON on stderr")
    args = parser.parse_args(argv)
    try:
        event = json.loads(args.event.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.event}: {exc}", file=sys.stderr)
        return 2
    try:
        with (
            Rehearsal.open() as rehearsal,
            rehearsal.function(args.function, importtime=True) as fn,
        ):
            first = fn.invoke(event)
            warm = fn.invoke(event)
            sys.stderr.write(fn.stdout())
            report = cold_report(fn, first, warm)
    except RehearsalError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else format_report(report), file=sys.stderr)
    if first.error is not None:
        print(json.dumps(first.error, indent=2))
        return 1
    print(json.dumps(first.result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
