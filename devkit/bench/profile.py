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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from devkit.bench import database
from devkit.bench.cli import make_runtime, quiet_stdout
from devkit.bench.events import EventFactory
from devkit.bench.harness import INITIATION, Functions, apply_env, function_env
from devkit.bench.paths import KNOWN_CALLER, NEW_CALLER_BASE
from devkit.services import ensure_services
from leadlookup import container as runtime_module
from leadlookup.container import Runtime

PATHS = ("initiation_warm", "initiation_new_caller", "initiation_cache_disabled")
WARMUP = 50


@dataclass
class Rig:
    """The initiation handler, warmed up, with a way to build the requests of one path."""

    handler: Callable[[dict[str, Any], Any], dict[str, Any]]
    runtime: Runtime
    requests: Callable[[int], list[tuple[dict[str, Any], Any]]]
    out: IO[str]  # the real stdout (the handlers' own output goes to /dev/null)


@contextlib.contextmanager
def initiation_rig(path: str) -> Iterator[Rig]:
    """The handler of ``path`` in this process, in a database of its own (dropped after)."""
    urls = ensure_services()
    name = f"bici_bench_profile_{uuid.uuid4().hex[:8]}"
    url = database.recreate_database(urls["DATABASE_URL"], name)
    env = function_env(url, urls["REDIS_URL"], f"bench:profile:{name}:", "http://127.0.0.1:9/q")
    apply_env(env)
    functions = Functions()
    handler = functions.handler(INITIATION)
    runtime = make_runtime(env, redis_enabled=path != "initiation_cache_disabled")
    runtime_module.set_runtime(runtime)
    events = EventFactory()
    callers = (f"+{NEW_CALLER_BASE + n}" for n in itertools.count())
    caller = (lambda: next(callers)) if path == "initiation_new_caller" else lambda: KNOWN_CALLER

    def requests(count: int) -> list[tuple[dict[str, Any], Any]]:
        return [(events.initiation(caller()), functions.context(INITIATION)) for _ in range(count)]

    try:
        with quiet_stdout() as out:
            for event, context in requests(WARMUP):
                handler(event, context)
            yield Rig(handler, runtime, requests, out)
    finally:
        with contextlib.suppress(Exception):
            runtime.service.flush_all()
        runtime_module.set_runtime(None)
        database.drop_database(urls["DATABASE_URL"], name)


def main(argv: list[str] | None = None) -> int:
    """Run the profile; print pyinstrument's text tree."""
    from pyinstrument import Profiler

    p = argparse.ArgumentParser(prog="python -m devkit.bench.profile")
    p.add_argument("path", nargs="?", default="initiation_warm", choices=PATHS)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--interval", type=float, default=0.0005, help="sampling interval (s)")
    args = p.parse_args(argv)
    with initiation_rig(args.path) as rig:
        batch = rig.requests(args.requests)
        profiler = Profiler(interval=args.interval)
        profiler.start()
        for event, context in batch:
            rig.handler(event, context)
        profiler.stop()
        rig.out.write(profiler.output_text(unicode=False, color=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
