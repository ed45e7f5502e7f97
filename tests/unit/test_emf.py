"""The EMF record each invocation writes: what CloudWatch extracts metrics from."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider import cold_start as powertools_cold_start

from leadlookup.metrics import COLD_START, NAMESPACE, SERVICE_NAME
from leadlookup.observability import (
    DEV_ENV,
    FUNCTION_NAME_ENV,
    INITIALIZATION_TYPE_ENV,
    METRICS_DISABLED_ENV,
    NAMESPACE_ENV,
    SERVICE_NAME_ENV,
    EmbeddedMetrics,
)

POWERTOOLS_ENV = (
    METRICS_DISABLED_ENV,
    DEV_ENV,
    NAMESPACE_ENV,
    SERVICE_NAME_ENV,
    FUNCTION_NAME_ENV,
    INITIALIZATION_TYPE_ENV,
)


def _records(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _metric_values(record: dict[str, Any]) -> dict[str, Any]:
    """Each metric the record declares, with its unit and its value at the root."""
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    return {m["Name"]: (m["Unit"], record[m["Name"]]) for m in directive["Metrics"]}


class Context:
    """What a Lambda context object holds that the ColdStart metric reads."""

    function_name = "stack-LeadUpdateFunction-Ab12Cd34"


@pytest.fixture(autouse=True)
def no_powertools_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in POWERTOOLS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def metrics() -> EmbeddedMetrics:
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


# -- ColdStart and Powertools' variables ---------------------------------------------------


def _cold_starts(out: str) -> list[dict[str, Any]]:
    return [r for r in _records(out) if COLD_START in r]


def _powertools_cold_start(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The record Powertools Metrics itself writes for a cold start (the reference)."""
    powertools_cold_start.reset_cold_start_flag()
    reference = Metrics(namespace=NAMESPACE, service=SERVICE_NAME)

    @reference.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: object) -> None:
        reference.add_metric(name="LeadCacheHit", unit=MetricUnit.Count, value=1)

    handler({}, Context())
    [record] = _cold_starts(capsys.readouterr().out)
    return record


def _shape(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its timestamp."""
    return {**record, "_aws": {**record["_aws"], "Timestamp": None}}


def test_emf_cold_start_is_written_once_per_container_as_powertools_writes_it(
    metrics: EmbeddedMetrics, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = _powertools_cold_start(capsys)

    @metrics.log_metrics
    def handler(event: dict[str, Any], context: object) -> None:
        metrics.count("LeadCacheHit")

    for _ in range(3):
        handler({}, Context())
    first = capsys.readouterr().out
    metrics.reset()  # a new container
    handler({}, Context())
    second = capsys.readouterr().out

    [cold] = _cold_starts(first)
    assert _shape(cold) == _shape(reference)
    assert (cold["function_name"], cold["service"]) == (Context.function_name, SERVICE_NAME)
    assert len(_cold_starts(second)) == 1
    # The invocations' own records are unchanged: one per invocation, without ColdStart.
    assert [_metric_values(r) for r in _records(first) if COLD_START not in r] == [
        {"LeadCacheHit": ("Count", 1)}
    ] * 3


def test_emf_cold_start_is_written_when_the_first_invocation_raises(
    metrics: EmbeddedMetrics, capsys: pytest.CaptureFixture[str]
) -> None:
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: object) -> None:
        raise RuntimeError("boom")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            handler({}, Context())

    assert len(_cold_starts(capsys.readouterr().out)) == 1


@pytest.mark.parametrize(
    ("variables", "context"),
    [
        ({}, None),  # no Lambda context: no function to name
        ({INITIALIZATION_TYPE_ENV: "provisioned-concurrency"}, Context()),
        ({METRICS_DISABLED_ENV: "true"}, Context()),
        ({DEV_ENV: "true"}, Context()),
    ],
    ids=["no context", "provisioned", "metrics disabled", "dev mode"],
)
def test_emf_cold_start_is_not_written_where_powertools_writes_none(
    variables: dict[str, str],
    context: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    metrics = EmbeddedMetrics()

    @metrics.log_metrics
    def handler(event: dict[str, Any], context: object) -> None:
        pass

    handler({}, context)
    handler({}, context)

    assert _cold_starts(capsys.readouterr().out) == []


def test_emf_honours_powertools_variables_for_names_and_the_cold_start_function(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(NAMESPACE_ENV, "OtherNamespace")
    monkeypatch.setenv(SERVICE_NAME_ENV, "other-service")
    monkeypatch.setenv(FUNCTION_NAME_ENV, "named-by-variable")
    metrics = EmbeddedMetrics()

    @metrics.log_metrics
    def handler(event: dict[str, Any], context: object) -> None:
        metrics.count("LeadCacheHit")

    handler({}, Context())

    cold, record = _records(capsys.readouterr().out)
    for written in (cold, record):
        (directive,) = written["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "OtherNamespace"
        assert written["service"] == "other-service"
    assert cold["function_name"] == "named-by-variable"


@pytest.mark.parametrize(
    ("variables", "written"),
    [
        ({}, True),
        ({METRICS_DISABLED_ENV: "1"}, False),
        ({DEV_ENV: "true"}, False),
        ({DEV_ENV: "true", METRICS_DISABLED_ENV: "false"}, True),
        ({METRICS_DISABLED_ENV: "no"}, True),
    ],
)
def test_emf_disabled_as_powertools_decides(
    variables: dict[str, str],
    written: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    metrics = EmbeddedMetrics()

    metrics.count("LeadCacheHit")
    metrics.flush()

    assert bool(_records(capsys.readouterr().out)) is written
