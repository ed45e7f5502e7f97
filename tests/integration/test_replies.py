"""SMS replies end to end against real PostgreSQL/Redis and the loopback stand-ins.

Inbound text -> processor stores it -> reply job -> responder (agent over WebSocket, Twilio
over HTTP) -> outcome -> outbound message row. Every count below is of texts the Twilio
stand-in accepted, i.e. of SMS a customer would have received.
"""

from __future__ import annotations

import copy
import dataclasses
import http.client
import io
import json
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import boto3
import pg8000.native
import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from moto import mock_aws
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from devkit.standins import AgentStandIn, TwilioStandIn, start_for_local_run
from leadlookup import container
from leadlookup import metrics as names
from leadlookup.adapters.elevenlabs import AgentError, ElevenLabsAgent
from leadlookup.adapters.queue import InProcessQueue
from leadlookup.config import Settings
from leadlookup.domain import call_report
from leadlookup.domain.hours import is_open, store_status, week_hours
from leadlookup.domain.jobs import ReplyJob, ReplyOutcome
from leadlookup.domain.models import Organization, default_organization_snapshot
from leadlookup.domain.variables import DYNAMIC_VARIABLE_KEYS, build_variables, store_zone
from leadlookup.errors import Conflict, InvalidInput, Unavailable
from leadlookup.usecases import inbound_sms as sms
from leadlookup.usecases import postcall
from tests.support.faults import new_phone
from tests.support.redis_servers import free_port
from tests.support.replies import RecordingReplyMetrics, reply_settings, wire
from tests.support.staff import OWNER

STORE = "+17786528784"
HOLDING = "One moment, let me check that for you."


def text(runtime: Any, sender: str, body: str, sid: str | None = None) -> str:
    sid = sid or f"SM{uuid.uuid4().hex}"
    fields = {"MessageSid": sid, "From": sender, "To": STORE, "Body": body, "AccountSid": "AC1"}
    sms.process_message(runtime.service, runtime.replies, fields)
    return sid


def rows(db: pg8000.native.Connection, sender: str) -> list[dict[str, Any]]:
    found = db.run(
        "SELECT m.direction, m.sender_kind, m.body, m.twilio_sid, m.status, m.external_id"
        " FROM messages m JOIN leads l ON l.id = m.lead_id"
        " WHERE l.phone_number_normalized = :p ORDER BY m.created_at, m.id",
        p=sender.lstrip("+"),
    )
    keys = ("direction", "sender_kind", "body", "twilio_sid", "status", "external_id")
    return [dict(zip(keys, row, strict=True)) for row in found]


def sent_to(twilio: TwilioStandIn, phone: str) -> list[dict[str, Any]]:
    return [m for m in twilio.sent if m["to"] == phone]


# -- the agent's reply -----------------------------------------------------------------------


def test_reply_agent_answer_is_sent_once_and_stored_as_outbound(
    wired: Any, agent: AgentStandIn, twilio: TwilioStandIn, db: Any, reply_metrics: Any
) -> None:
    runtime, _ = wired
    phone = new_phone()

    sid = text(runtime, phone, "Do you have gravel bikes?")

    [sent] = sent_to(twilio, phone)
    assert sent["from"] == STORE
    assert sent["body"].startswith("Hi there! You said: Do you have gravel bikes?")
    [conversation] = agent.conversations
    init = conversation["init"]
    assert init["conversation_config_override"] == {"conversation": {"text_only": True}}
    variables = init["dynamic_variables"]
    # Exactly the keys of a call's answer: one agent serves calls and texts.
    assert list(variables) == list(DYNAMIC_VARIABLE_KEYS)
    assert (variables["channel"], variables["call_type"]) == ("sms", "sms")
    assert variables["dynamic_greeting"] not in sent["body"]
    assert sent["body"].endswith(variables["store_status"])
    assert variables["customer_phone"] == phone
    assert variables["organization_name"] == "BICI Bike Store"
    assert conversation["pongs"] == [1]
    assert conversation["user_messages"] == ["Do you have gravel bikes?"]
    inbound, outbound = rows(db, phone)
    assert inbound["direction"] == "inbound" and inbound["sender_kind"] == "customer"
    assert outbound == {
        "direction": "outbound",
        "sender_kind": "agent",
        "body": sent["body"],
        "twilio_sid": sent["sid"],
        "status": "queued",
        "external_id": f"reply:{sid}",
    }
    assert reply_metrics.counts == {names.SMS_REPLY_SENT: 1}
    assert len(reply_metrics.samples[names.SMS_REPLY_LATENCY]) == 1


def test_reply_redelivered_inbound_text_is_answered_once(
    wired: Any, twilio: TwilioStandIn, db: Any
) -> None:
    runtime, _ = wired
    phone = new_phone()

    sid = text(runtime, phone, "hello")
    for _ in range(3):
        text(runtime, phone, "hello", sid)

    assert len(sent_to(twilio, phone)) == 1
    assert [r["direction"] for r in rows(db, phone)] == ["inbound", "outbound"]


def test_reply_history_reaches_the_agent(wired: Any, agent: AgentStandIn) -> None:
    runtime, _ = wired
    phone = new_phone()

    text(runtime, phone, "first question")
    text(runtime, phone, "second question")

    history = agent.conversations[1]["init"]["dynamic_variables"]["recent_messages"]
    assert history.splitlines()[0] == "customer: first question"
    assert history.splitlines()[1].startswith("store: Hi there! You said: first question")


# -- fallbacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["silent", "error"])
def test_reply_agent_timeout_or_error_sends_the_fixed_text(
    settings: Settings,
    agent: AgentStandIn,
    twilio: TwilioStandIn,
    make_runtime: Any,
    db: Any,
    mode: str,
) -> None:
    agent.mode = mode
    runtime = make_runtime(reply_settings(settings, agent, twilio, sms_reply_deadline_ms=400))
    metrics = RecordingReplyMetrics()
    wire(runtime, metrics)
    phone = new_phone()

    started = time.monotonic()
    text(runtime, phone, "are you open?")
    elapsed = time.monotonic() - started

    [sent] = sent_to(twilio, phone)
    assert sent["body"].startswith("Thanks for texting BICI Bike Store!")
    assert "Call us at +17786528784." in sent["body"]
    assert rows(db, phone)[-1]["sender_kind"] == "fallback"
    assert metrics.counts[names.SMS_REPLY_FALLBACK] == 1
    assert metrics.counts[names.SMS_REPLY_SENT] == 1
    # Bounded by SMS_REPLY_DEADLINE_MS, not by the agent.
    assert elapsed < 3
    container.set_runtime(None)


# -- Twilio ------------------------------------------------------------------------------------


def test_reply_twilio_429_and_5xx_are_retried_and_one_sms_goes_out(
    wired: Any, twilio: TwilioStandIn, db: Any
) -> None:
    runtime, _ = wired
    twilio.fail_next = [429, 500]
    phone = new_phone()

    text(runtime, phone, "hi")

    assert twilio.requests == 3
    [sent] = sent_to(twilio, phone)
    assert rows(db, phone)[-1]["twilio_sid"] == sent["sid"]


def test_reply_twilio_failing_throughout_is_stored_as_failed(
    wired: Any, twilio: TwilioStandIn, db: Any, reply_metrics: Any
) -> None:
    runtime, _ = wired
    twilio.fail_next = [503, 503, 503]
    phone = new_phone()

    text(runtime, phone, "hi")

    assert twilio.requests == 3
    assert sent_to(twilio, phone) == []
    last = rows(db, phone)[-1]
    assert (last["direction"], last["status"], last["twilio_sid"]) == ("outbound", "failed", None)
    assert reply_metrics.counts[names.SMS_REPLY_FAILED] == 1


def test_reply_twilio_answer_lost_is_unknown_and_never_resent(
    settings: Settings,
    agent: AgentStandIn,
    twilio: TwilioStandIn,
    make_runtime: Any,
    db: Any,
) -> None:
    twilio.delay_s = 0.6
    runtime = make_runtime(reply_settings(settings, agent, twilio, twilio_timeout_ms=200))
    wire(runtime, RecordingReplyMetrics())
    phone = new_phone()

    text(runtime, phone, "hi")
    time.sleep(0.8)

    # The window of doubt: Twilio took the text but its answer never came; one try only.
    assert twilio.requests == 1
    assert len(sent_to(twilio, phone)) == 1
    assert rows(db, phone)[-1]["status"] == "unknown"
    container.set_runtime(None)


# -- who gets no reply ----------------------------------------------------------------------


def test_reply_opted_out_sender_and_keywords_get_no_reply(
    wired: Any, twilio: TwilioStandIn, db: Any
) -> None:
    runtime, _ = wired
    phone = new_phone()

    text(runtime, phone, "STOP")
    text(runtime, phone, "are you there?")
    text(runtime, phone, "HELP")

    assert sent_to(twilio, phone) == []
    lead = runtime.service.find_or_create_lead(phone, runtime.service.default_organization().id)
    with pytest.raises(Conflict):
        runtime.staff.send_staff_text(OWNER, lead.id, "we miss you")
    text(runtime, phone, "START")
    assert sent_to(twilio, phone) == []


def test_reply_short_code_sender_gets_no_reply(wired: Any, twilio: TwilioStandIn) -> None:
    runtime, _ = wired

    text(runtime, "72345", "promo")

    assert twilio.sent == []


def test_reply_not_configured_attempts_nothing(
    settings: Settings, twilio: TwilioStandIn, agent: AgentStandIn, make_runtime: Any
) -> None:
    runtime = make_runtime(settings)
    metrics = RecordingReplyMetrics()
    wire(runtime, metrics)

    text(runtime, new_phone(), "hello")
    text(runtime, new_phone(), "hello")

    assert twilio.requests == 0 and agent.conversations == []
    assert metrics.counts == {names.SMS_REPLY_NOT_CONFIGURED: 2}
    container.set_runtime(None)


# -- human takeover --------------------------------------------------------------------------


def test_reply_human_control_silences_the_agent_and_staff_text_is_sent(
    wired: Any, agent: AgentStandIn, twilio: TwilioStandIn, db: Any
) -> None:
    runtime, _ = wired
    phone = new_phone()
    text(runtime, phone, "first")
    lead = runtime.service.find_or_create_lead(phone, runtime.service.default_organization().id)

    taken = runtime.staff.patch_lead(OWNER, lead.id, {"human_control": True}, None)
    text(runtime, phone, "can a person help me?")
    key = runtime.staff.send_staff_text(OWNER, lead.id, "Hi, this is Sam from the store.")
    runtime.staff.patch_lead(
        OWNER, lead.id, {"human_control": False, "notes": "handled by Sam"}, None
    )
    text(runtime, phone, "thanks")

    assert taken.human_control is True and taken.version == lead.version + 1
    bodies = [m["body"] for m in sent_to(twilio, phone)]
    assert len(bodies) == 3
    assert bodies[1] == "Hi, this is Sam from the store."
    assert len(agent.conversations) == 2
    kinds = [(r["direction"], r["sender_kind"]) for r in rows(db, phone)]
    assert kinds == [
        ("inbound", "customer"),
        ("outbound", "agent"),
        ("system", "system"),
        ("inbound", "customer"),
        ("outbound", "staff"),
        ("system", "system"),
        ("system", "system"),
        ("inbound", "customer"),
        ("outbound", "agent"),
    ]
    assert rows(db, phone)[4]["external_id"] == key
    page = runtime.staff.messages(OWNER, lead.id, limit="3")
    assert [m["sender_kind"] for m in page["messages"]] == ["agent", "customer", "system"]
    second = runtime.staff.messages(OWNER, lead.id, limit="10", after=page["next"])
    assert [m["sender_kind"] for m in second["messages"]] == [
        "system",
        "staff",
        "customer",
        "system",
        "agent",
        "customer",
    ]
    assert second["next"] is None
    # Who did it: the staff text and every note carry the member.
    signed = [m for m in page["messages"] + second["messages"] if m["staff"] is not None]
    assert [m["sender_kind"] for m in signed] == ["system", "system", "staff", "system"]
    assert {m["staff"]["sub"] for m in signed} == {OWNER.sub}
    assert runtime.service.get_lead(lead.id).notes == "handled by Sam"


def test_reply_staff_text_with_the_same_idempotency_key_is_sent_once(
    wired: Any, twilio: TwilioStandIn
) -> None:
    runtime, _ = wired
    phone = new_phone()
    lead = runtime.service.find_or_create_lead(phone, runtime.service.default_organization().id)

    first = runtime.staff.send_staff_text(OWNER, lead.id, "Your bike is ready.", key="ticket-1")
    again = runtime.staff.send_staff_text(OWNER, lead.id, "Your bike is ready.", key="ticket-1")

    assert first == again
    assert len(sent_to(twilio, phone)) == 1


@pytest.mark.parametrize("body", ["", "   ", None, 5, "x" * 1601])
def test_reply_staff_text_refuses_empty_or_long_bodies(wired: Any, body: Any) -> None:
    runtime, _ = wired
    lead = runtime.service.find_or_create_lead(
        new_phone(), runtime.service.default_organization().id
    )

    with pytest.raises(InvalidInput, match="field 'body'"):
        runtime.staff.send_staff_text(OWNER, lead.id, body)


def test_reply_erasure_deletes_outbound_and_system_messages(wired: Any, db: Any) -> None:
    runtime, _ = wired
    phone = new_phone()
    text(runtime, phone, "hi")
    lead = runtime.service.find_or_create_lead(phone, runtime.service.default_organization().id)
    runtime.staff.patch_lead(OWNER, lead.id, {"human_control": True}, None)

    runtime.service.delete_lead(lead.id)

    left = db.run("SELECT count(*) FROM messages WHERE lead_id = :id", id=lead.id)
    assert left == [[0]]
    assert db.run("SELECT count(*) FROM messages WHERE to_number = :p", p=phone) == [[0]]


# -- storage first ---------------------------------------------------------------------------


def test_reply_inbound_text_is_stored_when_agent_and_twilio_are_down(
    settings: Settings, agent: AgentStandIn, twilio: TwilioStandIn, make_runtime: Any, db: Any
) -> None:
    down = dataclasses.replace(
        reply_settings(settings, agent, twilio),
        elevenlabs_ws_url=f"ws://127.0.0.1:{free_port()}/v1/convai/conversation",
        elevenlabs_api_url=f"http://127.0.0.1:{free_port()}",
        twilio_api_url=f"http://127.0.0.1:{free_port()}",
    )
    runtime = make_runtime(down)
    wire(runtime, RecordingReplyMetrics())
    phone = new_phone()

    text(runtime, phone, "anyone there?")

    inbound, outbound = rows(db, phone)
    assert inbound["body"] == "anyone there?"
    assert (outbound["sender_kind"], outbound["status"]) == ("fallback", "failed")
    container.set_runtime(None)


# -- exactly once under concurrent deliveries (DynamoDB idempotency, moto) ----------------------


def test_reply_two_concurrent_deliveries_send_one_sms(
    settings: Settings, agent: AgentStandIn, twilio: TwilioStandIn, aws_env: None
) -> None:
    agent.delay_s = 0.5
    outcomes: list[dict[str, Any]] = []
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="idempotency",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        configured = reply_settings(settings, agent, twilio, idempotency_table="idempotency")
        responder = container.build_responder(
            configured, InProcessQueue(outcomes.append), RecordingReplyMetrics()
        )
        phone = new_phone()
        job = ReplyJob(
            key=f"reply:SM{uuid.uuid4().hex}",
            kind="agent",
            organization_id=settings.default_organization_id,
            lead_id=None,
            to_number=phone,
            from_number=STORE,
            body="hello twice",
            fallback_text="fixed",
        )
        first = threading.Thread(target=responder.handle, args=(job,))
        first.start()
        while not agent.conversations:
            time.sleep(0.01)

        with pytest.raises(IdempotencyAlreadyInProgressError):
            responder.handle(job)
        first.join()
        redelivered = responder.handle(job)

    assert len(sent_to(twilio, phone)) == 1
    assert len(agent.conversations) == 1
    assert [ReplyOutcome.from_json(o).twilio_sid for o in outcomes] == [
        redelivered.twilio_sid if redelivered else None
    ] * 2


# -- follow-ups after calls ------------------------------------------------------------------


def _store_with_follow_ups(service: Any, **flags: bool) -> Any:
    phone = new_phone()
    base = service.default_organization()
    return service.upsert_org(
        {
            "name": "BICI Follow-ups",
            "phone_number": phone,
            "settings": {**base.settings, "sms_follow_ups": flags},
        }
    )


def _post_call(lead: Any, store: Any, *, texted: bool = False, **asked: Any) -> Any:
    """A report of a call to ``store`` (of an SMS reply's conversation when ``texted``)."""
    variables = {"lead_id": lead.id}
    metadata: dict[str, Any] = {"phone_call": {"agent_number": store.phone_number}}
    if texted:
        variables.update(channel="sms", call_type="sms")
        metadata = {"text_only": True}
    body = {
        "type": "post_call_transcription",
        "data": {
            "conversation_id": f"conv_{uuid.uuid4().hex}",
            "metadata": metadata,
            "conversation_initiation_client_data": {"dynamic_variables": variables},
            "analysis": {
                "transcript_summary": "Asked about the store.",
                "data_collection_results": {k: {"value": v} for k, v in asked.items()},
            },
        },
    }
    return call_report.parse_post_call(body)


def test_reply_follow_up_after_a_call_once_per_lead_per_30_minutes(
    wired: Any, twilio: TwilioStandIn, db: Any
) -> None:
    runtime, _ = wired
    service = runtime.service
    store = _store_with_follow_ups(service, asked_hours=True, asked_directions=True)
    twilio.owned_numbers.add(store.phone_number)  # Twilio sends only from the account's numbers
    phone = new_phone()
    lead = service.find_or_create_lead(phone, store.id)
    call = _post_call(lead, store, asked_hours=True, asked_directions="true")

    postcall.store_post_call(call, service, runtime.replies)
    postcall.store_post_call(call, service, runtime.replies)  # the same report delivered again
    postcall.store_post_call(
        _post_call(lead, store, asked_hours=True), service, runtime.replies
    )  # next call

    [text] = sent_to(twilio, phone)
    assert text["from"] == store.phone_number
    assert "Our hours: Mon-Fri 8:00 AM-6:00 PM, Sat-Sun 9:00 AM-4:30 PM." in text["body"]
    assert (
        "Find us at 1497 Adanac Street, Vancouver, BC: https://www.google.com/maps"
        in (text["body"])
    )
    [row] = [r for r in rows(db, phone) if r["direction"] == "outbound"]
    assert (row["sender_kind"], row["external_id"]) == (
        "follow_up",
        f"follow_up:{call.conversation_id}",
    )
    # After the window the next call's follow-up goes out.
    db.run(
        "UPDATE leads SET last_automation_at = now() - interval '31 minutes' WHERE id = :id",
        id=lead.id,
    )
    postcall.store_post_call(_post_call(lead, store, asked_hours=True), service, runtime.replies)
    assert len(sent_to(twilio, phone)) == 2


def test_reply_follow_up_only_for_enabled_topics_and_never_to_opted_out_leads(
    wired: Any, twilio: TwilioStandIn, db: Any
) -> None:
    runtime, pipeline = wired
    service = runtime.service
    store = _store_with_follow_ups(service, appointment_request=True)
    lead = service.find_or_create_lead(new_phone(), store.id)
    opted_out = service.find_or_create_lead(new_phone(), store.id)
    db.run("UPDATE leads SET opted_out_at = now() WHERE id = :id", id=opted_out.id)

    not_enabled = pipeline.after_call(
        lead, "conv-a", _post_call(lead, store, asked_hours=True).payload
    )
    not_asked = pipeline.after_call(lead, "conv-b", _post_call(lead, store).payload)
    refused = pipeline.after_call(
        opted_out, "conv-c", _post_call(opted_out, store, appointment_request=True).payload
    )
    default_store = pipeline.after_call(
        service.find_or_create_lead(new_phone(), service.default_organization().id),
        "conv-d",
        _post_call(lead, store, asked_hours=True).payload,
    )

    assert (not_enabled, not_asked, default_store) == ("nothing to follow up",) * 3
    assert refused == "rate limited, opted out or under human control"
    assert twilio.sent == []


# The store's live agent asks in words, not flags.
LIVE_AGENT_ASKS = {
    "customer_triggers": "Asked about store hours, asked for directions/location",
    "follow_up_needed": "send directions with map links",
    "call_classification": "sales",
}


def test_reply_follow_up_from_the_live_agents_phrases_for_enabled_topics_only(
    wired: Any, twilio: TwilioStandIn
) -> None:
    runtime, _ = wired
    service = runtime.service
    stores = [
        _store_with_follow_ups(service, asked_hours=True, asked_directions=True),
        _store_with_follow_ups(service, asked_directions=True),
        _store_with_follow_ups(service, appointment_request=True),
    ]
    phones = [new_phone() for _ in stores]
    twilio.owned_numbers.update(store.phone_number for store in stores)

    for store, phone in zip(stores, phones, strict=True):
        lead = service.find_or_create_lead(phone, store.id)
        postcall.store_post_call(
            _post_call(lead, store, **LIVE_AGENT_ASKS), service, runtime.replies
        )

    [both] = sent_to(twilio, phones[0])
    assert "Our hours: Mon-Fri 8:00 AM-6:00 PM" in both["body"]
    assert "Find us at 1497 Adanac Street" in both["body"]
    [directions] = sent_to(twilio, phones[1])
    assert "Find us at 1497 Adanac Street" in directions["body"]
    assert "Our hours" not in directions["body"]
    assert sent_to(twilio, phones[2]) == []


def test_reply_text_conversation_report_sends_no_follow_up(
    wired: Any, twilio: TwilioStandIn, db: Any
) -> None:
    runtime, _ = wired
    service = runtime.service
    store = _store_with_follow_ups(service, asked_hours=True, asked_directions=True)
    phone = new_phone()
    lead = service.find_or_create_lead(phone, store.id)
    report = _post_call(lead, store, texted=True, asked_hours=True, **LIVE_AGENT_ASKS)

    postcall.store_post_call(report, service, runtime.replies)
    postcall.store_post_call(report, service, runtime.replies)  # delivered again

    assert sent_to(twilio, phone) == []
    [(count, key)] = db.run(
        "SELECT interaction_count, last_automation_key FROM leads WHERE id = :id", id=lead.id
    )
    assert (count, key) == (0, None)


# -- protocol variants and outages after storage ----------------------------------------------


@pytest.mark.parametrize("echo", [True, False])
def test_reply_agent_answer_is_taken_whether_or_not_the_text_is_echoed(
    wired: Any, agent: AgentStandIn, twilio: TwilioStandIn, echo: bool
) -> None:
    runtime, _ = wired
    agent.echo = echo
    phone = new_phone()

    text(runtime, phone, "what about e-bikes?")

    [sent] = sent_to(twilio, phone)
    assert sent["body"].startswith("Hi there! You said: what about e-bikes?")


def test_reply_database_down_after_storing_replies_on_redelivery(
    wired: Any, twilio: TwilioStandIn, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, _ = wired
    phone = new_phone()
    sid = f"SM{uuid.uuid4().hex}"
    real = runtime.service.repo.reply_context
    calls: list[int] = []

    def flaky(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise Unavailable("database is unreachable")
        return real(*args)

    monkeypatch.setattr(runtime.service.repo, "reply_context", flaky)
    with pytest.raises(Unavailable):
        text(runtime, phone, "still there?", sid)
    stored = rows(db, phone)

    text(runtime, phone, "still there?", sid)

    assert [r["direction"] for r in stored] == ["inbound"]
    assert len(sent_to(twilio, phone)) == 1
    assert [r["direction"] for r in rows(db, phone)] == ["inbound", "outbound"]


def test_reply_twilio_unsubscribed_error_marks_the_lead_opted_out(
    wired: Any, twilio: TwilioStandIn, db: Any
) -> None:
    runtime, _ = wired
    phone = new_phone()
    twilio.unsubscribed.add(phone)

    text(runtime, phone, "hi")
    text(runtime, phone, "hello?")

    assert twilio.requests == 1
    assert rows(db, phone)[1]["status"] == "failed"
    lead = runtime.service.find_or_create_lead(phone, runtime.service.default_organization().id)
    assert lead.opted_out_at is not None


# -- the agent's whole turn, as ElevenLabs sends it ------------------------------------------


def _params(db: Any, sid: str) -> dict[str, Any]:
    [[params]] = db.run("SELECT params FROM messages WHERE external_id = :k", k=f"reply:{sid}")
    return dict(params or {})


@pytest.mark.parametrize("tool", ["webhook", "client", "mcp", "none"])
def test_reply_holding_phrase_before_a_tool_call_is_not_texted(
    wired: Any, agent: AgentStandIn, twilio: TwilioStandIn, tool: str
) -> None:
    runtime, _ = wired
    # Longer than the settle window: the phrase is recognised, not outwaited.
    agent.holding, agent.tool, agent.tool_delay_s = HOLDING, tool, 0.5
    phone = new_phone()

    text(runtime, phone, "is the Trek FX 3 in stock?")

    [sent] = sent_to(twilio, phone)
    assert sent["body"].startswith("Hi there! You said: is the Trek FX 3 in stock?")
    assert "One moment" not in sent["body"]
    [conversation] = agent.conversations
    if tool == "client":
        # We run no client tools: the agent is told so at once instead of timing out.
        [result] = conversation["tool_results"]
        assert result["is_error"] is True


def test_reply_store_agents_own_holding_phrase_is_not_texted(
    wired: Any, agent: AgentStandIn, twilio: TwilioStandIn
) -> None:
    runtime, _ = wired
    # The store's prompt: "Let me check our current Cannondale inventory for you..." then a
    # catalog search, and its client events include no tool events.
    agent.holding = "Let me check our current Cannondale inventory for you..."
    agent.tool, agent.tool_delay_s = "none", 0.5
    phone = new_phone()

    text(runtime, phone, "any Cannondales?")

    [sent] = sent_to(twilio, phone)
    assert sent["body"].startswith("Hi there! You said: any Cannondales?")
    assert "inventory" not in sent["body"]


def test_reply_holding_phrase_and_then_silence_sends_the_fixed_text(
    settings: Settings, agent: AgentStandIn, twilio: TwilioStandIn, make_runtime: Any, db: Any
) -> None:
    agent.holding, agent.tool, agent.tool_delay_s = HOLDING, "webhook", 5.0
    runtime = make_runtime(reply_settings(settings, agent, twilio, sms_reply_deadline_ms=1000))
    metrics = RecordingReplyMetrics()
    wire(runtime, metrics)
    phone = new_phone()

    sid = text(runtime, phone, "is it in stock?")

    [sent] = sent_to(twilio, phone)
    assert sent["body"].startswith("Thanks for texting BICI Bike Store!")
    assert _params(db, sid)["fallback_reason"] == "timeout"
    assert metrics.counts[names.SMS_REPLY_FALLBACK] == 1
    container.set_runtime(None)


@pytest.mark.parametrize("echo", [True, False])
@pytest.mark.parametrize("first_message", ["{{dynamic_greeting}}", "Hi! Ryder from BICI here.", ""])
def test_reply_answer_with_or_without_greeting_and_echo(
    wired: Any, agent: AgentStandIn, twilio: TwilioStandIn, db: Any, first_message: str, echo: bool
) -> None:
    runtime, _ = wired
    agent.first_message, agent.echo = first_message, echo
    phone = new_phone()

    text(runtime, phone, "do you fix brakes?")

    [sent] = sent_to(twilio, phone)
    assert sent["body"].startswith("Hi there! You said: do you fix brakes?")
    assert "BICI here" not in sent["body"] and "Thanks for calling" not in sent["body"]
    assert rows(db, phone)[-1]["sender_kind"] == "agent"


@pytest.mark.parametrize("echo", [True, False])
@pytest.mark.parametrize("late", ["delayed", "after_text"])
def test_reply_greeting_arriving_after_the_text_is_not_texted(
    wired: Any, agent: AgentStandIn, twilio: TwilioStandIn, late: str, echo: bool
) -> None:
    runtime, _ = wired
    agent.echo = echo
    if late == "delayed":
        # Longer than the greeting wait: our text reaches the server first.
        agent.greeting_delay_s = 0.5
    else:
        agent.greeting_after_text = True
    phone = new_phone()

    text(runtime, phone, "hours on Sunday?")

    [sent] = sent_to(twilio, phone)
    [conversation] = agent.conversations
    greeting = conversation["init"]["dynamic_variables"]["dynamic_greeting"]
    assert sent["body"].startswith("Hi there! You said: hours on Sunday?")
    assert greeting not in sent["body"]


def test_reply_answer_in_two_parts_is_texted_whole(
    wired: Any, agent: AgentStandIn, twilio: TwilioStandIn
) -> None:
    runtime, _ = wired
    agent.split_answer = True
    phone = new_phone()

    text(runtime, phone, "where are you?")

    [sent] = sent_to(twilio, phone)
    [conversation] = agent.conversations
    status = conversation["init"]["dynamic_variables"]["store_status"]
    assert sent["body"] == f"Hi there! You said: where are you?. {status}"


def test_reply_private_agent_is_reached_through_a_signed_url(
    wired: Any, agent: AgentStandIn, twilio: TwilioStandIn, db: Any
) -> None:
    runtime, _ = wired
    agent.enable_auth = True
    phone = new_phone()

    text(runtime, phone, "hello private agent")

    [sent] = sent_to(twilio, phone)
    assert sent["body"].startswith("Hi there! You said: hello private agent")
    assert rows(db, phone)[-1]["sender_kind"] == "agent"
    # The key went to the REST call only, never to the conversation's socket.
    assert agent.signed_url_requests == [{"agent_id": [agent.agent_id], "api_key": agent.api_key}]
    [conversation] = agent.conversations
    assert (conversation["signed"], conversation["api_key_sent"]) == (True, False)


def test_reply_public_agent_without_a_key_connects_with_the_agent_id(
    settings: Settings, agent: AgentStandIn, twilio: TwilioStandIn, make_runtime: Any
) -> None:
    runtime = make_runtime(reply_settings(settings, agent, twilio, api_key=""))
    wire(runtime, RecordingReplyMetrics())
    phone = new_phone()

    text(runtime, phone, "hello public agent")

    [sent] = sent_to(twilio, phone)
    assert sent["body"].startswith("Hi there! You said: hello public agent")
    assert agent.signed_url_requests == []
    [conversation] = agent.conversations
    assert (conversation["signed"], conversation["api_key_sent"]) == (False, False)
    container.set_runtime(None)


@pytest.mark.parametrize(
    ("key", "private", "reason"),
    [("xi-wrong-key", False, "auth"), ("", True, "auth")],
    ids=["wrong key", "private agent without a key"],
)
def test_reply_refused_key_sends_the_fixed_text_with_the_reason(
    settings: Settings,
    agent: AgentStandIn,
    twilio: TwilioStandIn,
    make_runtime: Any,
    db: Any,
    key: str,
    private: bool,
    reason: str,
) -> None:
    agent.enable_auth = private
    runtime = make_runtime(reply_settings(settings, agent, twilio, api_key=key))
    metrics = RecordingReplyMetrics()
    wire(runtime, metrics)
    phone = new_phone()

    sid = text(runtime, phone, "hello?")

    [sent] = sent_to(twilio, phone)
    assert sent["body"].startswith("Thanks for texting BICI Bike Store!")
    assert agent.conversations == []
    assert rows(db, phone)[-1]["sender_kind"] == "fallback"
    assert _params(db, sid)["fallback_reason"] == reason
    assert metrics.counts[names.SMS_REPLY_FALLBACK] == 1
    container.set_runtime(None)


def test_reply_photo_without_words_starts_no_conversation(
    wired: Any, agent: AgentStandIn, twilio: TwilioStandIn, db: Any, reply_metrics: Any
) -> None:
    runtime, _ = wired
    phone = new_phone()
    sid = f"MM{uuid.uuid4().hex}"
    photo = {
        "MessageSid": sid,
        "From": phone,
        "To": STORE,
        "Body": "",
        "NumMedia": "1",
        "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        "MediaContentType0": "image/jpeg",
        "AccountSid": "AC1",
    }

    sms.process_message(runtime.service, runtime.replies, photo)

    assert agent.conversations == []
    [sent] = sent_to(twilio, phone)
    assert sent["body"] == (
        "Thanks for texting BICI Bike Store! We can't open photos or attachments here: please "
        "tell us in words what you need, or call us at +17786528784."
    )
    inbound, outbound = rows(db, phone)
    assert inbound["body"] == ""
    assert (outbound["sender_kind"], outbound["twilio_sid"]) == ("fallback", sent["sid"])
    assert _params(db, sid)["fallback_reason"] == "no_text"
    assert reply_metrics.counts == {names.SMS_REPLY_NO_TEXT: 1, names.SMS_REPLY_SENT: 1}


# -- the agent client and the stand-in, without the pipeline ----------------------------------


def _job(**variables: str) -> ReplyJob:
    return ReplyJob(
        key=f"reply:SM{uuid.uuid4().hex}",
        kind="agent",
        organization_id="b0c1b1c1-0000-0000-0000-000000000001",
        lead_id=None,
        to_number="+16045550142",
        from_number=STORE,
        body="are you open?",
        fallback_text="fixed",
        dynamic_variables=dict(variables),
    )


def _client(agent: AgentStandIn, key: str | None, agent_id: str | None = None) -> ElevenLabsAgent:
    return ElevenLabsAgent(
        agent.url, agent_id or agent.agent_id, lambda: key, api_url=agent.api_url, settle_s=0.2
    )


def test_standin_answer_agrees_with_a_closed_store(agent: AgentStandIn) -> None:
    closed = "We're closed for the day; we open tomorrow at 8:00 AM."
    job = _job(store_is_open="false", store_status=closed, business_hours_today="8:00 AM - 6:00 PM")

    answer = _client(agent, agent.api_key).reply(job, time.monotonic() + 3)

    assert answer == f"Hi there! You said: are you open?. {closed}"
    assert "We're open" not in answer


_VANCOUVER_WEDNESDAY = "2026-01-14T{}:00+00:00"  # Vancouver is UTC-8 in January


@pytest.mark.parametrize(
    ("moment", "hours", "expect_open"),
    [
        (_VANCOUVER_WEDNESDAY.format("20:00"), "seeded", True),  # noon
        (_VANCOUVER_WEDNESDAY.format("15:00"), "seeded", False),  # 7 AM: opens at 8
        ("2026-01-15T03:00:00+00:00", "seeded", False),  # 7 PM: closed for the day
        ("2026-01-18T20:00:00+00:00", "no sundays", False),  # Sunday noon: closed today
        (_VANCOUVER_WEDNESDAY.format("20:00"), "none", False),  # no hours at all: never open
    ],
    ids=["open", "before opening", "after closing", "closed day", "no hours"],
)
def test_standin_states_the_store_status_the_hours_rule_gives(
    agent: AgentStandIn, moment: str, hours: str, expect_open: bool
) -> None:
    # The variables as the pipeline builds them (domain.variables over domain.hours), not
    # written by hand: whatever the stand-in says about the store comes from the same rule.
    snapshot = copy.deepcopy(default_organization_snapshot())
    table = snapshot["settings"]["business_hours"]
    if hours == "no sundays":
        del table["sunday"]
    elif hours == "none":
        table.clear()
    org = Organization.from_json(snapshot)
    now = datetime.fromisoformat(moment)
    local = now.astimezone(store_zone(org))
    week = week_hours(org.settings)
    variables = build_variables(org, None, now, channel="sms")

    answer = _client(agent, agent.api_key).reply(_job(**variables), time.monotonic() + 3)

    open_now = is_open(week, local)
    said = store_status(week, local) or ("We're open today." if open_now else "We're closed now.")
    assert open_now is expect_open
    assert answer == f"Hi there! You said: are you open?. {said}"
    assert ("We're open" in answer) is expect_open


@pytest.mark.parametrize(
    ("key", "agent_id", "url", "reason"),
    [
        ("xi-wrong-key", None, None, "auth"),
        ("xi-test-key", "agent_unknown", None, "not_found"),
        ("xi-test-key", None, "closed", "connection"),
    ],
    ids=["wrong key", "unknown agent", "API unreachable"],
)
def test_agent_signed_url_failures_name_their_reason(
    agent: AgentStandIn, key: str, agent_id: str | None, url: str | None, reason: str
) -> None:
    client = _client(agent, key, agent_id)
    if url == "closed":
        client = ElevenLabsAgent(
            agent.url, agent.agent_id, lambda: key, api_url=f"http://127.0.0.1:{free_port()}"
        )

    with pytest.raises(AgentError) as failure:
        client.reply(_job(), time.monotonic() + 3)

    assert failure.value.reason == reason
    assert agent.conversations == []


def test_standin_signed_url_token_is_good_once(agent: AgentStandIn) -> None:
    client = _client(agent, agent.api_key)
    signed = client.signed_url(agent.api_key or "", time.monotonic() + 3)

    with connect(signed, open_timeout=2) as first:
        first.close()
    with pytest.raises(InvalidStatus) as refused:
        connect(signed, open_timeout=2)

    assert refused.value.response.status_code == 403


def test_standin_serves_the_agent_config_to_the_api_key_only(agent: AgentStandIn) -> None:
    path = f"/v1/convai/agents/{agent.agent_id}"
    agent.agent_config = {"agent_id": agent.agent_id, "conversation_config": {"agent": {}}}

    def get(headers: dict[str, str]) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=2)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    with_key = get({"xi-api-key": agent.api_key or ""})
    without = get({})

    assert with_key == (200, agent.agent_config)
    assert without[0] == 401


def test_standin_local_run_wiring_reaches_the_agent_through_its_rest_api() -> None:
    env = {"STANDIN_AGENT_PORT": "0", "STANDIN_TWILIO_PORT": "0", "SMS_REPLY_SETTLE_MS": "100"}
    stand_ins = start_for_local_run(env, io.StringIO())
    try:
        local_agent = stand_ins[0]
        assert isinstance(local_agent, AgentStandIn)
        responder = container.build_responder(
            Settings.from_env(env), InProcessQueue(lambda body: None), RecordingReplyMetrics()
        )
        assert responder.agent is not None

        answer = responder.agent.reply(_job(), time.monotonic() + 5)

        assert env["ELEVENLABS_API_URL"] == local_agent.api_url
        assert answer.startswith("Hi there! You said: are you open?")
        assert len(local_agent.signed_url_requests) == 1
    finally:
        for stand_in in stand_ins:
            stand_in.stop()


def test_reply_patch_with_human_control_and_fields_commits_once(
    counted: Any, pg_proxy: Any, db: Any
) -> None:
    service = counted.service
    lead = service.find_or_create_lead(new_phone(), service.default_organization().id)
    before = pg_proxy.round_trips

    saved = service.update_lead(
        lead.id, {"human_control": True, "notes": "taking this one"}, lead.version
    )

    notes = db.run(
        "SELECT body FROM messages WHERE lead_id = :id AND direction = 'system'", id=lead.id
    )
    # The read the merge starts from, then one statement (one transaction) for the fields, the
    # flag and its note: before, the flag was a second statement and a second commit.
    assert pg_proxy.round_trips - before == 2
    assert (saved.human_control, saved.notes, saved.version) == (
        True,
        "taking this one",
        lead.version + 1,
    )
    assert sorted(notes) == [["Edited notes"], ["Staff took over the conversation"]]
