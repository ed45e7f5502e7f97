"""conversation_context travels with the cached lead, kept current by writes; counted trips."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from devkit.proxy import TcpProxy
from leadlookup.config import DEFAULT_ORGANIZATION_ID, Settings
from leadlookup.container import Runtime
from leadlookup.domain.jobs import ReplyOutcome
from leadlookup.domain.models import InboundMessage, PostCall
from leadlookup.domain.variables import DYNAMIC_VARIABLE_KEYS, FIRST_INTERACTION
from leadlookup.usecases import initiation
from tests.conftest import EVENTS
from tests.support.db import execute, scalar
from tests.support.faults import new_phone

STORE_NUMBER = "+17786528784"


def _call(
    runtime: Runtime, caller: str | None, called: str | None = STORE_NUMBER
) -> dict[str, str]:
    request: dict[str, Any] = {"call_sid": "CA" + uuid.uuid4().hex}
    if caller is not None:
        request["caller_id"] = caller
    if called is not None:
        request["called_number"] = called
    body, degraded = initiation.initiate(runtime.service, request, datetime.now(UTC), 1500)
    assert not degraded
    variables: dict[str, str] = body["dynamic_variables"]
    assert set(variables) == set(DYNAMIC_VARIABLE_KEYS)
    return variables


def _text(runtime: Runtime, sender: str, body: str) -> None:
    """An inbound SMS stored through the processor's write path."""
    service = runtime.service
    lead = service.find_or_create_lead(sender, DEFAULT_ORGANIZATION_ID)
    message = InboundMessage(
        message_sid="SM" + uuid.uuid4().hex,
        from_number=sender,
        to_number=STORE_NUMBER,
        body=body,
        params={"Body": body},
    )
    service.record_inbound_message(message, DEFAULT_ORGANIZATION_ID, lead)


def _summary(runtime: Runtime, lead_id: str, summary: str, classification: str) -> None:
    """A post-call summary stored through the post-call write path."""
    call = PostCall(
        conversation_id="conv_" + uuid.uuid4().hex,
        payload={},
        lead_id=lead_id,
        summary=summary,
        classification=classification,
        status=classification,
    )
    lead = runtime.service.get_lead(lead_id)
    runtime.service.record_call_summary(call, DEFAULT_ORGANIZATION_ID, lead)


def test_context_known_caller_who_texted_first_costs_one_round_trip_then_none(
    counted: Runtime, pg_proxy: TcpProxy, redis_proxy: TcpProxy
) -> None:
    caller = new_phone()
    _text(counted, caller, "Do you have the Topstone gravel bike in a 56?")
    counted.service.get_organization_by_phone(STORE_NUMBER)  # the store is held in process
    pg_proxy.reset_counters()
    written_through = _call(counted, caller)  # the SMS write put the committed lead in Redis
    after_write_trips = pg_proxy.round_trips
    counted.service.flush_lead(caller, DEFAULT_ORGANIZATION_ID)
    pg_proxy.reset_counters()

    cold = _call(counted, caller)
    miss_trips = pg_proxy.round_trips
    pg_proxy.reset_counters()
    redis_proxy.reset_counters()
    warm = _call(counted, caller)

    texted = 'Customer texted just now: "Do you have the Topstone gravel bike in a 56?"'
    assert written_through["conversation_context"] == texted and after_write_trips == 0
    assert cold["conversation_context"] == texted
    assert cold["last_topic"] == "Do you have the Topstone gravel bike in a 56?"
    assert miss_trips == 1
    assert warm["conversation_context"] == texted
    assert pg_proxy.round_trips == 0
    assert redis_proxy.round_trips <= 1


def test_context_new_caller_is_a_first_interaction(counted: Runtime) -> None:
    variables = _call(counted, new_phone())

    assert variables["conversation_context"] == FIRST_INTERACTION
    assert variables["customer_history"] == "New customer: this is their first contact."


def test_context_is_kept_current_by_sms_post_call_and_patch(
    settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    reader = make_runtime(settings)
    writer = make_runtime(settings)
    caller = new_phone()
    lead_id = _call(reader, caller)["lead_id"]  # cached by the reader

    _text(writer, caller, "Is the shop open Sunday?")
    after_sms = _call(reader, caller)
    _summary(writer, lead_id, "Wants a gravel bike under $2000.", "qualified")
    after_call = _call(reader, caller)
    writer.service.update_lead(lead_id, {"customer_name": "Ada"})
    after_patch = _call(reader, caller)

    texted = 'Customer texted just now: "Is the shop open Sunday?"'
    assert after_sms["conversation_context"] == texted
    assert after_call["conversation_context"].splitlines() == [
        "Call just now (qualified): Wants a gravel bike under $2000.",
        texted,
    ]
    assert after_call["interaction_count"] == "1" and after_call["lead_status"] == "qualified"
    assert after_patch["customer_name"] == "Ada"
    assert after_patch["conversation_context"] == after_call["conversation_context"]


def test_context_stored_reply_reaches_the_cached_lead(counted: Runtime, pg_proxy: TcpProxy) -> None:
    caller = new_phone()
    lead_id = _call(counted, caller)["lead_id"]  # cached
    outcome = ReplyOutcome(
        key="reply:SM" + uuid.uuid4().hex,
        sender_kind="agent",
        organization_id=DEFAULT_ORGANIZATION_ID,
        lead_id=lead_id,
        to_number=caller,
        from_number=STORE_NUMBER,
        body="Yes, the Topstone 56 is in stock.",
        twilio_sid="SM" + uuid.uuid4().hex,
        status="queued",
    )

    counted.outcomes.store_outcome(outcome)
    pg_proxy.reset_counters()
    variables = _call(counted, caller)

    assert variables["conversation_context"] == (
        'We texted just now: "Yes, the Topstone 56 is in stock."'
    )
    assert pg_proxy.round_trips == 0


def test_context_shows_the_last_text_of_each_direction_and_calls_newest_first(
    settings: Settings, make_runtime: Callable[..., Runtime], database_url: str
) -> None:
    runtime = make_runtime(settings)
    caller = new_phone()
    lead_id = _call(runtime, caller)["lead_id"]
    rows = [
        ("inbound", "older question", "3 days"),
        ("inbound", "newest question", "2 hours"),
        ("outbound", "our reply", "1 hour"),
    ]
    for direction, body, age in rows:
        execute(
            database_url,
            "INSERT INTO messages (organization_id, lead_id, external_id, direction, body, "
            "created_at) VALUES (:org, :lead, :sid, :direction, :body, now() - :age::interval)",
            org=DEFAULT_ORGANIZATION_ID,
            lead=lead_id,
            sid="SM" + uuid.uuid4().hex,
            direction=direction,
            body=body,
            age=age,
        )
    calls = [("first call", "new", "9 days"), ("second", "hot", "1 day")]
    for summary, classification, age in calls:
        execute(
            database_url,
            "INSERT INTO call_summaries (organization_id, lead_id, conversation_id, summary, "
            "classification, created_at) VALUES (:org, :lead, :conv, :summary, :cls, "
            "now() - :age::interval)",
            org=DEFAULT_ORGANIZATION_ID,
            lead=lead_id,
            conv="conv_" + uuid.uuid4().hex,
            summary=summary,
            cls=classification,
            age=age,
        )
    runtime.service.flush_lead(caller, DEFAULT_ORGANIZATION_ID)  # rows written behind its back

    context = _call(runtime, caller)["conversation_context"]

    assert context.splitlines() == [
        'We texted 1 hour ago: "our reply"',
        'Customer texted 2 hours ago: "newest question"',
        "Call yesterday (hot): second",
        "Call 9 days ago (new): first call",
    ]


def test_context_erasure_removes_it_with_the_lead(
    settings: Settings, make_runtime: Callable[..., Runtime], database_url: str
) -> None:
    runtime = make_runtime(settings)
    caller = new_phone()
    _text(runtime, caller, "Please forget me after this.")
    lead_id = _call(runtime, caller)["lead_id"]
    key = runtime.service.leads.key(caller.lstrip("+"), DEFAULT_ORGANIZATION_ID)

    runtime.service.delete_lead(lead_id)
    backend = runtime.cache.backend
    assert backend is not None
    cached_after_erasure = backend.get(key)
    again = _call(runtime, caller)

    assert cached_after_erasure is None
    assert again["lead_id"] != lead_id
    assert again["conversation_context"] == FIRST_INTERACTION
    left = scalar(database_url, "SELECT count(*) FROM messages WHERE lead_id = :id", id=lead_id)
    assert left == 0


def test_context_outbound_call_finds_the_customer_by_the_called_number(
    settings: Settings, make_runtime: Callable[..., Runtime], database_url: str
) -> None:
    runtime = make_runtime(settings)
    customer = new_phone()
    _text(runtime, customer, "Call me back about the e-bike?")
    lead_id = runtime.service.find_or_create_lead(customer, DEFAULT_ORGANIZATION_ID).id
    leads_before = scalar(database_url, "SELECT count(*) FROM leads")

    variables = _call(runtime, caller=STORE_NUMBER, called=customer)

    assert (variables["is_outbound"], variables["call_type"]) == ("true", "outbound_followup")
    assert variables["lead_id"] == lead_id and variables["customer_phone"] == customer
    assert variables["organization_id"] == DEFAULT_ORGANIZATION_ID
    assert variables["dynamic_greeting"].startswith("Hey there! It's Bee-chee Bike Store calling")
    assert "Call me back about the e-bike?" in variables["conversation_context"]
    assert scalar(database_url, "SELECT count(*) FROM leads") == leads_before


def test_context_inbound_call_to_an_unknown_number_stays_inbound(counted: Runtime) -> None:
    variables = _call(counted, caller=new_phone(), called="+18005550100")

    assert (variables["is_outbound"], variables["call_type"]) == ("false", "inbound")
    assert variables["organization_id"] == DEFAULT_ORGANIZATION_ID


def test_context_retried_webhook_answers_the_same(
    app_env: dict[str, str],
    invoke: Callable[[str, dict[str, Any]], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(initiation, "utc_now", lambda: datetime(2026, 11, 25, 22, 5, tzinfo=UTC))
    event = json.loads((EVENTS / "conversation_initiation" / "known_caller.json").read_text())

    first = json.loads(invoke("conversation_initiation", event)["body"])
    retried = json.loads(invoke("conversation_initiation", event)["body"])

    assert first == retried
