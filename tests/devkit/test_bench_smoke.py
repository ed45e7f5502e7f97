"""`make bench` in miniature: a --quick run must produce every section and meet the targets
that are counts (round trips counted at the proxies, never timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATHS = (
    "initiation_warm",
    "initiation_new_caller",
    "initiation_cache_disabled",
    "sms_webhook",
    "sms_processor",
    "lead_patch",
    "inbox_page",
    "inbox_unchanged",
)
CONDITIONS = ("local", "remote_pg25_redis0.5", "region_pg1_redis0.5")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, service_urls: dict[str, str]) -> dict[str, Any]:
    """The JSON of one quick run, in a database and output folder of its own."""
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, **service_urls}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "devkit.bench",
            "--quick",
            "--out",
            str(out),
            "--database",
            f"bici_bench_smoke_{uuid.uuid4().hex[:8]}",
            "--drop-database",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    result: dict[str, Any] = json.loads((out / "bench.json").read_text())
    result["_out"] = str(out)
    return result


def test_bench_quick_run_reports_every_section(bench: dict[str, Any]) -> None:
    conditions = bench["conditions"]

    assert {"meta", "conditions", "floors_direct", "cold_start", "load", "scale", "targets"} <= set(
        bench
    )
    assert set(conditions) == set(CONDITIONS)
    for condition in conditions.values():
        assert set(condition["floors"]) == {"redis_get", "pg_select_1", "redis_get_in_request"}
        # The warm path's own GET, one per warm request: it is what the 2x target divides by.
        assert (
            condition["floors"]["redis_get_in_request"]["n"]
            == condition["paths"]["initiation_warm"]["n"]
        )
        assert set(condition["paths"]) == set(PATHS)
        assert all(path["n"] > 0 and path["errors"] == 0 for path in condition["paths"].values())
    assert len(bench["cold_start"]["functions"]) == 5
    assert all(fn["errors"] == 0 for fn in bench["cold_start"]["functions"].values())
    assert bench["load"][0]["requests"] > 0 and bench["load"][0]["per_second"]
    assert bench["scale"][0]["leads"] == 1000
    assert (Path(bench["_out"]) / bench["chart"]).stat().st_size > 0


def test_bench_floors_cost_one_round_trip_each(bench: dict[str, Any]) -> None:
    floors = bench["conditions"]["local"]["floors"]

    assert floors["redis_get"]["redis_round_trips"]["max"] == 1
    assert floors["redis_get"]["db_round_trips"]["max"] == 0
    assert floors["pg_select_1"]["db_round_trips"]["max"] == 1
    assert floors["pg_select_1"]["redis_round_trips"]["max"] == 0


def test_bench_warm_initiation_needs_no_database_and_one_redis_round_trip(
    bench: dict[str, Any],
) -> None:
    warm = bench["conditions"]["local"]["paths"]["initiation_warm"]

    assert warm["db_round_trips"]["max"] == 0
    assert warm["redis_round_trips"]["max"] <= 1


def test_bench_new_caller_needs_at_most_two_database_round_trips(bench: dict[str, Any]) -> None:
    new = bench["conditions"]["local"]["paths"]["initiation_new_caller"]

    assert new["db_round_trips"]["max"] <= 2
    assert new["db_round_trips"]["min"] >= 1  # the lead really was looked up in the database


def test_bench_inbox_page_is_one_database_round_trip_and_an_unchanged_poll_none(
    bench: dict[str, Any],
) -> None:
    paths = bench["conditions"]["local"]["paths"]
    page, poll = paths["inbox_page"], paths["inbox_unchanged"]

    # The page: its store's change counter (Redis) and the page itself (PostgreSQL).
    assert (page["db_round_trips"]["max"], page["redis_round_trips"]["max"]) == (1, 1)
    assert (poll["db_round_trips"]["max"], poll["redis_round_trips"]["max"]) == (0, 1)


def test_bench_instructions_rig_answers_every_request_from_one_real_get(
    service_urls: dict[str, str],
) -> None:
    # The instruction count's claim: the requests it counts do everything but the Redis GET,
    # which is answered in-process from the one real GET (run here without valgrind).
    env = {**os.environ, **service_urls}

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "devkit.bench.instructions",
            "--child",
            "--invoke",
            "--requests",
            "7",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary == {"answered_200": 7, "real_gets": 1}
