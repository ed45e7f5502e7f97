"""Percentiles and summaries of latency samples and counted round trips."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(ms: Sequence[float]) -> dict[str, Any]:
    """n, p50, p90, p99, max and mean of latencies in milliseconds (3 decimals)."""
    if not ms:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(ms)
    return {
        "n": len(ordered),
        "p50": round(percentile(ordered, 50), 3),
        "p90": round(percentile(ordered, 90), 3),
        "p99": round(percentile(ordered, 99), 3),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


def count_summary(counts: Sequence[int]) -> dict[str, Any]:
    """The typical (median), min, max and mean of per-request counts."""
    if not counts:
        return {"median": None, "min": None, "max": None, "mean": None}
    return {
        "median": statistics.median_low(counts),
        "min": min(counts),
        "max": max(counts),
        "mean": round(statistics.fmean(counts), 3),
    }


def ratio(value: float | None, floor: float | None) -> float | None:
    """``value / floor`` to 2 decimals, or None when either is missing or the floor is 0."""
    if value is None or not floor:
        return None
    return round(value / floor, 2)
