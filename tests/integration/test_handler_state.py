"""Per-invocation and per-container state: Powertools Logger keys added in one invocation
never reach the next one in the same container (``inject_lambda_context(clear_state=True)`` on
every handler), and Powertools' ColdStart metric is written once per container."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from leadlookup.metrics import COLD_START, SERVICE_NAME
from leadlookup.observability import DEV_ENV, FUNCTION_NAME_ENV, METRICS_DISABLED_ENV, logger
from leadlookup.usecases.lookups import LookupService
from tests.conftest import FUNCTIONS, lambda_context
from tests.support.faults import reset_container, sample, with_lead_id

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]
HANDLERS = sorted(p.parent.name for p in FUNCTIONS.glob("*/app.py"))


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The Powertools log lines (JSON) the handlers write."""
    stream = io.StringIO()
    handler = getattr(logging.getLogger(logger.service), "powertools_handler", None)
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def _records(stream: io.StringIO, message: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == message]


def test_handler_state_a_key_logged_in_one_invocation_is_gone_in_the_next(
    app_env: dict[str, str],
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    log_lines: io.StringIO,
) -> None:
    tagged: list[str] = []

    def failing_get_lead(_self: LookupService, lead_id: object) -> Any:
        if not tagged:  # the first invocation tags its log lines with the lead it handles
            tagged.append(str(lead_id))
            logger.append_keys(lead_id=str(lead_id))
        raise RuntimeError("a bug: answered 500 and logged")

    monkeypatch.setattr(LookupService, "get_lead", failing_get_lead)
    first = with_lead_id(sample("lead_update/get"), "5e1f0000-0000-4000-8000-00000000aaa1")
    second = with_lead_id(sample("lead_update/get"), "5e1f0000-0000-4000-8000-00000000aaa2")
    second["requestContext"]["requestId"] = "second-request"

    answers = [
        invoke("lead_update", first)["statusCode"],
        invoke("lead_update", second)["statusCode"],
    ]

    one, two = _records(log_lines, "internal error")
    assert answers == [500, 500]
    assert one["lead_id"] == tagged[0] and one["correlation_id"] != "second-request"
    assert "lead_id" not in two and two["correlation_id"] == "second-request"


@pytest.mark.parametrize("function_dir", HANDLERS)
def test_handler_state_every_handler_starts_without_the_previous_invocations_keys(
    function_dir: str, app_env: dict[str, str], invoke: Invoke
) -> None:
    logger.append_keys(leftover="from the previous invocation")

    # Nonsense to most handlers, and any answer (or error) will do: only the state matters.
    with contextlib.suppress(Exception):
        invoke(function_dir, {"RequestType": "Delete"})

    assert "leftover" not in logger.get_current_keys()


# The migration and the console (static files, no metrics) write no metric records.
@pytest.mark.parametrize("function_dir", [h for h in HANDLERS if h not in ("migrate", "console")])
def test_handler_state_cold_start_metric_is_written_once_per_cold_container(
    function_dir: str,
    app_env: dict[str, str],
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in (METRICS_DISABLED_ENV, DEV_ENV, FUNCTION_NAME_ENV):
        monkeypatch.delenv(name, raising=False)
    reset_container()  # app_env's container may have answered before these variables changed

    def cold_starts() -> list[dict[str, Any]]:
        lines = capsys.readouterr().out.splitlines()
        records = [json.loads(line) for line in lines if line.startswith('{"_aws"')]
        return [r for r in records if COLD_START in r]

    for _ in range(3):
        with contextlib.suppress(Exception):  # any answer will do: only the metric matters
            invoke(function_dir, {"RequestType": "Delete"})
    first = cold_starts()
    reset_container()
    with contextlib.suppress(Exception):
        invoke(function_dir, {"RequestType": "Delete"})
    second = cold_starts()

    [cold] = first
    (directive,) = cold["_aws"]["CloudWatchMetrics"]
    assert directive["Dimensions"] == [["function_name", "service"]]
    assert directive["Metrics"] == [{"Name": COLD_START, "Unit": "Count"}]
    assert cold["function_name"] == lambda_context(function_dir).function_name
    assert cold["service"] == SERVICE_NAME
    assert len(second) == 1
