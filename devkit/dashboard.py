"""``make dashboard``: the template's CloudWatch dashboard, drawn from a local run's EMF records.

    python -m devkit.dashboard [--out docs/dashboard.png] [--seconds 30]

The real handlers run in this process against the local PostgreSQL and Redis (each behind a
loopback proxy) under a mixed load, with a Redis outage and a database outage on the way; what
the handlers print (EMF, as CloudWatch would ingest it) is captured. The dashboard body is
read from the stack's own template (``templates/monitoring.yaml``, nested in ``template.yaml``)
and every widget is drawn as CloudWatch would: the same metric rows, labels, stacking, axis
limits, annotations and metric math (``FILL``, + - * /). One bin of the local run (1 s) stands
for one period of the widget. AWS-namespace metrics (API Gateway, Lambda) have no local source;
their panels say so.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import math
import os
import random
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from devkit.lambda_env import MONITORING_TEMPLATE, ROOT, load_template

NAMESPACE = "BiciLookups"
Series = list[float]


# -- the dashboard body --------------------------------------------------------------------


def dashboard_body(template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Dashboard resource's body with its ``!Sub`` placeholders filled with local names.

    ``template`` defaults to the monitoring template, where the stack's dashboard is.
    """
    if template is None:
        template = load_template(MONITORING_TEMPLATE)
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    text = body["Fn::Sub"] if isinstance(body, dict) else body
    if isinstance(text, list):
        text = text[0]
    for name in ("AWS::Region", "AWS::StackName"):
        text = text.replace("${" + name + "}", "local")
    while "${" in text:
        start = text.index("${")
        end = text.index("}", start)
        text = text[:start] + text[start + 2 : end] + text[end + 1 :]
    return json.loads(text)


def split_row(row: list[Any]) -> tuple[list[str], dict[str, Any]]:
    """A metric row's fields and its options (the trailing dict, if any)."""
    if row and isinstance(row[-1], dict):
        return [str(f) for f in row[:-1]], row[-1]
    return [str(f) for f in row], {}


# -- EMF records -> per-bin sums -----------------------------------------------------------


def emf_records(text: str) -> list[dict[str, Any]]:
    """Every EMF record (a JSON line with ``_aws``) in captured output."""
    records = []
    for line in text.splitlines():
        if '"_aws"' in line:
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
    return records


Values = dict[str, list[list[float]]]  # metric -> per bin -> every value emitted


def binned(records: Sequence[dict[str, Any]], start_ms: float, bins: int, bin_s: float) -> Values:
    """Every value of each custom metric, per bin (one bin is one period of a widget)."""
    values: Values = defaultdict(lambda: [[] for _ in range(bins)])
    for record in records:
        index = int((record["_aws"]["Timestamp"] - start_ms) / 1000 / bin_s)
        if not 0 <= index < bins:
            continue
        for directive in record["_aws"]["CloudWatchMetrics"]:
            if directive["Namespace"] != NAMESPACE:
                continue
            for metric in directive["Metrics"]:
                value = record.get(metric["Name"])
                found = value if isinstance(value, list) else [value]
                values[metric["Name"]][index].extend(float(v) for v in found if v is not None)
    return dict(values)


def statistic(per_bin: list[list[float]], stat: str) -> Series:
    """One CloudWatch statistic per bin: Sum, Average, Minimum, Maximum, SampleCount, pNN."""
    out: Series = []
    for values in per_bin:
        if not values:
            out.append(math.nan)
        elif stat == "Sum":
            out.append(sum(values))
        elif stat == "Average":
            out.append(sum(values) / len(values))
        elif stat in ("Minimum", "Maximum"):
            out.append(min(values) if stat == "Minimum" else max(values))
        elif stat == "SampleCount":
            out.append(float(len(values)))
        elif stat.startswith("p"):
            ordered = sorted(values)
            rank = max(0, math.ceil(float(stat[1:]) / 100 * len(ordered)) - 1)
            out.append(ordered[rank])
        else:
            raise ValueError(f"unsupported statistic: {stat}")
    return out


# -- metric math ---------------------------------------------------------------------------


def evaluate(expression: str, ids: dict[str, Series], bins: int) -> Series:
    """CloudWatch metric math over equal-length series: ids, numbers, + - * /, ``FILL(x, v)``.

    A missing datapoint is NaN and stays NaN through arithmetic (as in CloudWatch), unless
    ``FILL`` replaces it; a division by zero gives no datapoint.
    """
    tree = ast.parse(expression, mode="eval")

    def value(node: ast.AST) -> Series:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return [float(node.value)] * bins
        if isinstance(node, ast.Name):
            if node.id not in ids:
                raise ValueError(f"metric math names an unknown id: {node.id}")
            return ids[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return [-x for x in value(node.operand)]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id != "FILL" or len(node.args) != 2:
                raise ValueError(f"unsupported metric math function: {ast.unparse(node)}")
            series, fill = value(node.args[0]), value(node.args[1])
            return [f if math.isnan(x) else x for x, f in zip(series, fill, strict=True)]
        if isinstance(node, ast.BinOp):
            ops: dict[type, Callable[[float, float], float]] = {
                ast.Add: lambda a, b: a + b,
                ast.Sub: lambda a, b: a - b,
                ast.Mult: lambda a, b: a * b,
                ast.Div: lambda a, b: a / b if b else math.nan,
            }
            op = ops.get(type(node.op))
            if op is None:
                raise ValueError(f"unsupported operator in: {expression}")
            left, right = value(node.left), value(node.right)
            return [
                math.nan if math.isnan(a) or math.isnan(b) else op(a, b)
                for a, b in zip(left, right, strict=True)
            ]
        raise ValueError(f"unsupported metric math: {ast.unparse(node)}")

    return value(tree)


def widget_lines(
    widget: dict[str, Any], values: Values, bins: int
) -> tuple[list[tuple[str, Series]], list[str]]:
    """The visible lines of a metric widget (label, series) and the rows with no local source."""
    ids: dict[str, Series] = {}
    rows = widget["properties"].get("metrics", [])
    widget_stat = widget["properties"].get("stat", "Average")
    lines: list[tuple[str, Series, bool]] = []
    missing: list[str] = []
    for row in rows:
        fields, options = split_row(row)
        if fields and fields[0] == NAMESPACE:
            per_bin = values.get(fields[1], [[] for _ in range(bins)])
            series = statistic(per_bin, options.get("stat", widget_stat))
            label = options.get("label", fields[1])
        elif fields:
            missing.append(f"{fields[0]} {fields[1]}")
            continue
        else:
            continue  # an expression row: evaluated once every id is known
        if "id" in options:
            ids[options["id"]] = series
        lines.append((label, series, options.get("visible", True)))
    for row in rows:
        fields, options = split_row(row)
        if not fields and "expression" in options:
            series = evaluate(options["expression"], ids, bins)
            ids[options.get("id", options["expression"])] = series
            label = options.get("label", options["expression"])
            lines.append((label, series, options.get("visible", True)))
    return [(label, series) for label, series, visible in lines if visible], missing


# -- drawing -------------------------------------------------------------------------------


def render(
    body: dict[str, Any],
    values: Values,
    bins: int,
    bin_s: float,
    out: Path,
    phases: Sequence[tuple[float, float, str]] = (),
) -> list[str]:
    """Draw every widget at its grid position; the titles drawn, in order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widgets = body["widgets"]
    rows = max(w["y"] + w["height"] for w in widgets)
    unit = 0.55  # inches per grid row
    fig = plt.figure(figsize=(18, rows * unit))
    xs = [i * bin_s for i in range(bins)]
    drawn = []
    for widget in widgets:
        left = widget["x"] / 24
        bottom = 1 - (widget["y"] + widget["height"]) / rows
        width, height = widget["width"] / 24, widget["height"] / rows
        props = widget["properties"]
        if widget["type"] == "text":
            ax = fig.add_axes((left + 0.005, bottom + 0.01, width - 0.01, height - 0.02))
            ax.axis("off")
            text = props.get("markdown", "").replace("## ", "").replace("**", "")
            ax.text(0, 0.5, text, fontsize=9, va="center", wrap=True)
            drawn.append("(text)")
            continue
        ax = fig.add_axes((left + 0.3 / 24, bottom + 0.2 * height, width - 0.5 / 24, 0.68 * height))
        title = props.get("title", "")
        ax.set_title(title, fontsize=9)
        drawn.append(title)
        lines, missing = widget_lines(widget, values, bins)
        if not lines:
            ax.text(
                0.5,
                0.5,
                "no local data: "
                + ", ".join(sorted(set(missing)))
                + "\n(AWS metrics, in CloudWatch only)",
                ha="center",
                va="center",
                fontsize=7,
                transform=ax.transAxes,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for start, end, label in phases:
            ax.axvspan(start, end, color="red", alpha=0.08)
            ax.text(
                (start + end) / 2,
                1.0,
                label,
                fontsize=6,
                ha="center",
                va="top",
                transform=ax.get_xaxis_transform(),
            )
        if props.get("stacked"):
            ax.stackplot(
                xs,
                *[[0 if math.isnan(v) else v for v in s] for _, s in lines],
                labels=[label for label, _ in lines],
                alpha=0.8,
            )
        else:
            for label, series in lines:
                ax.plot(xs, series, label=label, linewidth=1.2)
        y_axis = props.get("yAxis", {}).get("left", {})
        if "min" in y_axis or "max" in y_axis:
            ax.set_ylim(y_axis.get("min"), y_axis.get("max"))
        for line in props.get("annotations", {}).get("horizontal", []):
            ax.axhline(line["value"], color="grey", linestyle="--", linewidth=0.8)
            ax.text(xs[0], line["value"], line.get("label", ""), fontsize=6, va="bottom")
        ax.set_xlim(0, bins * bin_s)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(
            f"seconds of the local run (1 bin = 1 period of {props.get('period', 300)} s)",
            fontsize=6,
        )
        ax.legend(fontsize=6, loc="upper left")
        ax.grid(True, alpha=0.3)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return drawn


# -- the local run -------------------------------------------------------------------------


@contextlib.contextmanager
def captured_fd1() -> Iterator[Path]:
    """File descriptor 1 into a temporary file (the handlers print EMF and logs there)."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    handle, name = tempfile.mkstemp(prefix="bici-emf-", suffix=".log")
    os.dup2(handle, 1)
    os.close(handle)
    try:
        yield Path(name)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_load(seconds: float, seed: int = 11) -> tuple[str, float, list[tuple[float, float, str]]]:
    """A mixed load with a Redis and a database outage; (captured output, start ms, phases)."""
    from devkit.bench import database
    from devkit.bench.events import EventFactory
    from devkit.bench.harness import (
        INITIATION,
        LEAD_UPDATE,
        SMS_PROCESSOR,
        Functions,
        apply_env,
        function_env,
        install_runtime,
    )
    from devkit.proxy import TcpProxy
    from devkit.services import ensure_services
    from leadlookup import container as runtime_module

    urls = ensure_services()
    name = f"bici_dashboard_{uuid.uuid4().hex[:8]}"
    url = database.recreate_database(urls["DATABASE_URL"], name)
    leads = 400
    conn = database.connect(url)
    try:
        database.seed_leads(conn, leads)
        lead_ids = database.lead_ids(conn, leads)
    finally:
        conn.close()
    # Outages at fixed shares of the run: Redis refused, then PostgreSQL refused.
    phases = [
        (0.40 * seconds, 0.55 * seconds, "Redis down"),
        (0.65 * seconds, 0.85 * seconds, "PostgreSQL down"),
    ]
    rng = random.Random(seed)
    weights = [1 / (k**1.1) for k in range(1, leads + 51)]  # 50 callers beyond the seeded
    try:
        with TcpProxy.from_url(url) as pg, TcpProxy.from_url(urls["REDIS_URL"]) as rd:
            env = function_env(
                pg.rewrite_url(url),
                rd.rewrite_url(urls["REDIS_URL"]),
                f"dash:{uuid.uuid4().hex[:8]}:",
                "",
            )
            env.pop("INBOUND_SMS_QUEUE_URL")
            # Short TTLs so that entries expire within the run (stale copies answer then).
            env.update(
                LEAD_CACHE_TTL_SECONDS="4",
                ORG_CACHE_TTL_SECONDS="4",
                ORG_L1_TTL_SECONDS="1",
                REDIS_BREAKER_COOLDOWN_MS="1000",
            )
            apply_env(env)
            functions = Functions()
            handlers = {n: functions.handler(n) for n in (INITIATION, SMS_PROCESSOR, LEAD_UPDATE)}
            events = EventFactory()
            install_runtime(env)
            start = time.time()
            with captured_fd1() as output:
                while (now := time.time() - start) < seconds:
                    rd.set_mode("cut" if phases[0][0] <= now < phases[0][1] else "pass")
                    pg.set_mode("cut" if phases[1][0] <= now < phases[1][1] else "pass")
                    lead = rng.choices(range(len(weights)), weights=weights)[0]
                    phone = database.lead_phone(lead)
                    op = rng.choices(("initiation", "sms", "patch"), weights=(80, 15, 5))[0]
                    if op == "patch" and lead < leads:
                        fn, event = LEAD_UPDATE, events.patch(lead_ids[lead])
                    elif op == "sms":
                        fn, event = SMS_PROCESSOR, events.sqs_batch([phone])
                    else:
                        fn, event = INITIATION, events.initiation(phone)
                    with contextlib.suppress(Exception):
                        handlers[fn](event, functions.context(fn))
                    time.sleep(0.004)
                text = output.read_text()
            output.unlink()
    finally:
        runtime_module.set_runtime(None)
        database.drop_database(urls["DATABASE_URL"], name)
    return text, start * 1000, phases


def main(argv: list[str] | None = None) -> int:
    """Run the local load, render the template's dashboard, print what was drawn."""
    p = argparse.ArgumentParser(prog="python -m devkit.dashboard")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args(argv)
    text, start_ms, phases = run_load(args.seconds)
    records = emf_records(text)
    bins = int(args.seconds)
    values = binned(records, start_ms, bins, 1.0)
    drawn = render(dashboard_body(), values, bins, 1.0, args.out, phases)
    totals = {name: int(sum(map(sum, per_bin))) for name, per_bin in sorted(values.items())}
    print(f"{len(records)} EMF records; metric totals: {json.dumps(totals)}")
    print(f"widgets drawn: {len(drawn)}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
