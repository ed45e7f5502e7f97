"""Privacy: every log line and every X-Ray subsegment field of a full run of the sample events
through every handler (healthy, with Redis down, with PostgreSQL down, and with database errors
that quote the row) holds no full phone number, no secret and no raw database error text."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from devkit.postcall_events import signature_timestamp
from devkit.proxy import TcpProxy
from leadlookup import observability, postcall
from leadlookup.phones import normalize_phone
from leadlookup.settings import DEFAULT_ORGANIZATION_ID
from tests.conftest import EVENTS, TEST_SECRETS
from tests.support.db import execute
from tests.support.faults import (
    Figures,
    Invoke,
    db_connection,
    reset_container,
    sample,
    sms_event,
    sms_fields,
    sqs_record,
)

# Sample rows the lead_update and initiation samples name.
SAMPLE_LEAD_ID = "5e1f0000-0000-4000-8000-000000000001"
SAMPLE_LEAD_PHONE = "+12365550199"
KNOWN_CALLER = "+16045550142"
# PostgreSQL's own words: they come with the row or key, personal data included.
DATABASE_ERROR_TEXT = ["Failing row contains", "duplicate key value", "violates", "DETAIL"]
# A row the database refuses with "Failing row contains (...)": a probe constraint's marker.
PROBE_BODY = "privacy probe: refuse me"
PROBE_SENDER = "+12505550163"
FUNCTIONS = {
    "conversation_initiation": "conversation_initiation",
    "lead_update": "lead_update",
    "sms_webhook": "sms_webhook",
    "sms_processor": "sms_processor",
}


# -- what the run must never reveal ------------------------------------------------------------

_PHONE_LIKE = re.compile(r"\+?\d[\d ().-]{6,}\d")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
        try:
            decoded = json.loads(value)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict | list):
            yield from _strings(decoded)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _event_strings(event: dict[str, Any]) -> Iterator[str]:
    yield from _strings(event)
    if event.get("isBase64Encoded") and isinstance(event.get("body"), str):
        yield base64.b64decode(event["body"]).decode("utf-8", "replace")


def sample_phone_numbers(extra: list[str]) -> set[str]:
    """Every phone number in the sample events (and ``extra``), as E.164 and as bare digits."""
    found: set[str] = set()
    texts = list(extra)
    for path in EVENTS.glob("*/*.json"):
        texts.extend(_event_strings(json.loads(path.read_text())))
    for text in texts:
        for candidate in _PHONE_LIKE.findall(text.replace("%2B", "+")):
            normalized = normalize_phone(candidate)
            if normalized:
                found.update({"+" + normalized, normalized})
    return found


# -- capturing what would leave the container ------------------------------------------------


class RecordedSubsegment:
    """A subsegment that keeps what the X-Ray SDK would send (annotations, metadata, errors)."""

    def __init__(self, name: str, sink: list[str]) -> None:
        self.name = name
        self.sink = sink
        sink.append(f"subsegment {name}")

    def put_annotation(self, key: str, value: Any) -> None:
        self.sink.append(f"annotation {self.name} {key}={value!r}")

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        self.sink.append(
            f"metadata {self.name} {namespace}.{key}={json.dumps(value, default=repr)}"
        )

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        self.sink.append(f"exception {self.name} {exception!r} {exception}")


class RecordingProvider:
    """The Tracer's provider seam: ``in_subsegment`` and the segment-level put_* calls."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.subsegments = 0

    @contextmanager
    def in_subsegment(self, name: str | None = None, **_: Any) -> Iterator[RecordedSubsegment]:
        self.subsegments += 1
        subsegment = RecordedSubsegment(name or "", self.sent)
        try:
            yield subsegment
        except BaseException as exc:
            # What the X-Ray SDK's SubsegmentContextManager records for an escaping error.
            subsegment.add_exception(exc, traceback.extract_tb(exc.__traceback__))
            raise

    def put_annotation(self, key: str, value: Any) -> None:
        self.sent.append(f"annotation {key}={value!r}")

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        self.sent.append(f"metadata {namespace}.{key}={json.dumps(value, default=repr)}")


class RecordAll(logging.Handler):
    """Every log record that reaches the root logger, with every attribute and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = {k: v for k, v in record.__dict__.items() if k not in ("exc_info", "args")}
        line = json.dumps(fields, default=repr) + " " + record.getMessage()
        if record.exc_info:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.lines.append(line)


@pytest.fixture
def tracer_sink(monkeypatch: pytest.MonkeyPatch) -> RecordingProvider:
    """The handlers' Tracer records instead of sending (tracing is off outside Lambda)."""
    provider = RecordingProvider()
    monkeypatch.setattr(observability.tracer, "provider", provider)
    monkeypatch.setattr(observability.tracer, "disabled", False)
    return provider


@pytest.fixture
def log_sink() -> Iterator[RecordAll]:
    handler = RecordAll()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


# -- the run -----------------------------------------------------------------------------------


def _sample_ids() -> tuple[list[str], list[str]]:
    """(MessageSids, conversation ids) the sample events carry."""
    sids = [
        sms_fields(sample(f"sms_webhook/{p.stem}"))["MessageSid"] for p in _samples("sms_webhook")
    ]
    for record in sample("sms_processor/sqs_batch")["Records"]:
        sids.append(json.loads(record["body"])["MessageSid"])
    conversations = [
        json.loads(sample(f"lead_update/{name}")["body"])["data"]["conversation_id"]
        for name in ("post_call_signed", "post_call_expired")
    ]
    return sids, conversations


def _forget_sample_rows(database_url: str) -> None:
    sids, conversations = _sample_ids()
    execute(database_url, "DELETE FROM messages WHERE external_id = ANY(:s)", s=sids)
    execute(
        database_url, "DELETE FROM call_summaries WHERE conversation_id = ANY(:c)", c=conversations
    )
    execute(
        database_url,
        "DELETE FROM leads WHERE id = :id OR phone_number_normalized = :digits",
        id=SAMPLE_LEAD_ID,
        digits=SAMPLE_LEAD_PHONE[1:],
    )


@pytest.fixture
def sample_rows(database_url: str) -> Iterator[None]:
    """The rows the samples name, as a fresh deployment would have them; the leads this run
    creates for sample numbers are removed afterwards (other suites use the samples too)."""
    _forget_sample_rows(database_url)
    execute(
        database_url,
        "INSERT INTO leads (id, organization_id, phone_number, phone_number_normalized,"
        " customer_name) VALUES (:id, :org, :phone, :digits, 'Ada')",
        id=SAMPLE_LEAD_ID,
        org=DEFAULT_ORGANIZATION_ID,
        phone=SAMPLE_LEAD_PHONE,
        digits=SAMPLE_LEAD_PHONE[1:],
    )
    with db_connection(database_url) as conn:
        existing = [r[0] for r in conn.run("SELECT id::text FROM leads")]
    yield
    _forget_sample_rows(database_url)
    execute(database_url, "DELETE FROM leads WHERE NOT (id::text = ANY(:ids))", ids=existing)


def _samples(function_dir: str) -> list[Path]:
    return sorted((EVENTS / function_dir).glob("*.json"))


def run_every_sample(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every sample event through its handler; the status codes (or batch failure counts)."""
    outcomes = []
    for function_dir in FUNCTIONS:
        for path in _samples(function_dir):
            event = json.loads(path.read_text())
            if "elevenlabs-signature" in event.get("headers", {}):
                at = signature_timestamp(event) + (0 if "expired" not in path.name else 2 * 3600)
                monkeypatch.setattr(postcall, "wall_clock", lambda at=at: float(at))
            response = invoke(function_dir, event)
            outcomes.append(response.get("statusCode", len(response.get("batchItemFailures", []))))
    return outcomes


def run_database_error_paths(invoke: Invoke, database_url: str) -> list[Any]:
    """Statements PostgreSQL refuses quoting the row ("Failing row contains") or the key
    ("duplicate key value"), through the real handlers."""
    answers: list[Any] = []
    execute(
        database_url,
        "ALTER TABLE messages ADD CONSTRAINT faults_privacy_probe"
        f" CHECK (body <> '{PROBE_BODY}') NOT VALID",
    )
    try:
        fields = sms_fields(sms_event(PROBE_SENDER, PROBE_BODY))
        answers.append(invoke("sms_processor", {"Records": [sqs_record(fields)]}))
        answers.append(invoke("sms_webhook", sms_event(PROBE_SENDER, PROBE_BODY)))
    finally:
        execute(database_url, "ALTER TABLE messages DROP CONSTRAINT faults_privacy_probe")
    taken = {
        "id": "0f0f0000-0000-4000-8000-00000000fa18",
        "name": "BICI Duplicate",
        "phone_number": "+17786528784",  # the default store's number: unique
    }
    answers.append(invoke("cache_admin", {"action": "upsert_org", "organization": taken}))
    return answers


def test_privacy_no_phone_secret_or_database_text_leaves_the_container(
    fault_env: dict[str, str],
    invoke: Invoke,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    handler_output: io.StringIO,
    tracer_sink: RecordingProvider,
    log_sink: RecordAll,
    sample_rows: None,
    figures: Figures,
) -> None:
    figures.fault = "privacy: logs and trace data of every sample, healthy and under faults"
    printed, errors = io.StringIO(), io.StringIO()
    outcomes: dict[str, list[Any]] = {}

    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
        outcomes["healthy"] = run_every_sample(invoke, monkeypatch)
        outcomes["database errors"] = run_database_error_paths(invoke, database_url)
        with TcpProxy.from_url(fault_env["REDIS_URL"]) as redis_proxy:
            monkeypatch.setenv("REDIS_URL", redis_proxy.rewrite_url(fault_env["REDIS_URL"]))
            reset_container()
            redis_proxy.set_mode("cut")
            outcomes["redis down"] = run_every_sample(invoke, monkeypatch)
        with TcpProxy.from_url(fault_env["DATABASE_URL"]) as pg_proxy:
            monkeypatch.setenv("DATABASE_URL", pg_proxy.rewrite_url(fault_env["DATABASE_URL"]))
            reset_container()
            pg_proxy.set_mode("cut")
            outcomes["postgres down"] = run_every_sample(invoke, monkeypatch)
        reset_container()
    captured = {
        "powertools log lines": handler_output.getvalue(),
        "stdout (EMF metrics)": printed.getvalue(),
        "stderr": errors.getvalue(),
        "log records": "\n".join(log_sink.lines),
        "x-ray subsegments": "\n".join(tracer_sink.sent),
    }
    forbidden = sorted(sample_phone_numbers([PROBE_SENDER]))
    forbidden += [v for v in TEST_SECRETS.values()] + DATABASE_ERROR_TEXT
    leaks = {
        f"{where}: {needle!r}": text[max(0, text.find(needle) - 120) : text.find(needle) + 60]
        for where, text in captured.items()
        for needle in forbidden
        if needle in text
    }
    invocations = sum(len(v) for k, v in outcomes.items() if k != "database errors") + 3
    figures.requests = invocations
    figures.failures = len(leaks)
    figures.notes.update(
        phone_forms_checked=len(forbidden) - len(TEST_SECRETS) - len(DATABASE_ERROR_TEXT),
        log_lines=handler_output.getvalue().count("\n") + len(log_sink.lines),
        subsegments=tracer_sink.subsegments,
        leaks=len(leaks),
    )

    assert leaks == {}
    # The capture saw the run: log lines, one subsegment per invocation, the probes refused;
    # and a phone number that is logged does show up where this test looks.
    assert tracer_sink.subsegments == invocations
    assert handler_output.getvalue().count("\n") + len(log_sink.lines) > invocations
    observability.logger.info("privacy canary", caller=KNOWN_CALLER)
    assert KNOWN_CALLER in handler_output.getvalue()
    assert any(KNOWN_CALLER in line for line in log_sink.lines)
    assert KNOWN_CALLER in forbidden and "+" + "17786528784" in forbidden
    refused_sms, refused_webhook, refused_upsert = outcomes["database errors"]
    assert len(refused_sms["batchItemFailures"]) == 1
    # A refused statement is no outage: 500, told nothing; a taken number is the caller's 409.
    assert refused_webhook["statusCode"] == 500
    assert json.loads(refused_webhook["body"]) == {"message": "internal error"}
    assert (refused_upsert["ok"], refused_upsert["status"], refused_upsert["message"]) == (
        False,
        409,
        "field 'phone_number' belongs to another organization",
    )
    assert outcomes["healthy"] != outcomes["postgres down"]
