"""Helpers of the fault suite: figures, timed invocations, sample-based events, row counts.

Every fault case records what it did as one :class:`Figures` (requests sent, unexpected
answers, median latency of the healthy and the fault phase, rows lost or duplicated) and
writes it to ``.local/faults/<case>.json``; docs/RELIABILITY.md tabulates those files.
"""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pg8000.native

from devkit.postcall_events import sign_event as sign_post_call_event
from devkit.sms_events import event_params, set_params, sign_event
from leadlookup import container as runtime_module
from leadlookup.domain.phones import normalize_phone
from leadlookup.domain.variables import DYNAMIC_VARIABLE_KEYS
from tests.conftest import EVENTS, ROOT, lambda_context, load_handler
from tests.support.db import connect

FIGURES_DIR = ROOT / ".local" / "faults"
STORE_NUMBER = "+17786528784"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
KEYS = frozenset(DYNAMIC_VARIABLE_KEYS)
_AREAS = ("236", "250", "604", "672", "778")

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]


# -- figures -----------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


@dataclass
class Figures:
    """What one fault case sent and got back; written as JSON and printed as one line."""

    case: str
    fault: str = ""
    requests: int = 0
    failures: int = 0
    rows_lost: int = 0
    rows_duplicated: int = 0
    phases: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def record(self, phase: str, elapsed_ms: float, ok: bool, what: str = "") -> None:
        """Count one request of ``phase``; a wrong answer is a failure, named in ``failed``."""
        self.requests += 1
        self.phases.setdefault(phase, []).append(elapsed_ms)
        if not ok:
            self.failures += 1
            if len(self.failed) < 20:
                self.failed.append(f"{phase}: {what}"[:300])

    def median(self, phase: str) -> float | None:
        """Median latency (ms) of one phase."""
        return _median(self.phases.get(phase, []))

    def worst(self, phase: str) -> float | None:
        """Slowest request (ms) of one phase."""
        values = self.phases.get(phase, [])
        return round(max(values), 2) if values else None

    def summary(self) -> dict[str, Any]:
        """The JSON written for this case."""
        healthy, fault = self.median("healthy"), self.median("fault")
        added = round(fault - healthy, 2) if healthy is not None and fault is not None else None
        return {
            "case": self.case,
            "fault": self.fault,
            "requests": self.requests,
            "failures": self.failures,
            "healthy_median_ms": healthy,
            "fault_median_ms": fault,
            "added_median_ms": added,
            "fault_max_ms": self.worst("fault"),
            "phase_medians_ms": {name: self.median(name) for name in self.phases},
            "rows_lost": self.rows_lost,
            "rows_duplicated": self.rows_duplicated,
            "notes": self.notes,
            "failed": self.failed,
        }

    def line(self) -> str:
        """The one-line figure printed by each case."""
        s = self.summary()

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}ms"

        others = " ".join(
            f"{name}_p50={ms(self.median(name))}"
            for name in self.phases
            if name not in ("healthy", "fault")
        )
        notes = " ".join(f"{k}={v}" for k, v in self.notes.items())
        return (
            f"FAULT {self.case}: requests={s['requests']} failures={s['failures']} "
            f"healthy_p50={ms(s['healthy_median_ms'])} fault_p50={ms(s['fault_median_ms'])} "
            f"added={ms(s['added_median_ms'])} fault_max={ms(s['fault_max_ms'])} {others} "
            f"lost={s['rows_lost']} dup={s['rows_duplicated']} {notes}".replace("  ", " ").rstrip()
        )

    def write(self, directory: Path = FIGURES_DIR) -> Path:
        """Write ``<case>.json`` and print the one-line figure."""
        directory.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.case).strip("_")
        path = directory / f"{name}.json"
        path.write_text(json.dumps(self.summary(), indent=2, default=str) + "\n")
        # The real stdout: test output capture swallows what the handlers print.
        print(self.line(), file=sys.__stdout__, flush=True)
        return path


def timed(invoke: Invoke, function_dir: str, event: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Invoke a handler; (response, elapsed milliseconds)."""
    started = time.perf_counter()
    response = invoke(function_dir, copy.deepcopy(event))
    return response, (time.perf_counter() - started) * 1000


def reset_container() -> None:
    """Forget this process's runtime: the next invocation is a cold container."""
    runtime_module.set_runtime(None)


# -- responses ---------------------------------------------------------------------------------


def header_of(response: dict[str, Any], name: str) -> str | None:
    """A response header by case-insensitive name."""
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return headers.get(name.lower())


def rejection_message(response: dict[str, Any]) -> str | None:
    """The ``message`` of a JSON rejection ``{"message": "..."}``, else None."""
    if not (header_of(response, "content-type") or "").startswith("application/json"):
        return None
    try:
        body = json.loads(response.get("body") or "")
    except ValueError:
        return None
    if not isinstance(body, dict) or set(body) != {"message"}:
        return None
    message = body["message"]
    return message if isinstance(message, str) and message else None


def dynamic_variables(response: dict[str, Any]) -> dict[str, str] | None:
    """The agent variables of a well-formed 200 initiation answer, else None."""
    if response.get("statusCode") != 200:
        return None
    try:
        body = json.loads(response["body"])
        variables = body["dynamic_variables"]
    except (KeyError, TypeError, ValueError):
        return None
    if body.get("type") != "conversation_initiation_client_data":
        return None
    if set(variables) != KEYS or not all(isinstance(v, str) for v in variables.values()):
        return None
    return dict(variables)


# -- events ------------------------------------------------------------------------------------


def sample(path: str) -> dict[str, Any]:
    """A sample event, e.g. ``sample("conversation_initiation/known_caller")``."""
    return json.loads((EVENTS / f"{path}.json").read_text())


def initiation_event(caller: str | None, called: str = STORE_NUMBER) -> dict[str, Any]:
    """The known-caller sample with another caller and store number."""
    event = sample("conversation_initiation/known_caller")
    body: dict[str, Any] = {"agent_id": "agent_faults", "called_number": called, "call_sid": "CA1"}
    if caller is not None:
        body["caller_id"] = caller
    event["body"] = json.dumps(body)
    return event


def sms_event(
    sender: str, body: str = "Is the shop open?", sid: str | None = None
) -> dict[str, Any]:
    """The signed SMS sample from ``sender`` as a new message (or ``sid``), re-signed."""
    event = sample("sms_webhook/signed")
    sid = sid or new_sid()
    overrides = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "From": sender,
        "Body": body,
    }
    set_params(event, [(n, overrides.get(n, v)) for n, v in event_params(event)])
    return sign_event(event)


def sms_fields(event: dict[str, Any]) -> dict[str, str]:
    """The form fields of an SMS webhook event."""
    return dict(event_params(event))


def patch_event(lead_id: str, body: Any, if_match: str | None = None) -> dict[str, Any]:
    """The PATCH sample aimed at ``lead_id`` with ``body`` (and ``If-Match`` unless None)."""
    event = with_lead_id(sample("lead_update/patch_valid"), lead_id)
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    if if_match is None:
        event["headers"].pop("if-match", None)
    else:
        event["headers"]["if-match"] = if_match
    return event


def with_lead_id(event: dict[str, Any], lead_id: str) -> dict[str, Any]:
    """A /leads/{lead_id} sample event aimed at another id."""
    changed = copy.deepcopy(event)
    changed["rawPath"] = changed["requestContext"]["http"]["path"] = f"/leads/{lead_id}"
    changed["pathParameters"] = {"lead_id": lead_id}
    return changed


def post_call_event(
    lead_id: str | None, conversation_id: str | None = None, at: int | None = None
) -> tuple[dict[str, Any], str]:
    """The signed post-call sample for ``lead_id``, a fresh conversation, signed at ``at``."""
    event = sample("post_call_webhook/post_call_signed")
    body = json.loads(event["body"])
    conversation_id = conversation_id or f"conv_faults_{uuid.uuid4().hex}"
    body["data"]["conversation_id"] = conversation_id
    variables = body["data"]["conversation_initiation_client_data"]["dynamic_variables"]
    variables["lead_id"] = lead_id or ""
    event["body"] = json.dumps(body)
    signed = sign_post_call_event(
        event, "test-elevenlabs-secret", int(time.time()) if at is None else at
    )
    return signed, conversation_id


def new_sid() -> str:
    """A Twilio-shaped MessageSid nobody used."""
    return "SM" + uuid.uuid4().hex


# Numbers already handed out in this process (the test database lives as long as it does):
# about a thousand tests draw from ~50,000 numbers, so without this two of them would share
# a number in most runs (the birthday paradox) and one would find the other's lead.
_ISSUED: set[str] = set()


def new_phone() -> str:
    """A valid, fictional (555) British Columbia number no other test of this run uses."""
    while True:
        draw = uuid.uuid4().int
        line = draw // 7 % 10_000
        # 555-0100..0199 are the sample events' numbers, which other tests assert about.
        phone = f"+1{_AREAS[draw % len(_AREAS)]}555{line:04d}"
        if not 100 <= line < 200 and phone not in _ISSUED and normalize_phone(phone):
            _ISSUED.add(phone)
            return phone


# -- database ----------------------------------------------------------------------------------


@contextmanager
def db_connection(database_url: str) -> Iterator[pg8000.native.Connection]:
    """A direct connection for assertions (bypasses the code under test)."""
    conn = connect(database_url)
    try:
        yield conn
    finally:
        conn.close()


def table_state(database: str | pg8000.native.Connection) -> dict[str, Any]:
    """Row counts of every table and fingerprints of every row's version (one query)."""
    if isinstance(database, str):
        with db_connection(database) as conn:
            return table_state(conn)
    row = database.run(
        "SELECT (SELECT count(*) FROM organizations), (SELECT count(*) FROM leads),"
        " (SELECT count(*) FROM messages), (SELECT count(*) FROM call_summaries),"
        " (SELECT coalesce(sum(version), 0) FROM leads),"
        " (SELECT coalesce(sum(interaction_count), 0) FROM leads),"
        " (SELECT max(updated_at)::text FROM leads),"
        " (SELECT max(updated_at)::text FROM organizations),"
        " (SELECT concat(max(last_contact_at), '/', count(opted_out_at)) FROM leads)"
    )[0]
    names = ["organizations", "leads", "messages", "call_summaries", "versions", "interactions"]
    names += ["leads_updated", "orgs_updated", "leads_contact"]
    return dict(zip(names, row, strict=True))


def leads_for(database_url: str, phone: str) -> list[str]:
    """Ids of the leads (any store) of a phone number."""
    digits = normalize_phone(phone) or phone.lstrip("+")
    with db_connection(database_url) as conn:
        rows = conn.run(
            "SELECT id::text FROM leads WHERE phone_number_normalized = :d ORDER BY id", d=digits
        )
    return [r[0] for r in rows]


def message_counts(database_url: str, sids: Sequence[str]) -> dict[str, int]:
    """How many rows each MessageSid has."""
    with db_connection(database_url) as conn:
        rows = conn.run(
            "SELECT external_id, count(*) FROM messages WHERE external_id = ANY(:sids)"
            " GROUP BY external_id",
            sids=list(sids),
        )
    counts = {sid: 0 for sid in sids}
    counts.update({r[0]: int(r[1]) for r in rows})
    return counts


def lost_and_duplicated(counts: dict[str, int]) -> tuple[int, int]:
    """(ids without a row, extra rows beyond one per id)."""
    return (
        sum(1 for n in counts.values() if n == 0),
        sum(n - 1 for n in counts.values() if n > 1),
    )


def insert_lead(database_url: str, phone: str, org_id: str) -> str:
    """A lead created directly in the database; its id."""
    with db_connection(database_url) as conn:
        return str(
            conn.run(
                "INSERT INTO leads (organization_id, phone_number, phone_number_normalized)"
                " VALUES (:org, :phone, :digits) RETURNING id::text",
                org=org_id,
                phone=phone,
                digits=normalize_phone(phone),
            )[0][0]
        )


def lead_row(database_url: str, lead_id: str) -> dict[str, Any] | None:
    """Every column of one lead, or None."""
    with db_connection(database_url) as conn:
        rows = conn.run("SELECT * FROM leads WHERE id = :id", id=lead_id)
        names = [c["name"] for c in conn.columns or ()]
    return dict(zip(names, rows[0], strict=True)) if rows else None


def terminate_backends(database_url: str) -> int:
    """pg_terminate_backend on every connection the code under test holds (as RDS Proxy does)."""
    database = database_url.rsplit("/", 1)[1].split("?")[0]
    with db_connection(database_url) as conn:
        rows = conn.run(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = :db AND application_name = 'bici-lookups'"
            " AND pid <> pg_backend_pid()",
            db=database,
        )
    time.sleep(0.05)  # let the backends exit before the next statement
    return len(rows)


# -- SQS (moto) --------------------------------------------------------------------------------


def create_fifo_queue(region: str = "us-east-1") -> tuple[Any, str, str]:
    """(client, url, arn) of a new moto FIFO queue (call inside ``mock_aws``)."""
    client = boto3.client("sqs", region_name=region)
    name = f"inbound-sms-{uuid.uuid4().hex[:8]}.fifo"
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
    url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return client, url, arn["Attributes"]["QueueArn"]


def create_standard_queue(
    prefix: str = "post-call", region: str = "us-east-1"
) -> tuple[Any, str, str]:
    """(client, url, arn) of a new moto standard queue, 256 KiB limit (call in ``mock_aws``)."""
    client = boto3.client("sqs", region_name=region)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    url = client.create_queue(QueueName=name, Attributes={"MaximumMessageSize": "262144"})[
        "QueueUrl"
    ]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return client, url, arn["Attributes"]["QueueArn"]


def queued_count(client: Any, url: str) -> int:
    """Messages in the queue, visible or in flight."""
    attributes = client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def drain(
    client: Any,
    queue_url: str,
    arn: str,
    invoke: Invoke,
    function_dir: str,
    figures: Figures | None = None,
    max_batches: int = 10,
    deliveries: int = 1,
) -> list[dict[str, int]]:
    """Act as the SQS event source: receive, invoke the processor, delete what succeeded and
    make the failed records visible again at once (as their visibility timeout would).

    ``deliveries`` > 1 hands each batch to the processor that many times before deleting it,
    as SQS does when a visibility timeout runs out while the first delivery is still at work.
    """
    batches = []
    for _ in range(max_batches):
        messages = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            break
        event = sqs_event(messages, arn)
        for _ in range(deliveries):
            response, ms = timed(invoke, function_dir, event)
            failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
            if figures is not None:
                ok = set(response) == {"batchItemFailures"}
                figures.record("processor", ms, ok, str(response))
        for message in messages:
            if message["MessageId"] in failed:
                client.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        batches.append({"records": len(messages), "failed": len(failed)})
    return batches


def sqs_event(messages: list[dict[str, Any]], arn: str) -> dict[str, Any]:
    """The Lambda SQS event for received messages, as the event source mapping builds it."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": arn.split(":")[3],
            }
            for m in messages
        ]
    }


def sqs_record(fields: dict[str, Any], message_id: str | None = None) -> dict[str, Any]:
    """One FIFO record carrying ``fields``, shaped like the sample batch's records."""
    record = copy.deepcopy(sample("sms_processor/sqs_batch")["Records"][0])
    body = json.dumps(fields)
    record["messageId"] = message_id or str(uuid.uuid4())
    record["body"] = body
    record["md5OfBody"] = hashlib.md5(body.encode()).hexdigest()  # noqa: S324 - SQS's checksum
    record["attributes"]["MessageGroupId"] = f"{fields.get('To')}:{fields.get('From')}"
    record["attributes"]["MessageDeduplicationId"] = fields.get("MessageSid", record["messageId"])
    return record


# -- separate processes (separate Lambda containers) -------------------------------------------


def _container(function_dir: str, event: dict[str, Any], start: Any, results: Any) -> None:
    # A forked child inherits no runtime (the parent forgot its own before forking), so it
    # builds its own connections, like a separate Lambda container.
    handler = load_handler(function_dir).lambda_handler
    start.wait(timeout=30)
    started = time.perf_counter()
    try:
        response = handler(event, lambda_context(function_dir))
    except BaseException as exc:  # reported to the test, which fails on it
        response = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        runtime_module.set_runtime(None)
    results.put((response, (time.perf_counter() - started) * 1000))


def invoke_concurrently(
    calls: Sequence[tuple[str, dict[str, Any]]],
) -> list[tuple[dict[str, Any], float]]:
    """Invoke each (function_dir, event) in its own forked process, released together;
    (response, elapsed ms, cold start included) of each, in the order they finished."""
    for function_dir, _ in calls:
        load_handler(function_dir)  # imported once, before the fork
    reset_container()
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    workers = [
        context.Process(target=_container, args=(fn, event, start, results)) for fn, event in calls
    ]
    for worker in workers:
        worker.start()
    start.set()
    answers = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return answers
