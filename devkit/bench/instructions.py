"""Instructions per warm initiation besides its Redis GET: the handler's own work, counted.

    python -m devkit.bench.instructions [--requests 1000] [--out bench-results]

Timings of a 0.2 ms request move by 20-50% from run to run on a shared VM, more than most
changes to the warm path do. Instructions executed barely move: this counts them with
valgrind's callgrind (two runs of the same code here: 429,545 and 430,251 a request).

Two processes run the same rig under valgrind, the warm initiation of
``devkit.bench.profile``, and build the same ``--requests`` events; one invokes the handler
for each, the other for none. The difference, divided by the count, is the instructions of
one request, with the Redis GET answered in-process from the bytes a real GET returned: what
is left is everything the handler does besides the GET (the GET itself, redis-py and the
socket, is what the 2x target is measured against). The garbage collector is off while the
requests run, so its passes do not land on one run and not the other.

It needs ``valgrind`` on PATH (Debian: ``apt-get install valgrind``); under it Python runs
about 50 times slower, so a run takes 2-3 minutes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from devkit.bench.profile import initiation_rig

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def _child(requests: int, invoke: bool) -> int:
    with initiation_rig("initiation_warm") as rig:
        backend = rig.runtime.cache.backend
        assert backend is not None, "the warm path needs the cache on"
        real_get = backend.get
        served: dict[str, str | None] = {}

        def get_in_process(key: str) -> str | None:
            if key not in served:
                served[key] = real_get(key)
            return served[key]

        backend.get = get_in_process  # type: ignore[method-assign]
        rig.handler(*rig.requests(1)[0])  # the one real GET, in both processes
        batch = rig.requests(requests)
        answered = 0
        gc.collect()
        gc.disable()
        try:
            for event, context in batch if invoke else ():
                answered += rig.handler(event, context)["statusCode"] == 200
        finally:
            gc.enable()
        # For the test of this rig (valgrind's count goes to stderr; this line is not timed).
        summary = {"answered_200": answered, "real_gets": len(served)}
        rig.out.write(json.dumps(summary) + "\n")
    return 0


def _count(requests: int, invoke: bool) -> subprocess.Popen[str]:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "devkit.bench.instructions",
        "--child",
        "--requests",
        str(requests),
    ]
    if invoke:
        command.append("--invoke")
    # A fixed hash seed: dict and set layouts, and so the work done, are the same every run.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _collected(process: subprocess.Popen[str]) -> int:
    _out, err = process.communicate()
    match = _COLLECTED.search(err)
    if process.returncode != 0 or match is None:
        raise SystemExit(f"valgrind run failed (exit {process.returncode}):\n{err[-2000:]}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    """Print the table; write instructions.json."""
    p = argparse.ArgumentParser(prog="python -m devkit.bench.instructions")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--invoke", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.requests < 1:
        p.error("--requests must be at least 1")
    if args.child:
        return _child(args.requests, args.invoke)
    if shutil.which("valgrind") is None:
        print("valgrind is not on PATH (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    # Both at once: two cores, and neither run's count depends on the other's timing.
    idle, invoked = _count(args.requests, False), _count(args.requests, True)
    base, total = _collected(idle), _collected(invoked)
    per_request = (total - base) / args.requests
    result: dict[str, Any] = {
        "path": "initiation_warm",
        "get": "answered in-process (the bytes of one real GET)",
        "requests": args.requests,
        "instructions_without_requests": base,
        "instructions_with_requests": total,
        "instructions_per_request": round(per_request),
    }
    print("warm initiation, Redis GET answered in-process (valgrind --tool=callgrind)")
    print(f"  requests                         {args.requests:>14,}")
    print(f"  instructions, none invoked       {base:>14,}")
    print(f"  instructions, all invoked        {total:>14,}")
    print(f"  instructions per request         {round(per_request):>14,}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "instructions.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
