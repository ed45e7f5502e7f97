"""The EMF record each invocation writes: what CloudWatch extracts metrics from."""

from __future__ import annotations

import json
from typing import Any

import pytest

from leadlookup.metrics import NAMESPACE, SERVICE_NAME
from leadlookup.observability import METRICS_DISABLED_ENV, EmbeddedMetrics


def _records(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _metric_values(record: dict[str, Any]) -> dict[str, Any]:
    """Each metric the record declares, with its unit and its value at the root."""
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    return {m["Name"]: (m["Unit"], record[m["Name"]]) for m in directive["Metrics"]}


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> EmbeddedMetrics:
    monkeypatch.delenv(METRICS_DISABLED_ENV, raising=False)
    return EmbeddedMetrics(NAMESPACE, SERVICE_NAME)


def test_emf_one_record_per_invocation_with_counts_summed(
    metrics: EmbeddedMetrics, capsys: pytest.CaptureFixture[str]
) -> None:
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: object) -> str:
        metrics.count("LeadCacheHit")
        metrics.count("OrgCacheHit")
        metrics.count("LeadCacheHit")
        metrics.milliseconds("SmsReplyLatency", 812.349)
        metrics.milliseconds("SmsReplyLatency", 90.0)
        return "answer"

    assert handler({}, None) == "answer"

    (record,) = _records(capsys.readouterr().out)
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [["service"]] and record["service"] == SERVICE_NAME
    assert isinstance(record["_aws"]["Timestamp"], int)
    assert _metric_values(record) == {
        "LeadCacheHit": ("Count", 2),
        "OrgCacheHit": ("Count", 1),
        "SmsReplyLatency": ("Milliseconds", [812.3, 90.0]),
    }


def test_emf_nothing_recorded_writes_nothing_and_the_next_invocation_starts_empty(
    metrics: EmbeddedMetrics, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics.flush()
    metrics.count("LeadCacheMiss")
    metrics.flush()
    metrics.flush()

    (record,) = _records(capsys.readouterr().out)
    assert _metric_values(record) == {"LeadCacheMiss": ("Count", 1)}


def test_emf_is_written_when_the_handler_raises(
    metrics: EmbeddedMetrics, capsys: pytest.CaptureFixture[str]
) -> None:
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: object) -> None:
        metrics.count("InitiationDegraded")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        handler({}, None)

    (record,) = _records(capsys.readouterr().out)
    assert _metric_values(record) == {"InitiationDegraded": ("Count", 1)}


def test_emf_disabled_writes_nothing(
    metrics: EmbeddedMetrics, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(METRICS_DISABLED_ENV, "true")
    metrics.count("LeadCacheHit")
    metrics.flush()

    assert capsys.readouterr().out == ""


def test_emf_respects_the_format_limits_of_100_metrics_and_100_values(
    metrics: EmbeddedMetrics, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(150):
        metrics.count(f"Metric{n}")
    metrics.flush()
    for _ in range(101):
        metrics.milliseconds("SmsReplyLatency", 1.0)
    metrics.flush()

    records = _records(capsys.readouterr().out)
    declared = [_metric_values(r) for r in records]
    assert [len(d) for d in declared] == [100, 50, 1, 1]
    assert sorted(n for d in declared[:2] for n in d) == sorted(f"Metric{n}" for n in range(150))
    assert [len(d["SmsReplyLatency"][1]) for d in declared[2:]] == [100, 1]


@pytest.mark.parametrize("name", ["Lead Cache Hit", 'Quoted"Name', "Zürich", "back\\slash"])
def test_emf_a_name_that_needs_escaping_still_makes_valid_json(
    metrics: EmbeddedMetrics, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    metrics.count(name)
    metrics.count("OrgCacheHit")
    metrics.flush()

    (record,) = _records(capsys.readouterr().out)
    assert _metric_values(record) == {name: ("Count", 1), "OrgCacheHit": ("Count", 1)}


def test_emf_counts_and_samples_together_declare_each_with_its_unit(
    metrics: EmbeddedMetrics, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics.count("SmsReplySent")
    metrics.milliseconds("SmsReplyLatency", 12.34)
    metrics.count("SmsReplySent")
    metrics.flush()
    metrics.count("SmsReplySent")
    metrics.flush()

    first, second = _records(capsys.readouterr().out)
    assert _metric_values(first) == {
        "SmsReplySent": ("Count", 2),
        "SmsReplyLatency": ("Milliseconds", [12.3]),
    }
    assert _metric_values(second) == {"SmsReplySent": ("Count", 1)}
