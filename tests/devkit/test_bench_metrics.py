"""`python -m devkit.bench.metrics` in miniature: both writers see the same metric calls on
the real handlers, and every section of the report is there (counts, never timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devkit.bench.metrics import COLD_FUNCTIONS, WRITERS

ROOT = Path(__file__).resolve().parents[2]


def test_bench_metrics_small_run_compares_both_writers_on_the_same_calls(
    tmp_path: Path, service_urls: dict[str, str]
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devkit.bench.metrics",
            "--requests",
            "5",
            "--rounds",
            "2",
            "--cold-runs",
            "1",
            "--out",
            str(tmp_path),
            "--build-dir",
            str(tmp_path / "no-build"),  # the source tree: no `sam build` needed here
        ],
        cwd=ROOT,
        env={**os.environ, **service_urls},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "metrics.json").read_text())
    warm = report["warm"]
    assert set(warm) == {"sms_processor", "lead_patch", "lead_get"}
    for path, by_writer in warm.items():
        assert set(by_writer) == set(WRITERS), path
        calls = {writer: row["metric_calls_per_invocation"] for writer, row in by_writer.items()}
        assert len(set(calls.values())) == 1, (path, calls)  # the same calls, either writer
        assert all(row["requests"] == 10 for row in by_writer.values()), path
    # A queued text counts its cache lookups; reading a lead counts nothing.
    assert warm["sms_processor"]["layer"]["metric_calls_per_invocation"] >= 1
    assert warm["lead_get"]["layer"]["metric_calls_per_invocation"] == 0
    assert report["cold"]["code"] == "source tree"
    assert all(report["cold"][function]["runs"] == 1 for function in COLD_FUNCTIONS)
    assert "cold start, Powertools Metrics on top of each function" in result.stdout
