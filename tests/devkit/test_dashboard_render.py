"""make dashboard: the template's own dashboard body drawn from EMF records."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from devkit.dashboard import binned, dashboard_body, evaluate, render, widget_lines
from leadlookup import metrics

START_MS = 1_000_000.0


def _record(second: float, **values: float) -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": START_MS + second * 1000,
            "CloudWatchMetrics": [
                {
                    "Namespace": metrics.NAMESPACE,
                    "Dimensions": [["service"]],
                    "Metrics": [{"Name": n, "Unit": "Count"} for n in values],
                }
            ],
        },
        "service": metrics.SERVICE_NAME,
        **{name: [value] for name, value in values.items()},
    }


def _hit_rate_widget(body: dict[str, Any]) -> dict[str, Any]:
    return next(w for w in body["widgets"] if w["properties"].get("title") == "Cache hit rate (%)")


def test_dashboard_render_draws_every_widget_of_the_template(tmp_path: Path) -> None:
    body = dashboard_body()
    records = [_record(s, **dict.fromkeys(metrics.ALL_METRICS, 1.0)) for s in (0.1, 1.5, 2.2)]
    out = tmp_path / "dashboard.png"

    drawn = render(body, binned(records, START_MS, 3, 1.0), 3, 1.0, out)

    expected = [w["properties"].get("title", "(text)") for w in body["widgets"]]
    expected = [
        t if w["type"] == "metric" else "(text)"
        for t, w in zip(expected, body["widgets"], strict=True)
    ]
    assert drawn == expected
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dashboard_every_graphed_custom_metric_has_a_local_series() -> None:
    body = dashboard_body()
    values = binned([_record(0.5, **dict.fromkeys(metrics.ALL_METRICS, 2.0))], START_MS, 1, 1.0)

    for widget in (w for w in body["widgets"] if w["type"] == "metric"):
        lines, missing = widget_lines(widget, values, 1)
        assert not [m for m in missing if m.startswith(metrics.NAMESPACE)]
        for label, series in lines:
            if any(metrics.NAMESPACE in str(r) for r in widget["properties"]["metrics"]):
                assert series, label


def test_dashboard_hit_rate_metric_math_is_the_templates_expression() -> None:
    widget = _hit_rate_widget(dashboard_body())
    records = [
        _record(0.2, LeadCacheHit=3, LeadCacheMiss=1, OrgCacheHit=1),
        _record(0.7, LeadCacheHit=3),
        _record(1.4, LeadCacheError=1, LeadCacheBypass=1),
    ]

    lines, _ = widget_lines(widget, binned(records, START_MS, 3, 1.0), 3)

    rates = dict(lines)
    assert rates["Lead cache"][:2] == [6 / 7 * 100, 0.0]
    assert math.isnan(rates["Lead cache"][2])  # 0 / 0: no datapoint, as in CloudWatch
    assert rates["Org cache"][0] == 100.0


def test_dashboard_metric_math_keeps_missing_datapoints_missing_without_fill() -> None:
    ids = {"a": [1.0, math.nan], "b": [2.0, 2.0]}

    result = evaluate("a + b * 2", ids, 2)
    filled = evaluate("FILL(a, 0) + b", ids, 2)

    assert result[0] == 5.0 and math.isnan(result[1])
    assert filled == [3.0, 2.0]
