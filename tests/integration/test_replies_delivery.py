"""Sends as Twilio really behaves, and the delivery status Twilio reports back.

Real PostgreSQL and Redis; the Twilio stand-in refuses what Twilio refuses (a Body over 1,600
characters, a From that is not E.164 or not the account's) and posts signed status callbacks;
the status webhook and the outcome processor are the real handlers (moto for SQS).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import boto3
import pg8000.native
import pytest
from moto import mock_aws

from devkit import lambda_env
from devkit.runner import LocalApi
from devkit.sms_events import SAMPLE_STATUS_SID, sign_twilio, status_event
from devkit.standins import MESSAGING_SERVICE_SID, AgentStandIn, TwilioStandIn
from leadlookup import container
from leadlookup import metrics as names
from leadlookup.adapters.idempotency import persistence_store
from leadlookup.adapters.queue import InProcessQueue
from leadlookup.adapters.twilio import TwilioSender
from leadlookup.config import DEFAULT_ORGANIZATION_ID, Settings
from leadlookup.container import set_runtime
from leadlookup.domain import followups
from leadlookup.domain.delivery import DeliveryUpdate
from leadlookup.domain.jobs import ELLIPSIS, MAX_SMS_CHARS, ReplyJob, ReplyOutcome
from leadlookup.domain.variables import build_variables
from leadlookup.usecases import inbound_sms as sms
from leadlookup.usecases.replies import fallback_text
from leadlookup.usecases.responder import Responder
from tests.conftest import EVENTS
from tests.support.faults import new_phone
from tests.support.redis_servers import free_port
from tests.support.replies import RecordingReplyMetrics, reply_settings, wire
from tests.support.staff import OWNER

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]
STORE = "+17786528784"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
STATUS_ROUTE = "/webhooks/twilio/status"


def sample(folder: str, name: str) -> dict[str, Any]:
    return json.loads((EVENTS / folder / f"{name}.json").read_text())


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def text(runtime: Any, sender: str, body: str, to: str = STORE) -> str:
    sid = f"SM{uuid.uuid4().hex}"
    fields = {"MessageSid": sid, "From": sender, "To": to, "Body": body, "AccountSid": "AC1"}
    sms.process_message(runtime.service, runtime.replies, fields)
    return sid


def sent_to(twilio: TwilioStandIn, phone: str) -> list[dict[str, Any]]:
    return [m for m in twilio.sent if m["to"] == phone]


def outbound(db: pg8000.native.Connection, twilio_sid: str) -> dict[str, Any] | None:
    rows = db.run(
        "SELECT status, error_code, status_updated_at, lead_id::text FROM messages"
        " WHERE twilio_sid = :sid",
        sid=twilio_sid,
    )
    if not rows:
        return None
    [(status, error_code, updated_at, lead_id)] = rows
    return {"status": status, "error_code": error_code, "at": updated_at, "lead_id": lead_id}


# -- what Twilio refuses, and how the sends avoid it ------------------------------------------


class LongAgent:
    """An agent whose answer is ``answer`` (the stand-in's answers are short)."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def reply(self, job: ReplyJob, deadline: float) -> str:
        return self.answer


def _responder(
    twilio: TwilioStandIn, agent: Any, metrics: RecordingReplyMetrics, outcomes: list[Any]
) -> Responder:
    sender = TwilioSender(twilio.url, twilio.account_sid, lambda: twilio.auth_token, timeout_s=2)
    return Responder(
        agent=agent,
        sender=sender,
        outcomes=InProcessQueue(outcomes.append),
        store=persistence_store(None),
        metrics=metrics,
        deadline_ms=3000,
    )


def _agent_job(to: str, kind: str = "agent", body: str = "tell me everything") -> ReplyJob:
    return ReplyJob(
        key=f"reply:SM{uuid.uuid4().hex}",
        kind=kind,
        organization_id=DEFAULT_ORGANIZATION_ID,
        lead_id=None,
        to_number=to,
        from_number=STORE,
        body=body,
        fallback_text="fixed",
    )


@pytest.mark.parametrize(
    ("answer", "ending"),
    [
        ("Our gravel bikes are in stock today. " * 60, "today."),  # 2,220 characters
        ("gravel " * 300, "gravel" + ELLIPSIS),  # 2,100, not one sentence end
    ],
    ids=["sentences", "words"],
)
def test_delivery_agent_answer_over_1600_characters_goes_out_cut_and_counted(
    twilio: TwilioStandIn, answer: str, ending: str
) -> None:
    metrics, outcomes = RecordingReplyMetrics(), []
    responder = _responder(twilio, LongAgent(answer.strip()), metrics, outcomes)
    phone = new_phone()

    outcome = responder.handle(_agent_job(phone))

    [sent] = sent_to(twilio, phone)
    assert len(answer) > 2000
    assert len(sent["body"]) <= MAX_SMS_CHARS
    assert len(sent["body"]) > MAX_SMS_CHARS // 2
    assert sent["body"].endswith(ending)
    assert answer.startswith(sent["body"].removesuffix(ELLIPSIS))
    assert outcome is not None and outcome.body == sent["body"]
    assert metrics.counts == {names.SMS_REPLY_SENT: 1, names.SMS_REPLY_TRUNCATED: 1}


def test_delivery_staff_text_is_never_cut_and_twilio_refuses_an_overlong_body(
    twilio: TwilioStandIn,
) -> None:
    metrics, outcomes = RecordingReplyMetrics(), []
    responder = _responder(twilio, LongAgent("unused"), metrics, outcomes)
    phone = new_phone()

    outcome = responder.handle(_agent_job(phone, kind="staff", body="x" * (MAX_SMS_CHARS + 1)))

    assert outcome is not None
    assert (outcome.twilio_sid, outcome.status, outcome.error_code) == (None, "failed", 21617)
    assert twilio.sent == []
    assert names.SMS_REPLY_TRUNCATED not in metrics.counts


def test_delivery_our_own_texts_fit_without_a_cut(wired: Any) -> None:
    runtime, _ = wired
    org = runtime.service.default_organization()
    lead = runtime.service.find_or_create_lead(new_phone(), org.id)
    variables = build_variables(org, lead, datetime.now(UTC), channel="sms")

    texts = [
        fallback_text(org, variables),
        followups.follow_up_text(org, list(followups.FOLLOW_UP_FLAGS)),
    ]

    # Cut like any other text if a store's settings ever made them longer; the seeded
    # store's longest (a follow-up on every topic) is well inside the limit.
    assert all(len(t) <= MAX_SMS_CHARS // 3 for t in texts), [len(t) for t in texts]


def test_delivery_store_with_a_national_format_number_sends_from_in_e164(
    wired: Any, twilio: TwilioStandIn
) -> None:
    runtime, _ = wired
    number = new_phone()
    national = f"({number[2:5]}) {number[5:8]}-{number[8:]}"
    store = runtime.service.upsert_org({"name": "BICI National", "phone_number": national})
    twilio.owned_numbers.add(number)
    customer = new_phone()

    text(runtime, customer, "are you open?", to=number)
    lead = runtime.service.find_or_create_lead(customer, store.id)
    runtime.staff.send_staff_text(OWNER, lead.id, "Yes, until 6.")

    assert store.phone_number == national
    assert [m["from"] for m in sent_to(twilio, customer)] == [number, number]


def test_delivery_store_with_a_messaging_service_sends_it_and_no_from(
    wired: Any, twilio: TwilioStandIn, db: pg8000.native.Connection
) -> None:
    runtime, _ = wired
    number = new_phone()  # not one the stand-in account owns: From would be refused (21606)
    store = runtime.service.upsert_org(
        {
            "name": "BICI Service",
            "phone_number": number,
            "settings": {"messaging_service_sid": MESSAGING_SERVICE_SID},
        }
    )
    customer = new_phone()

    text(runtime, customer, "hello", to=number)
    lead = runtime.service.find_or_create_lead(customer, store.id)
    runtime.staff.send_staff_text(OWNER, lead.id, "Hi from the store.")

    forms = [f for f in twilio.forms if f["To"] == customer]
    assert len(forms) == 2
    assert all(f["MessagingServiceSid"] == MESSAGING_SERVICE_SID for f in forms)
    assert all("From" not in f for f in forms)
    stored = db.run(
        "SELECT from_number, status FROM messages WHERE lead_id = :id AND direction = 'outbound'",
        id=lead.id,
    )
    assert stored == [[number, "queued"], [number, "queued"]]


def test_delivery_malformed_messaging_service_setting_falls_back_to_from(
    wired: Any, twilio: TwilioStandIn
) -> None:
    runtime, _ = wired
    number = new_phone()
    runtime.service.upsert_org(
        {"name": "BICI Typo", "phone_number": number, "settings": {"messaging_service_sid": "MG1"}}
    )
    twilio.owned_numbers.add(number)
    customer = new_phone()

    text(runtime, customer, "hello", to=number)

    [form] = [f for f in twilio.forms if f["To"] == customer]
    assert form["From"] == number and "MessagingServiceSid" not in form


def test_delivery_every_send_carries_the_status_callback(
    settings: Settings,
    agent: AgentStandIn,
    twilio: TwilioStandIn,
    make_runtime: Any,
) -> None:
    configured = reply_settings(
        settings,
        agent,
        twilio,
        sms_reply_deadline_ms=400,
        twilio_status_callback_url=f"http://127.0.0.1:{free_port()}{STATUS_ROUTE}",
    )
    runtime = make_runtime(configured)
    wire(runtime, RecordingReplyMetrics())
    customer = new_phone()

    text(runtime, customer, "agent answers this")
    agent.mode = "silent"
    text(runtime, customer, "the fixed text answers this")
    lead = runtime.service.find_or_create_lead(customer, DEFAULT_ORGANIZATION_ID)
    runtime.staff.send_staff_text(OWNER, lead.id, "staff write this")
    container.set_runtime(None)

    forms = [f for f in twilio.forms if f["To"] == customer]
    assert len(forms) == 3
    assert {f["StatusCallback"] for f in forms} == {configured.twilio_status_callback_url}


def test_delivery_without_a_callback_url_sends_none(wired: Any, twilio: TwilioStandIn) -> None:
    runtime, _ = wired
    customer = new_phone()

    text(runtime, customer, "hi")

    [form] = [f for f in twilio.forms if f["To"] == customer]
    assert "StatusCallback" not in form


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": "(778) 652-8784"}, 21212),
        ({"From": "+16045550100"}, 21606),
        ({"MessagingServiceSid": "MG" + "f" * 32}, 21701),
        ({}, 21603),
        ({"From": STORE, "Body": "y" * 1601}, 21617),
    ],
)
def test_delivery_twilio_stand_in_refuses_what_twilio_refuses(
    twilio: TwilioStandIn, form: dict[str, str], code: int
) -> None:
    fields = {"To": new_phone(), "Body": "hello", **form}
    request = urllib.request.Request(  # noqa: S310 - the loopback stand-in
        twilio.url + f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json",
        data=urlencode(fields).encode(),
        headers={"Authorization": _basic(twilio)},
    )

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)  # noqa: S310

    assert refused.value.code == 400
    assert json.loads(refused.value.read())["code"] == code
    assert twilio.sent == []


def _basic(twilio: TwilioStandIn) -> str:
    return (
        "Basic " + base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
    )


# -- status callbacks through the real handlers ------------------------------------------------


@pytest.fixture
def delivery_env(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """A function environment without queues: the status webhook stores in-process."""
    for name in ("REPLY_QUEUE_URL", "REPLY_OUTCOME_QUEUE_URL", "ELEVENLABS_AGENT_ID"):
        monkeypatch.delenv(name, raising=False)
    container.set_runtime(None)
    set_runtime(None)
    yield app_env
    container.set_runtime(None)


def _store_outbound(db: pg8000.native.Connection, twilio_sid: str, status: str = "queued") -> str:
    """An outbound text Twilio accepted with ``twilio_sid``, of a new lead; the lead's id."""
    phone = new_phone()
    [[lead_id]] = db.run(
        "INSERT INTO leads (organization_id, phone_number, phone_number_normalized)"
        " VALUES (:org, :phone, :digits) RETURNING id::text",
        org=DEFAULT_ORGANIZATION_ID,
        phone=phone,
        digits=phone[1:],
    )
    db.run(
        "DELETE FROM messages WHERE twilio_sid = :sid OR external_id = :key",
        sid=twilio_sid,
        key=f"reply:{twilio_sid}",
    )
    db.run(
        "INSERT INTO messages (organization_id, lead_id, external_id, direction, sender_kind,"
        " from_number, to_number, body, twilio_sid, status)"
        " VALUES (:org, :lead, :key, 'outbound', 'agent', :store, :phone, 'We do!', :sid,"
        " :status)",
        org=DEFAULT_ORGANIZATION_ID,
        lead=lead_id,
        key=f"reply:{twilio_sid}",
        store=STORE,
        phone=phone,
        sid=twilio_sid,
        status=status,
    )
    return lead_id


def test_delivery_signed_callbacks_raise_the_status_never_lower_it_and_ignore_repeats(
    delivery_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    _store_outbound(db, SAMPLE_STATUS_SID)

    delivered = invoke("sms_webhook", sample("twilio_status", "delivered"))
    after_delivered = outbound(db, SAMPLE_STATUS_SID)
    late_sent = invoke("sms_webhook", status_event(SAMPLE_STATUS_SID, "sent"))
    again = invoke("sms_webhook", sample("twilio_status", "delivered"))

    for response in (delivered, late_sent, again):
        assert (response["statusCode"], response["body"]) == (200, TWIML)
        assert response["headers"]["Content-Type"] == "text/xml"
    assert after_delivered is not None
    assert (after_delivered["status"], after_delivered["error_code"]) == ("delivered", None)
    assert after_delivered["at"] is not None
    assert outbound(db, SAMPLE_STATUS_SID) == after_delivered


def test_delivery_undelivered_is_stored_counted_and_shown_in_the_lead_history(
    delivery_env: dict[str, str],
    invoke: Invoke,
    db: pg8000.native.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lead_id = _store_outbound(db, SAMPLE_STATUS_SID)
    listing = sample("lead_update", "messages_list")
    listing["pathParameters"] = {"lead_id": lead_id}
    listing["rawPath"] = listing["requestContext"]["http"]["path"] = f"/leads/{lead_id}/messages"
    capsys.readouterr()

    first = invoke("sms_webhook", sample("twilio_status", "undelivered"))
    redelivered = invoke("sms_webhook", sample("twilio_status", "undelivered"))
    emitted = capsys.readouterr().out
    listed = invoke("lead_update", listing)

    assert first["statusCode"] == redelivered["statusCode"] == 200
    stored = outbound(db, SAMPLE_STATUS_SID)
    assert stored is not None and (stored["status"], stored["error_code"]) == ("undelivered", 30007)
    # Counted once: the redelivery changed nothing.
    failed = [
        json.loads(line)
        for line in emitted.splitlines()
        if '"_aws"' in line and names.SMS_DELIVERY_FAILED in line
    ]
    assert [record[names.SMS_DELIVERY_FAILED] for record in failed] == [1.0]
    [message] = body_of(listed)["messages"]
    assert (message["twilio_sid"], message["status"], message["error_code"]) == (
        SAMPLE_STATUS_SID,
        "undelivered",
        30007,
    )
    assert message["status_updated_at"] is not None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("forged", "invalid X-Twilio-Signature header"),
        ("unsigned", "missing X-Twilio-Signature header"),
    ],
)
def test_delivery_forged_or_unsigned_callback_is_403_and_changes_nothing(
    delivery_env: dict[str, str],
    invoke: Invoke,
    db: pg8000.native.Connection,
    name: str,
    message: str,
) -> None:
    _store_outbound(db, SAMPLE_STATUS_SID)

    response = invoke("sms_webhook", sample("twilio_status", name))

    assert (response["statusCode"], body_of(response)) == (403, {"message": message})
    stored = outbound(db, SAMPLE_STATUS_SID)
    assert stored is not None and (stored["status"], stored["at"]) == ("queued", None)


def test_delivery_unknown_message_sid_is_200_and_stores_nothing(
    delivery_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    sid = f"SM{uuid.uuid4().hex}"
    before = db.run("SELECT count(*), max(status_updated_at) FROM messages")

    response = invoke("sms_webhook", status_event(sid, "delivered"))

    assert (response["statusCode"], response["body"]) == (200, TWIML)
    assert db.run("SELECT count(*) FROM messages WHERE twilio_sid = :s", s=sid) == [[0]]
    assert db.run("SELECT count(*), max(status_updated_at) FROM messages") == before


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"MessageStatus": None}, "field 'MessageStatus' is required"),
        ({"MessageSid": None}, "field 'MessageSid' is required"),
        ({"MessageStatus": "Delivered!"}, "field 'MessageStatus' is not a message status"),
        ({"ErrorCode": "thirty"}, "field 'ErrorCode' must be a number"),
    ],
)
def test_delivery_malformed_signed_callback_is_400_naming_the_field(
    delivery_env: dict[str, str],
    invoke: Invoke,
    fields: dict[str, str | None],
    message: str,
) -> None:
    from devkit.sms_events import event_params, set_params, sign_event

    event = sample("twilio_status", "delivered")
    form = {**dict(event_params(event)), **fields}
    sign_event(set_params(event, [(k, v) for k, v in form.items() if v is not None]))

    response = invoke("sms_webhook", event)

    assert (response["statusCode"], body_of(response)) == (400, {"message": message})


def test_delivery_untracked_status_is_acknowledged_and_ignored(
    delivery_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    _store_outbound(db, SAMPLE_STATUS_SID, status="sent")

    response = invoke("sms_webhook", status_event(SAMPLE_STATUS_SID, "partially_teleported"))

    assert response["statusCode"] == 200
    stored = outbound(db, SAMPLE_STATUS_SID)
    assert stored is not None and stored["status"] == "sent"


# -- through the outcome queue (moto) ----------------------------------------------------------


def _delivery_record(update: DeliveryUpdate, receives: int) -> dict[str, Any]:
    event = sample("sms_outcome", "sqs_delivery_status")
    record = event["Records"][0]
    body = json.dumps(update.to_json())
    record.update(
        messageId=str(uuid.uuid4()),
        body=body,
        md5OfBody=hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's checksum
    )
    record["attributes"]["ApproximateReceiveCount"] = str(receives)
    return event


def test_delivery_webhook_queues_the_update_and_503_when_the_queue_is_down(
    delivery_env: dict[str, str],
    aws_env: None,
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="outcomes")["QueueUrl"]
        monkeypatch.setenv("REPLY_OUTCOME_QUEUE_URL", url)
        set_runtime(None)

        accepted = invoke("sms_webhook", sample("twilio_status", "undelivered"))
        [queued] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]

    monkeypatch.setenv(
        "REPLY_OUTCOME_QUEUE_URL", f"http://127.0.0.1:{free_port()}/123456789012/outcomes"
    )
    set_runtime(None)
    down = invoke("sms_webhook", sample("twilio_status", "undelivered"))

    assert (accepted["statusCode"], accepted["body"]) == (200, TWIML)
    assert json.loads(queued["Body"]) == {
        "kind": "delivery_status",
        "message_sid": SAMPLE_STATUS_SID,
        "status": "undelivered",
        "error_code": 30007,
    }
    assert (down["statusCode"], body_of(down)) == (503, {"message": "queue is unreachable"})


def test_delivery_sample_status_record_applies_to_the_sample_outcome(
    delivery_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    outcome_event = sample("sms_outcome", "sqs_outcome")
    outcome = json.loads(outcome_event["Records"][0]["body"])
    forget = "DELETE FROM messages WHERE external_id = :k OR twilio_sid = :s"
    db.run(forget, k=outcome["key"], s=outcome["twilio_sid"])
    outcome_event["Records"][0]["body"] = json.dumps({**outcome, "lead_id": None})

    stored = invoke("sms_outcome", outcome_event)
    updated = invoke("sms_outcome", sample("sms_outcome", "sqs_delivery_status"))

    assert stored == updated == {"batchItemFailures": []}
    row = outbound(db, outcome["twilio_sid"])
    assert row is not None and (row["status"], row["error_code"]) == ("undelivered", 30007)
    db.run(forget, k=outcome["key"], s=outcome["twilio_sid"])


def test_delivery_callback_that_overtakes_its_outcome_waits_for_it_then_applies(
    delivery_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    sid = f"SM{uuid.uuid4().hex}"
    update = DeliveryUpdate(sid, "delivered")
    first = _delivery_record(update, receives=1)

    early = invoke("sms_outcome", first)
    nothing_yet = db.run("SELECT count(*) FROM messages WHERE twilio_sid = :s", s=sid)
    _store_outbound(db, sid)
    later = invoke("sms_outcome", _delivery_record(update, receives=2))

    assert early == {"batchItemFailures": [{"itemIdentifier": first["Records"][0]["messageId"]}]}
    assert nothing_yet == [[0]]
    assert later == {"batchItemFailures": []}
    row = outbound(db, sid)
    assert row is not None and row["status"] == "delivered"


def test_delivery_callback_for_a_text_never_stored_is_dropped_on_its_third_receive(
    delivery_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    sid = f"SM{uuid.uuid4().hex}"
    update = DeliveryUpdate(sid, "failed", 30008)

    answers = [invoke("sms_outcome", _delivery_record(update, receives=n)) for n in (1, 2, 3)]

    assert [len(a["batchItemFailures"]) for a in answers] == [1, 1, 0]
    assert db.run("SELECT count(*) FROM messages WHERE twilio_sid = :s", s=sid) == [[0]]


def test_delivery_opted_out_failure_stops_further_replies(
    delivery_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    sid = f"SM{uuid.uuid4().hex}"
    lead_id = _store_outbound(db, sid)

    answer = invoke("sms_outcome", _delivery_record(DeliveryUpdate(sid, "failed", 21610), 1))

    assert answer == {"batchItemFailures": []}
    [[opted_out]] = db.run("SELECT opted_out_at IS NOT NULL FROM leads WHERE id = :id", id=lead_id)
    assert opted_out is True


def test_delivery_failures_are_counted_once_per_text(
    wired: Any, db: pg8000.native.Connection, reply_metrics: RecordingReplyMetrics
) -> None:
    runtime, _ = wired
    sid = f"SM{uuid.uuid4().hex}"
    _store_outbound(db, sid)
    updates = [
        DeliveryUpdate(sid, "sent"),
        DeliveryUpdate(sid, "undelivered", 30003),
        DeliveryUpdate(sid, "undelivered", 30003),
        DeliveryUpdate(sid, "failed", 30005),
        DeliveryUpdate(sid, "delivered"),
    ]

    changed = [runtime.outcomes.store_delivery(update) for update in updates]

    assert changed == [True, True, False, False, False]
    assert reply_metrics.counts.get(names.SMS_DELIVERY_FAILED) == 1
    row = outbound(db, sid)
    assert row is not None and (row["status"], row["error_code"]) == ("undelivered", 30003)


# -- end to end: the stand-in posts signed callbacks to the runner -----------------------------


@pytest.fixture
def served(
    app_env: dict[str, str],
    agent: AgentStandIn,
    twilio: TwilioStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LocalApi]:
    """`make run`'s wiring: the runner, the stand-ins, StatusCallback at the runner's route."""
    specs = lambda_env.functions()
    api = LocalApi(
        {name: specs[name] for name in ("SmsWebhookFunction", "LeadUpdateFunction")},
        "127.0.0.1",
        0,
        log=io.StringIO(),
    )
    env = {
        "ELEVENLABS_AGENT_ID": agent.agent_id,
        "ELEVENLABS_WS_URL": agent.url,
        "ELEVENLABS_API_KEY": agent.api_key or "",
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_API_URL": twilio.url,
        "SMS_REPLY_DEADLINE_MS": "3000",
        "PUBLIC_BASE_URL": api.url,
        "TWILIO_STATUS_CALLBACK_URL": api.url + STATUS_ROUTE,
    }
    for name in ("REPLY_QUEUE_URL", "REPLY_OUTCOME_QUEUE_URL", "IDEMPOTENCY_TABLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    container.set_runtime(None)
    set_runtime(None)
    api.start()
    try:
        yield api
    finally:
        api.stop()
        container.set_runtime(None)
        set_runtime(None)


def _post(url: str, data: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _text_the_store(api: LocalApi, customer: str, body: str) -> int:
    sid = f"SM{uuid.uuid4().hex}"
    pairs = [("MessageSid", sid), ("From", customer), ("To", STORE), ("Body", body)]
    url = api.url + "/webhooks/twilio/sms"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign_twilio(url, pairs),
    }
    return _post(url, urlencode(pairs).encode(), headers)


def test_delivery_stand_in_callbacks_reach_the_runner_and_update_the_history(
    served: LocalApi, twilio: TwilioStandIn, db: pg8000.native.Connection
) -> None:
    fine, failing = new_phone(), new_phone()
    twilio.failures[failing] = ("undelivered", 30007)

    answers = [_text_the_store(served, fine, "hello"), _text_the_store(served, failing, "hi")]
    callbacks = twilio.wait_for_callbacks(6)

    assert answers == [200, 200]
    assert len(callbacks) == 6
    assert {c["answer"] for c in callbacks} == {200}
    assert [c["status"] for c in callbacks if c["error_code"]] == ["undelivered"]
    [good] = sent_to(twilio, fine)
    [bad] = sent_to(twilio, failing)
    delivered, undelivered = outbound(db, good["sid"]), outbound(db, bad["sid"])
    assert delivered is not None and delivered["status"] == "delivered"
    assert undelivered is not None
    assert (undelivered["status"], undelivered["error_code"]) == ("undelivered", 30007)
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{served.url}/leads/{undelivered['lead_id']}/messages",
        headers={"Authorization": f"Bearer {served.auth.mint('ana')}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        history = json.loads(response.read())["messages"]
    assert [(m["direction"], m["status"], m["error_code"]) for m in history] == [
        ("outbound", "undelivered", 30007),
        ("inbound", None, None),
    ]
    assert sum(STATUS_ROUTE in line for line in served.log.getvalue().splitlines()) == 6  # type: ignore[attr-defined]


# -- shapes ------------------------------------------------------------------------------------


def test_delivery_outcome_queue_messages_are_told_apart_by_kind(wired: Any) -> None:
    runtime, _ = wired
    outcome = ReplyOutcome(
        key=f"reply:SM{uuid.uuid4().hex}",
        sender_kind="agent",
        organization_id=DEFAULT_ORGANIZATION_ID,
        lead_id=None,
        to_number=new_phone(),
        from_number=STORE,
        body="hi",
        twilio_sid=None,
        status="failed",
        error_code=21617,
    )

    stored = runtime.outcomes.store_queued(copy.deepcopy(outcome.to_json()))
    unknown = runtime.outcomes.store_queued(
        DeliveryUpdate(f"SM{uuid.uuid4().hex}", "sent").to_json()
    )

    assert (stored, unknown) == (True, False)


def test_delivery_send_refusal_code_is_kept_on_the_row(
    wired: Any, twilio: TwilioStandIn, db: pg8000.native.Connection
) -> None:
    runtime, _ = wired
    customer = new_phone()
    twilio.unsubscribed.add(customer)

    text(runtime, customer, "hi")

    rows = db.run(
        "SELECT status, error_code FROM messages WHERE to_number = :p AND direction = 'outbound'",
        p=customer,
    )
    assert rows == [["failed", 21610]]
