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
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from devkit.postcall_events import signature_timestamp
from devkit.proxy import TcpProxy
from leadlookup import observability
from leadlookup.api import webhooks
from leadlookup.config import DEFAULT_ORGANIZATION_ID
from leadlookup.domain.phones import mask_phone, normalize_phone
from tests.conftest import EVENTS, TEST_SECRETS
from tests.support.db import execute
from tests.support.faults import (
    Figures,
    Invoke,
    db_connection,
    initiation_event,
    new_phone,
    post_call_event,
    reset_container,
    sample,
    sign_post_call_event,
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
    "post_call_webhook": "post_call_webhook",
    "sms_webhook": "sms_webhook",
    "sms_processor": "sms_processor",
    "post_call_processor": "post_call_processor",
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
        json.loads(sample(f"post_call_webhook/{name}")["body"])["data"]["conversation_id"]
        for name in ("post_call_signed", "post_call_expired", "post_call_live_agent")
    ]
    for record in sample("post_call_processor/sqs_batch")["Records"]:
        conversations.append(json.loads(record["body"])["conversation_id"])
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
                monkeypatch.setattr(webhooks, "wall_clock", lambda at=at: float(at))
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
    # The capture saw the run: log lines, one subsegment per traced invocation (the initiation
    # webhook has no Tracer), the probes refused; and a phone number that is logged does show
    # up where this test looks.
    passes = sum(1 for k in outcomes if k != "database errors")
    untraced = passes * len(_samples("conversation_initiation"))
    assert tracer_sink.subsegments == invocations - untraced > 0
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


# -- masking by digits: every format, every path that logs a number ------------------------

# Log fields that carry numbers of their own (times, sizes, ids), not a caller's digits.
_NUMERIC_FIELDS = frozenset(
    {"timestamp", "xray_trace_id", "function_request_id", "function_memory_size", "sampling_rate"}
)
# Ids made of hex digits (UUIDs, hex message and conversation ids) hold digit runs by chance.
_HEX_IDS = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}|[0-9a-fA-F]{16,}")
# A run of digits as a person would write it: separated by spaces, dots, dashes or brackets.
_DIGIT_RUN = re.compile(r"\d(?:[ .()-]{0,2}\d)*")
# A masked number shows at most the country code and area code (4 digits for +1) before the
# stars and the last four after them: any five digits of a number in a row are a leak.
_WINDOW = 5


def _formats(e164: str) -> list[str]:
    """One NANP number (``+1AAAXXXNNNN``) written every way a caller id or form field comes."""
    area, exchange, line = e164[2:5], e164[5:8], e164[8:]
    national = f"{area}{exchange}{line}"
    return [
        e164,
        e164[1:],
        national,
        f"({area}) {exchange}-{line}",
        f"{area}-{exchange}-{line}",
        f"{area}.{exchange}.{line}",
        f"{area} {exchange} {line}",
        f"+1 {area} {exchange} {line}",
        f"1-{area}-{exchange}-{line}",
        f"tel:{e164}",
        f"tel:{national}",
    ]


def _shipped_text(powertools_lines: str) -> str:
    """What the run sent to the logs, without the fields that are numbers by nature."""
    kept = []
    for line in powertools_lines.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            kept.append(line)
            continue
        if isinstance(record, dict):
            record = {k: v for k, v in record.items() if k not in _NUMERIC_FIELDS}
        kept.append(json.dumps(record))
    return _HEX_IDS.sub("<id>", "\n".join(kept))


def digit_leaks(text: str, numbers: list[str]) -> list[str]:
    """Runs of digits in ``text`` that show five digits in a row of any of ``numbers``."""
    windows = {
        digits[i : i + _WINDOW]
        for number in numbers
        for digits in (number.lstrip("+"),)
        for i in range(len(digits) - _WINDOW + 1)
    }
    leaks = []
    for run in _DIGIT_RUN.findall(text):
        digits = re.sub(r"\D", "", run)
        if any(digits[i : i + _WINDOW] in windows for i in range(len(digits) - _WINDOW + 1)):
            leaks.append(run)
    return leaks


def _post_call_from(number: str) -> dict[str, Any]:
    event, _ = post_call_event(None)
    body = json.loads(event["body"])
    body["data"]["metadata"]["phone_call"]["external_number"] = number
    event["body"] = json.dumps(body)
    return sign_post_call_event(event, TEST_SECRETS["ELEVENLABS_WEBHOOK_SECRET"], int(time.time()))


def _every_logging_path(invoke: Invoke, number: str) -> list[Any]:
    """The number through every handler that can log one: the caller of a call, the sender
    of an SMS (webhook and processor), the caller a post-call report names, an admin flush."""
    fields = sms_fields(sms_event("+16045550100"))
    fields["From"] = number
    return [
        invoke("conversation_initiation", initiation_event(number)),
        invoke("sms_webhook", sms_event(number)),
        invoke("sms_processor", {"Records": [sqs_record(fields)]}),
        invoke("post_call_webhook", _post_call_from(number)),
        invoke(
            "cache_admin",
            {"action": "flush_lead", "phone": number, "organization_id": DEFAULT_ORGANIZATION_ID},
        ),
    ]


def _attempt(call: Callable[[], Any]) -> Any:
    # A failed admin flush raises (Redis down): what it logged on the way is what counts here.
    try:
        return call()
    except Exception as exc:
        return type(exc).__name__


def test_privacy_every_phone_format_is_masked_on_every_path_healthy_and_degraded(
    fault_env: dict[str, str],
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    handler_output: io.StringIO,
    figures: Figures,
) -> None:
    figures.fault = "masking: 11 phone formats x 5 logging paths, healthy, Redis down, both down"
    numbers = [new_phone() for _ in range(3)]
    written = [(n, f) for n in numbers for f in _formats(n)]
    outcomes: dict[str, list[Any]] = {}

    for phase in ("healthy", "redis down", "redis and postgres down"):
        with contextlib.ExitStack() as stack:
            if phase != "healthy":
                redis_proxy = stack.enter_context(TcpProxy.from_url(fault_env["REDIS_URL"]))
                monkeypatch.setenv("REDIS_URL", redis_proxy.rewrite_url(fault_env["REDIS_URL"]))
                redis_proxy.set_mode("cut")
            if phase == "redis and postgres down":
                pg_proxy = stack.enter_context(TcpProxy.from_url(fault_env["DATABASE_URL"]))
                monkeypatch.setenv("DATABASE_URL", pg_proxy.rewrite_url(fault_env["DATABASE_URL"]))
                pg_proxy.set_mode("cut")
            reset_container()
            outcomes[phase] = [
                _attempt(lambda f=f: _every_logging_path(invoke, f)) for _, f in written
            ]
            monkeypatch.setenv("REDIS_URL", fault_env["REDIS_URL"])
            monkeypatch.setenv("DATABASE_URL", fault_env["DATABASE_URL"])
        reset_container()
    shipped = _shipped_text(handler_output.getvalue())
    leaks = digit_leaks(shipped, numbers)
    figures.requests = sum(len(v) for v in outcomes.values()) * 5
    figures.failures = len(leaks)
    figures.notes.update(formats=len(written), log_lines=shipped.count("\n") + 1, leaks=len(leaks))

    assert leaks == []
    # The paths logged these numbers (masked), and the check does catch what used to leak:
    # the length-based mask of a national number and a raw dotted one.
    masked = mask_phone(numbers[0])
    assert masked.endswith(numbers[0][-4:]) and masked in shipped
    assert "initiation degraded" in shipped and "inbound sms" in shipped
    national = numbers[0][2:]
    assert digit_leaks(f'"caller": "{national[:5]}***{national[-4:]}"', numbers)
    assert digit_leaks(f"{national[:3]}.{national[3:6]}.{national[6:]}", numbers)
