"""Profile one path's warm invocations with pyinstrument (where the time of a request goes).

    python -m devkit.bench.profile [initiation_warm|initiation_new_caller|initiation_cache_disabled]
        [--requests N] [--interval S]

The handlers run in this process against the local PostgreSQL and Redis directly (no proxy),
in a database of their own that is dropped afterwards; the profile goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import uuid

from devkit.bench import database
from devkit.bench.cli import make_runtime, quiet_stdout
from devkit.bench.events import EventFactory
from devkit.bench.harness import INITIATION, Functions, apply_env, function_env
from devkit.bench.paths import KNOWN_CALLER, NEW_CALLER_BASE
from devkit.services import ensure_services
from leadlookup import runtime as runtime_module

PATHS = ("initiation_warm", "initiation_new_caller", "initiation_cache_disabled")


def main(argv: list[str] | None = None) -> int:
    """Run the profile; print pyinstrument's text tree."""
    from pyinstrument import Profiler

    p = argparse.ArgumentParser(prog="python -m devkit.bench.profile")
    p.add_argument("path", nargs="?", default="initiation_warm", choices=PATHS)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--interval", type=float, default=0.0005, help="sampling interval (s)")
    args = p.parse_args(argv)
    urls = ensure_services()
    name = f"bici_bench_profile_{uuid.uuid4().hex[:8]}"
    url = database.recreate_database(urls["DATABASE_URL"], name)
    env = function_env(url, urls["REDIS_URL"], f"bench:profile:{name}:", "http://127.0.0.1:9/q")
    apply_env(env)
    functions = Functions()
    handler = functions.handler(INITIATION)
    runtime = make_runtime(env, redis_enabled=args.path != "initiation_cache_disabled")
    runtime_module.set_runtime(runtime)
    events = EventFactory()
    callers = (f"+{NEW_CALLER_BASE + n}" for n in itertools.count())
    caller = (
        (lambda: next(callers)) if args.path == "initiation_new_caller" else lambda: KNOWN_CALLER
    )
    try:
        with quiet_stdout() as out:
            for _ in range(50):
                handler(events.initiation(caller()), functions.context(INITIATION))
            batch = [
                (events.initiation(caller()), functions.context(INITIATION))
                for _ in range(args.requests)
            ]
            profiler = Profiler(interval=args.interval)
            profiler.start()
            for event, context in batch:
                handler(event, context)
            profiler.stop()
            out.write(profiler.output_text(unicode=False, color=False))
    finally:
        with contextlib.suppress(Exception):
            runtime.service.flush_all()
        runtime_module.set_runtime(None)
        database.drop_database(urls["DATABASE_URL"], name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
