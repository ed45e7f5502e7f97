"""Bytes and CPU of one initiation answer, without I/O (what the 36 variables cost to build).

    python -m devkit.bench.answer_cost [--calls N] [--repeats R] [--no-history]

Builds the answer for a known caller (with three history lines unless ``--no-history``)
``calls`` times per repeat and prints JSON: the answer's size and the CPU time per answer
(``time.process_time``), min and median over the repeats. No database, no Redis.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime

from leadlookup.adapters.migrate import default_organization_snapshot
from leadlookup.domain.models import Lead, Organization
from leadlookup.usecases.initiation import answer

NOW = datetime(2026, 11, 25, 22, 5, tzinfo=UTC)
HISTORY = [
    {"kind": "outbound", "at": "2026-11-25T21:41:00+00:00", "text": "We do! Test ride?"},
    {"kind": "inbound", "at": "2026-11-25T21:40:00+00:00", "text": "Topstone in a 56?"},
    {
        "kind": "call",
        "at": "2026-11-23T18:00:00+00:00",
        "text": "Asked about gravel bikes under $2000; wants a test ride.",
        "classification": "qualified",
    },
]


def main(argv: list[str] | None = None) -> None:
    """Measure and print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m devkit.bench.answer_cost")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-history", action="store_true")
    args = parser.parse_args(argv)
    org = Organization.from_json(default_organization_snapshot())
    lead = Lead(
        id="5e1f0000-0000-4000-8000-0000000000a1",
        organization_id=org.id,
        phone_number="+16045550142",
        phone_number_normalized="16045550142",
        customer_name="Ada",
        status="qualified",
        bike_interest={"type": "gravel"},
        last_summary="Asked about gravel bikes under $2000; wants a test ride.",
        interaction_count=2,
        history=[] if args.no_history else HISTORY,
    )
    call_id = "CA5f0e8a1b2c3d4e5f60718293a4b5c6d7"
    body = json.dumps(answer(org, lead, NOW, call_id))
    per_call_us = []
    for _ in range(args.repeats):
        started = time.process_time()
        for _ in range(args.calls):
            json.dumps(answer(org, lead, NOW, call_id))
        per_call_us.append((time.process_time() - started) / args.calls * 1e6)
    print(
        json.dumps(
            {
                "answer_bytes": len(body.encode()),
                "variables": len(json.loads(body)["dynamic_variables"]),
                "cpu_us_per_answer_min": round(min(per_call_us), 1),
                "cpu_us_per_answer_median": round(statistics.median(per_call_us), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
