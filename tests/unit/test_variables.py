"""The variable builder: the key set on every path, conversation_context, time zones."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leadlookup.adapters.elevenlabs import initiation_message
from leadlookup.adapters.queue import InProcessQueue
from leadlookup.domain import hours
from leadlookup.domain.jobs import JobKind, ReplyJob
from leadlookup.domain.models import (
    InboundMessage,
    Lead,
    Organization,
    default_organization_snapshot,
)
from leadlookup.domain.variables import (
    CONTEXT_MAX_CHARS,
    DYNAMIC_VARIABLE_KEYS,
    FIRST_INTERACTION,
    age_text,
    build_variables,
    conversation_context,
)
from leadlookup.usecases import initiation
from leadlookup.usecases.lookups import StoredInbound
from leadlookup.usecases.replies import ReplyPipeline

# Wednesday 2026-11-25, 2:05 PM in Vancouver.
NOW = datetime(2026, 11, 25, 22, 5, tzinfo=UTC)
STORE = Organization.from_json(default_organization_snapshot())


def _lead(**changes: Any) -> Lead:
    fields: dict[str, Any] = {
        "id": "5e1f0000-0000-4000-8000-0000000000a1",
        "organization_id": STORE.id,
        "phone_number": "+16045550142",
        "phone_number_normalized": "16045550142",
    }
    return Lead(**(fields | changes))


def _ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).isoformat()


@pytest.mark.parametrize(
    ("lead", "kwargs"),
    [
        (None, {}),
        (None, {"channel": "sms"}),
        (_lead(), {"call_id": "CA1"}),
        (_lead(customer_name="Ada", interaction_count=2), {"outbound": True}),
        (_lead(history=[{"kind": "inbound", "at": _ago(hours=1), "text": "hi"}]), {}),
    ],
)
def test_variables_every_path_has_exactly_the_key_set_all_strings(
    lead: Lead | None, kwargs: dict[str, Any]
) -> None:
    variables = build_variables(STORE, lead, NOW, **kwargs)

    assert list(variables) == list(DYNAMIC_VARIABLE_KEYS)
    assert len(set(DYNAMIC_VARIABLE_KEYS)) == 40
    assert all(isinstance(value, str) for value in variables.values())


class _Service:
    """The one lookup the reply decision makes: a lead that may be answered."""

    def reply_context(self, lead_id: str, external_id: str, key: str, count: int) -> dict:
        history = [  # newest first, as the statement returns them
            {"direction": "outbound", "body": "We do! Want to come by for a test ride?"},
            {"direction": "inbound", "body": "Do you have the Topstone in a 56?"},
        ]
        return {"opted_out": False, "human_control": False, "replied": False, "history": history}


def _sms_job(lead: Lead) -> ReplyJob:
    """The reply job ReplyPipeline queues for a text from ``lead``, as the responder reads it."""
    queued: list[ReplyJob] = []
    pipeline = ReplyPipeline(
        _Service(),  # type: ignore[arg-type]
        InProcessQueue(lambda body: queued.append(ReplyJob.from_json(body))),
        now=lambda: NOW,
    )

    text = InboundMessage("SM1", "+16045550142", "+17786528784", "What about a 58?", {})
    decision = pipeline.after_inbound(StoredInbound(STORE, lead, True), text)

    assert decision == "reply queued"
    return queued[0]


def test_variables_every_conversation_has_exactly_the_same_keys() -> None:
    lead = _lead(customer_name="Ada Lovelace", bike_interest={"type": "gravel"})

    voice = initiation.answer(STORE, lead, NOW, "CA1")
    outbound = initiation.answer(STORE, lead, NOW, "CA2", outbound=True)
    degraded = initiation.answer(STORE, None, NOW, "CA3")
    job = _sms_job(lead)
    sms = initiation_message(job)["dynamic_variables"]

    for body in (voice, outbound, degraded):
        assert list(body["dynamic_variables"]) == list(DYNAMIC_VARIABLE_KEYS)
        assert json.loads(initiation.answer_json(body)) == body
    assert list(sms) == list(DYNAMIC_VARIABLE_KEYS)
    assert sms == job.dynamic_variables  # sent to the agent as they were queued
    assert (sms["channel"], voice["dynamic_variables"]["channel"]) == ("sms", "voice")
    assert sms["recent_messages"] == (
        "customer: Do you have the Topstone in a 56?\n"
        "store: We do! Want to come by for a test ride?"
    )
    assert voice["dynamic_variables"]["recent_messages"] == ""


def test_variables_a_job_queued_by_an_older_version_still_gets_every_key() -> None:
    # What the previous version queued: the 36 keys of calls, without channel and the rest.
    old = dict(_sms_job(_lead()).dynamic_variables)
    for key in ("channel", "recent_messages", "store_greeting", "location_address_formatted"):
        del old[key]
    job = ReplyJob(
        key="reply:SM2",
        kind=JobKind.AGENT,
        organization_id=STORE.id,
        lead_id=None,
        to_number="+16045550142",
        from_number=STORE.phone_number,
        body="hi",
        dynamic_variables=old,
        history=[{"role": "customer", "text": "hi"}],
    )
    sparse_job = replace(job, key="reply:SM3", dynamic_variables={"customer_name": "Ada"})

    sent = initiation_message(job)["dynamic_variables"]
    sparse = initiation_message(sparse_job)["dynamic_variables"]

    assert set(sent) == set(sparse) == set(DYNAMIC_VARIABLE_KEYS)
    assert {key: sent[key] for key in old} == old
    assert (sent["channel"], sent["recent_messages"]) == ("sms", "customer: hi")
    assert sent["store_greeting"] == old["store_status"] == "We're open until 6:00 PM today."
    assert sent["location_address_formatted"] == "1497 Adanac Street, Vancouver, BC"
    assert sparse["customer_name"] == "Ada" and sparse["store_status"] == ""


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"address": "1497 Adanac Street, Vancouver, BC"}, "1497 Adanac Street, Vancouver, BC"),
        ({"address": "1497 Adanac Street\n  Vancouver,\nBC V5L 2C3\n"},
         "1497 Adanac Street, Vancouver, BC V5L 2C3"),
        ({"address": "1497 Adanac St", "address_formatted": "1497 Adanac St, Vancouver, Canada"},
         "1497 Adanac St, Vancouver, Canada"),
        ({"address": "1 Main St", "address_formatted": 7}, "1 Main St"),
        ({}, ""),
    ],
)  # fmt: skip
def test_variables_formatted_address_is_one_line_for_directions(
    settings: dict[str, Any], expected: str
) -> None:
    org = Organization("o-1", "BICI", "+17785550100", "17785550100", settings)

    variables = build_variables(org, None, NOW)

    assert variables["location_address_formatted"] == expected
    assert variables["location_address"] == (settings.get("address") or "")
    assert variables["store_greeting"] == variables["store_status"]


def test_variables_are_the_same_for_a_retried_call() -> None:
    lead = _lead(customer_name="Ada", history=[{"kind": "call", "at": _ago(days=2), "text": "x"}])

    first = build_variables(STORE, lead, NOW, call_id="CA5f0e8a1b2c")
    retried = build_variables(STORE, lead, NOW, call_id="CA5f0e8a1b2c")

    assert first == retried


def test_variables_context_is_newest_first_with_classification_and_age() -> None:
    lead = _lead(
        history=[
            {"kind": "inbound", "at": _ago(minutes=20), "text": "Is the Topstone in?"},
            {"kind": "outbound", "at": _ago(minutes=25), "text": "Hi Ada, we open at 8."},
            {
                "kind": "call",
                "at": _ago(days=2, hours=1),
                "text": "Asked about gravel bikes.",
                "classification": "qualified",
            },
            {"kind": "call", "at": _ago(days=40), "text": "First call.", "classification": None},
        ]
    )

    context = conversation_context(lead, NOW)

    assert context.splitlines() == [
        'Customer texted 20 minutes ago: "Is the Topstone in?"',
        'We texted 25 minutes ago: "Hi Ada, we open at 8."',
        "Call 2 days ago (qualified): Asked about gravel bikes.",
        "Call 5 weeks ago: First call.",
    ]


def test_variables_context_is_capped_at_1500_characters() -> None:
    long = "word " * 80
    lead = _lead(
        history=[
            {"kind": "call", "at": _ago(days=n + 1), "text": long, "classification": "hot"}
            for n in range(8)
        ]
    )

    context = conversation_context(lead, NOW)

    assert len(context) <= CONTEXT_MAX_CHARS
    assert context.endswith("...")
    assert context.startswith("Call yesterday (hot): word")


def test_variables_context_for_new_imported_and_anonymous_callers() -> None:
    assert conversation_context(_lead(), NOW) == FIRST_INTERACTION
    assert conversation_context(_lead(last_summary="Asked  about\nkids' bikes."), NOW) == (
        "Earlier call summary: Asked about kids' bikes."
    )
    assert "unknown" in conversation_context(None, NOW)


def test_variables_new_caller_matches_the_design_cases() -> None:
    variables = build_variables(STORE, _lead(), NOW)

    assert variables["lead_status"] == "new" and variables["interaction_count"] == "0"
    assert variables["conversation_context"] == FIRST_INTERACTION
    assert variables["customer_phone"] == "+16045550142"
    assert variables["is_outbound"] == "false" and variables["call_type"] == "inbound"


def test_variables_sms_channel_and_follow_up_call_types() -> None:
    sms = build_variables(STORE, _lead(), NOW, channel="sms", recent_messages="customer: hi")
    voice = build_variables(STORE, _lead(), NOW)
    outbound = build_variables(STORE, _lead(bike_interest={"type": "e-bike"}), NOW, outbound=True)

    assert (sms["channel"], sms["call_type"], sms["recent_messages"]) == (
        "sms",
        "sms",
        "customer: hi",
    )
    assert "Thanks for texting Bee-chee Bike Store." in sms["dynamic_greeting"]
    assert (voice["channel"], voice["recent_messages"]) == ("voice", "")
    assert (outbound["is_outbound"], outbound["call_type"]) == ("true", "outbound_followup")
    assert outbound["channel"] == "voice"
    assert outbound["greeting_variation"] == (
        "Do you have a minute to talk about the e-bike you asked about"
    )


def test_variables_follow_the_store_time_zone_and_spoken_name() -> None:
    toronto = Organization(
        id="0c0c0000-0000-4000-8000-000000000009",
        name="BICI Toronto",
        phone_number="+14165550100",
        phone_number_normalized="14165550100",
        settings={
            "timezone": "America/Toronto",
            "spoken_name": "Bee-chee Toronto",
            "business_hours": {"wednesday": {"open": "10:00", "close": "17:00"}},
        },
    )

    variables = build_variables(toronto, None, NOW)

    assert variables["current_time"] == "5:05 PM" and variables["timezone"] == "America/Toronto"
    assert variables["store_is_open"] == "false"
    assert variables["full_datetime"] == "Wednesday, November 25, 2026 at 5:05 PM EST"
    assert "Thanks for calling Bee-chee Toronto." in variables["dynamic_greeting"]
    assert variables["organization_name"] == "BICI Toronto"


def test_variables_spoken_name_is_one_line_in_the_greeting() -> None:
    org = Organization.from_json(
        default_organization_snapshot() | {"settings": {"spoken_name": " Bee-chee\n  Bikes "}}
    )

    variables = build_variables(org, None, NOW, call_id="CA1")

    assert variables["dynamic_greeting"].startswith(
        "Hey there! Thanks for calling Bee-chee Bikes. "
    )


def test_variables_unknown_time_zone_falls_back_to_vancouver() -> None:
    org = Organization.from_json(
        default_organization_snapshot() | {"settings": {"timezone": "Mars/Olympus"}}
    )

    variables = build_variables(org, None, NOW)

    assert variables["timezone"] == "America/Vancouver" and variables["current_time"] == "2:05 PM"
    assert "Thanks for calling BICI Bike Store." in variables["dynamic_greeting"]


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=30), "just now"),
        (timedelta(minutes=1), "1 minute ago"),
        (timedelta(hours=5), "5 hours ago"),
        (timedelta(days=1, hours=3), "yesterday"),
        (timedelta(days=9), "9 days ago"),
        (timedelta(days=21), "3 weeks ago"),
        (timedelta(days=95), "3 months ago"),
        (timedelta(days=-1), "just now"),
    ],
)
def test_variables_age_text(delta: timedelta, expected: str) -> None:
    assert age_text(NOW - delta, NOW) == expected


def test_variables_lead_history_survives_the_cache_round_trip() -> None:
    item = {"kind": "call", "at": _ago(days=1), "text": "x", "classification": "hot"}
    lead = _lead(history=[item])

    again = Lead.from_json(json.loads(json.dumps(lead.to_json())))

    assert again == lead


def test_variables_every_statement_returning_a_lead_row_returns_its_history() -> None:
    # A row without the history column, written through to the cache, would replace the cached
    # lead with one whose conversation_context says "first interaction".
    from leadlookup.adapters import repository

    statements = {
        name: value
        for name, value in vars(repository).items()
        if name.isupper() and isinstance(value, str) and repository.LEAD_COLUMNS in value
    }

    assert "FIND_OR_CREATE_LEAD" in statements and "INSERT_INBOUND_MESSAGE" in statements
    missing = [name for name, sql in statements.items() if " AS history" not in sql]
    assert missing == ["LEAD_COLUMNS"]


def test_variables_customer_history_of_a_texter_who_never_called() -> None:
    lead = _lead(
        last_contact_at=NOW - timedelta(minutes=5),
        history=[{"kind": "inbound", "at": _ago(minutes=5), "text": "hi"}],
    )

    assert build_variables(STORE, lead, NOW)["customer_history"] == (
        "Returning customer: has texted us, status new, last contact 5 minutes ago."
    )


def test_variables_follow_a_store_whose_settings_changed() -> None:
    # Store facts are kept per Organization object: a reloaded store (a new object, e.g.
    # after upsert_org) must show its new hours and address, never the old object's.
    week = {day: {"open": "09:00", "close": "17:00"} for day in hours.WEEKDAYS}
    before = Organization("o-1", "BICI", "+17785550100", "17785550100",
                          {"business_hours": week, "address": "1 Main St"})  # fmt: skip
    later_hours = {**week, "monday": {"open": "10:00", "close": "16:00"}}
    after = Organization("o-1", "BICI", "+17785550100", "17785550100",
                         {"business_hours": later_hours, "address": "2 Oak St"})  # fmt: skip
    monday_noon = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)  # Monday, noon in Vancouver

    old = build_variables(before, None, monday_noon)
    new = build_variables(after, None, monday_noon)

    assert old["business_hours_today"] == "9:00 AM - 5:00 PM"
    assert (new["business_hours_today"], new["location_address"]) == (
        "10:00 AM - 4:00 PM",
        "2 Oak St",
    )
    assert new["business_hours"].startswith("Monday 10:00 AM - 4:00 PM, Tuesday to Sunday")


def test_variables_readme_table_lists_exactly_the_keys() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The agent's dynamic variables", 1)[1].split("\n## ", 1)[0]

    rows = re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)

    assert sorted(rows) == sorted(DYNAMIC_VARIABLE_KEYS)
    assert len(rows) == len(set(rows)) == 40
