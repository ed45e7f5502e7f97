"""Compare the mixed-load runs of two bench results: miss causes and hit rate over time.

    python -m devkit.bench.compare BEFORE.json AFTER.json OUT.png [--labels before,after]

Prints a Markdown table of the lead misses after warm-up by cause and draws the per-second
lead hit rate of both runs into one chart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

CAUSES = ("first_touch", "after_write", "expired", "error", "other")


def mixed_run(result: dict[str, Any]) -> dict[str, Any]:
    """The ``mixed`` load summary of one bench.json."""
    return next(run for run in result["load"] if run["name"] == "mixed")


def table(runs: dict[str, dict[str, Any]]) -> str:
    """Misses after warm-up by cause, and hit rates, one column per run."""
    names = list(runs)
    lines = [
        "| lead lookups after warm-up | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for cause in CAUSES:
        counts = [runs[n]["lead_misses_after_warmup_by_cause"].get(cause, 0) for n in names]
        lines.append(
            f"| misses: {cause.replace('_', ' ')} | " + " | ".join(map(str, counts)) + " |"
        )
    for key, label in (
        ("lead_hit_rate_after_warmup", "hit rate"),
        ("lead_hit_rate_after_warmup_repeat_lookups", "hit rate of repeat lookups"),
    ):
        rates = [f"{100 * (runs[n][key] or 0):.1f}%" for n in names]
        lines.append(f"| {label} | " + " | ".join(rates) + " |")
    return "\n".join(lines)


def chart(path: Path, runs: dict[str, dict[str, Any]]) -> None:
    """Per-second lead hit rate of each run, the warm-up shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.8))
    warmup = 0.0
    for name, run in runs.items():
        series = run["per_second"]
        xs = [s["second"] for s in series if s["lead_hit_rate"] is not None]
        ys = [100 * s["lead_hit_rate"] for s in series if s["lead_hit_rate"] is not None]
        ax.plot(xs, ys, marker="o", markersize=3, label=name)
        warmup = max(warmup, float(run["warmup_s"]))
    ax.axvspan(0, warmup, color="grey", alpha=0.15, label="warm-up")
    ax.set_ylim(0, 100)
    ax.set_xlabel("second of the mixed load run")
    ax.set_ylabel("lead cache hit rate (%)")
    ax.set_title("Mixed load (80% initiations, 15% SMS, 5% PATCH): lead hit rate", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Print the table; write the chart."""
    p = argparse.ArgumentParser(prog="python -m devkit.bench.compare")
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--labels", default="before,after")
    args = p.parse_args(argv)
    labels = args.labels.split(",")
    runs = {
        labels[0]: mixed_run(json.loads(args.before.read_text())),
        labels[1]: mixed_run(json.loads(args.after.read_text())),
    }
    print(table(runs))
    chart(args.out, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
