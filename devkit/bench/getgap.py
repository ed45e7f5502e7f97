"""What one Redis GET costs after a pause of work since the previous one (the floors' bias).

    python -m devkit.bench.getgap [--requests 1000] [--rounds 3] [--out bench-results]

The bench's ``redis_get`` floor sends GETs back to back. A request's GET comes after the work
that precedes it instead, and on a virtual machine whose idle CPUs sleep, the same GET then
costs more: the server (and the bench's proxy) must wake first. This times one GET, straight
to the local Redis, after 0 to 800 microseconds of busy work in this process, the rounds
interleaved so that a burst elsewhere lands on every pause alike. It is why the warm path is
judged against the GET it contains (``redis_get_in_request``), not only against the floor.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import redis

from devkit.bench.stats import latency_summary
from devkit.services import ensure_services

PAUSES_US = (0, 50, 100, 200, 400, 800)
KEY = "bench:getgap"


def _busy(microseconds: int) -> None:
    # Busy, not asleep: a handler computes between its GETs, it does not sleep.
    end = time.perf_counter_ns() + microseconds * 1000
    while time.perf_counter_ns() < end:
        pass


def measure(client: redis.Redis, requests: int, rounds: int) -> dict[int, list[float]]:
    """GET latencies (ms) after each pause, ``requests`` per pause over ``rounds`` rounds."""
    per_round = max(1, requests // rounds)
    samples: dict[int, list[float]] = {pause: [] for pause in PAUSES_US}
    for _ in range(rounds):
        for pause in PAUSES_US:
            for _ in range(per_round):
                _busy(pause)
                start = time.perf_counter_ns()
                client.get(KEY)
                samples[pause].append((time.perf_counter_ns() - start) / 1e6)
    return samples


def main(argv: list[str] | None = None) -> int:
    """Print the table; write getgap.json."""
    p = argparse.ArgumentParser(prog="python -m devkit.bench.getgap")
    p.add_argument("--requests", type=int, default=1000, help="GETs per pause")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    args = p.parse_args(argv)
    url = ensure_services()["REDIS_URL"]
    client = redis.Redis.from_url(url, protocol=2, decode_responses=True)
    try:
        client.set(KEY, "x")
        for _ in range(200):
            client.get(KEY)
        samples = measure(client, args.requests, args.rounds)
        client.delete(KEY)
    finally:
        client.close()
    summary = {pause: latency_summary(ms) for pause, ms in samples.items()}
    base = summary[0]["p50"]
    print("pause before the GET (us)   GET p50 (ms)   p90 (ms)   x back to back")
    for pause, row in summary.items():
        ratio = row["p50"] / base
        print(f"{pause:>25}   {row['p50']:>12.3f}   {row['p90']:>8.3f}   {ratio:>14.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "getgap.json"
    out.write_text(json.dumps({"redis_url": url, "pauses_us": summary}, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
