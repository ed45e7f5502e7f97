"""The conversation-initiation webhook through its real handler and sample events."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from leadlookup.config import DEFAULT_ORGANIZATION_ID
from leadlookup.usecases import initiation
from tests.conftest import EVENTS
from tests.support.db import execute, scalar

FN = "conversation_initiation"
# The Node service's 33 names, the two the store's live agent reads that it never sent
# (store_greeting, location_address_formatted), and ours: lead_id, business_hours_today,
# timezone, channel, recent_messages. Every conversation, call or text, has all 40.
KEYS = {
    "customer_name", "customer_phone", "lead_status", "bike_interest", "conversation_context",
    "previous_summary", "organization_name", "organization_id", "location_address",
    "business_hours", "current_time", "current_day", "current_date", "current_datetime",
    "full_datetime", "has_customer_name", "dynamic_greeting", "time_greeting", "day_context",
    "weather_context", "customer_greeting", "greeting_opener", "greeting_variation",
    "is_outbound", "call_type", "store_is_open", "store_status", "store_hours_info",
    "customer_history", "last_topic", "qualification_status", "interaction_count",
    "last_contact", "lead_id", "business_hours_today", "timezone", "store_greeting",
    "location_address_formatted", "channel", "recent_messages",
}  # fmt: skip
# Wednesday 2026-11-25, 2:05 PM in Vancouver (UTC-8 in November).
WEDNESDAY_AFTERNOON = datetime(2026, 11, 25, 22, 5, tzinfo=UTC)
KNOWN_LEAD_ID = "5e1f0000-0000-4000-8000-0000000000a1"

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]


@pytest.fixture
def store_cleanup(database_url: str) -> Any:
    """Organizations a test inserts, deleted afterwards (their leads and messages cascade):
    their numbers are the sample stores' numbers other suites (cache admin) use too."""
    ids: list[str] = []
    yield ids.append
    for org_id in ids:
        execute(database_url, "DELETE FROM organizations WHERE id = :id", id=org_id)


def _event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / FN / f"{name}.json").read_text())


def _with_body(event: dict[str, Any], body: Any) -> dict[str, Any]:
    changed = copy.deepcopy(event)
    changed["body"] = body if isinstance(body, str) else json.dumps(body)
    return changed


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(initiation, "utc_now", lambda: WEDNESDAY_AFTERNOON)


@pytest.fixture
def known_lead(database_url: str) -> str:
    execute(
        database_url,
        "DELETE FROM call_summaries WHERE lead_id IN (SELECT id FROM leads WHERE "
        "phone_number_normalized = '16045550142' AND organization_id = :org)",
        org=DEFAULT_ORGANIZATION_ID,
    )
    execute(
        database_url,
        "INSERT INTO leads (id, organization_id, phone_number, phone_number_normalized, "
        "customer_name, status, bike_interest, last_summary, interaction_count) "
        "VALUES (:id, :org, '+16045550142', '16045550142', 'Ada', 'qualified', "
        "'{\"type\": \"gravel\"}', 'Asked about gravel bikes.', 3) "
        "ON CONFLICT (organization_id, phone_number_normalized) DO UPDATE SET "
        "customer_name = 'Ada', status = 'qualified', bike_interest = '{\"type\": \"gravel\"}', "
        "last_summary = 'Asked about gravel bikes.', interaction_count = 3, "
        "last_contact_at = NULL",
        id=KNOWN_LEAD_ID,
        org=DEFAULT_ORGANIZATION_ID,
    )
    lead_id = str(
        scalar(
            database_url,
            "SELECT id FROM leads WHERE phone_number_normalized = '16045550142' "
            "AND organization_id = :org",
            org=DEFAULT_ORGANIZATION_ID,
        )
    )
    # Other tests of the session (hostile input, SMS) text as this same sample caller; its
    # history must be exactly the seeded summary here.
    execute(database_url, "DELETE FROM messages WHERE lead_id = :id", id=lead_id)
    execute(database_url, "DELETE FROM call_summaries WHERE lead_id = :id", id=lead_id)
    return lead_id


def _variables(response: dict[str, Any]) -> dict[str, str]:
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert body["type"] == "conversation_initiation_client_data"
    variables = body["dynamic_variables"]
    assert set(variables) == KEYS
    assert all(isinstance(v, str) for v in variables.values())
    return variables


def test_initiation_known_caller_gets_their_lead_and_store_facts(
    app_env: dict[str, str], invoke: Invoke, known_lead: str
) -> None:
    variables = _variables(invoke(FN, _event("known_caller")))

    assert variables == {
        "customer_name": "Ada",
        "has_customer_name": "true",
        "customer_phone": "+16045550142",
        "customer_greeting": "Ada",
        "lead_id": known_lead,
        "lead_status": "qualified",
        "qualification_status": "qualified",
        "bike_interest": "gravel",
        "interaction_count": "3",
        "last_contact": "",
        "last_topic": "Asked about gravel bikes.",
        "previous_summary": "Asked about gravel bikes.",
        "customer_history": "Returning customer: 3 previous calls, status qualified.",
        "conversation_context": "Earlier call summary: Asked about gravel bikes.",
        "organization_id": DEFAULT_ORGANIZATION_ID,
        "organization_name": "BICI Bike Store",
        "location_address": "1497 Adanac Street, Vancouver, BC",
        "location_address_formatted": "1497 Adanac Street, Vancouver, BC",
        "business_hours": (
            "Monday to Friday 8:00 AM - 6:00 PM, Saturday and Sunday 9:00 AM - 4:30 PM"
        ),
        "business_hours_today": "8:00 AM - 6:00 PM",
        "store_is_open": "true",
        "store_status": "We're open until 6:00 PM today.",
        "store_greeting": "We're open until 6:00 PM today.",
        "store_hours_info": "Today's hours are 8:00 AM to 6:00 PM.",
        "current_time": "2:05 PM",
        "current_day": "Wednesday",
        "current_date": "November 25, 2026",
        "current_datetime": "2026-11-25T14:05:00-08:00",
        "full_datetime": "Wednesday, November 25, 2026 at 2:05 PM PST",
        "timezone": "America/Vancouver",
        "channel": "voice",
        "recent_messages": "",
        "is_outbound": "false",
        "call_type": "inbound",
        "dynamic_greeting": (
            "Hey Ada! Thanks for calling Bee-chee Bike Store. Happy Wednesday, we're halfway "
            "through the week! We're open until 6:00 PM today. What's up?"
        ),
        "time_greeting": "Good afternoon!",
        "day_context": "Happy Wednesday, we're halfway through the week!",
        "weather_context": "Great fall riding weather lately!",
        "greeting_opener": "Hey Ada!",
        "greeting_variation": "What's up",
    }


def test_initiation_outbound_call_answers_for_the_called_customer(
    app_env: dict[str, str], invoke: Invoke, known_lead: str
) -> None:
    variables = _variables(invoke(FN, _event("outbound_call")))

    assert (variables["is_outbound"], variables["call_type"]) == ("true", "outbound_followup")
    assert variables["lead_id"] == known_lead and variables["customer_phone"] == "+16045550142"
    assert variables["organization_id"] == DEFAULT_ORGANIZATION_ID
    assert variables["greeting_opener"] == "Hey Ada!"
    assert variables["greeting_variation"] == (
        "Do you have a minute to talk about the gravel bike you asked about"
    )
    assert variables["dynamic_greeting"] == (
        "Hey Ada! It's Bee-chee Bike Store calling you back. Do you have a minute to talk about "
        "the gravel bike you asked about?"
    )


def test_initiation_new_caller_creates_a_new_lead(
    app_env: dict[str, str], invoke: Invoke, database_url: str
) -> None:
    execute(database_url, "DELETE FROM leads WHERE phone_number_normalized = '16045550199'")

    variables = _variables(invoke(FN, _event("new_caller")))

    assert variables["lead_status"] == "new" and variables["interaction_count"] == "0"
    assert variables["has_customer_name"] == "false" and variables["customer_name"] == ""
    stored = scalar(
        database_url, "SELECT id::text FROM leads WHERE phone_number_normalized = '16045550199'"
    )
    assert variables["lead_id"] == stored


@pytest.mark.parametrize(
    "caller",
    ["anonymous", "+266696687", "+7378742833", "+8656696", "+2562533", "client:web-1", None],
)
def test_initiation_anonymous_caller_gets_empty_customer_fields_and_no_lead(
    caller: str | None, app_env: dict[str, str], invoke: Invoke, database_url: str
) -> None:
    body = json.loads(_event("anonymous_caller")["body"])
    if caller is None:
        del body["caller_id"]
    else:
        body["caller_id"] = caller
    leads_before = scalar(database_url, "SELECT count(*) FROM leads")

    variables = _variables(invoke(FN, _with_body(_event("anonymous_caller"), body)))

    assert (variables["lead_id"], variables["customer_phone"], variables["customer_name"]) == (
        "",
        "",
        "",
    )
    assert variables["has_customer_name"] == "false"
    assert variables["lead_status"] == "new" and variables["interaction_count"] == "0"
    assert variables["organization_name"] == "BICI Bike Store"
    assert scalar(database_url, "SELECT count(*) FROM leads") == leads_before


def test_initiation_unknown_or_missing_store_number_uses_the_default_organization(
    app_env: dict[str, str], invoke: Invoke
) -> None:
    missing = json.loads(_event("unknown_store")["body"])
    del missing["called_number"]

    unknown = _variables(invoke(FN, _event("unknown_store")))
    absent = _variables(invoke(FN, _with_body(_event("unknown_store"), missing)))

    assert unknown["organization_id"] == absent["organization_id"] == DEFAULT_ORGANIZATION_ID


def test_initiation_store_hours_follow_the_organization_time_zone(
    app_env: dict[str, str], invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Saturday 5:00 PM in Vancouver is Sunday 01:00 UTC: closed, with Saturday's hours.
    monkeypatch.setattr(initiation, "utc_now", lambda: datetime(2026, 11, 29, 1, 0, tzinfo=UTC))

    variables = _variables(invoke(FN, _event("anonymous_caller")))

    assert variables["current_day"] == "Saturday"
    assert variables["current_time"] == "5:00 PM"
    assert variables["store_is_open"] == "false"
    assert variables["business_hours_today"] == "9:00 AM - 4:30 PM"


def test_initiation_key_set_is_identical_across_every_case(
    app_env: dict[str, str], invoke: Invoke, known_lead: str
) -> None:
    names = ["known_caller", "new_caller", "anonymous_caller", "unknown_store", "outbound_call"]

    key_sets = [set(_variables(invoke(FN, _event(name)))) for name in names]

    assert all(keys == KEYS for keys in key_sets)


@pytest.mark.parametrize(
    ("event", "status", "message"),
    [
        ("bad_secret", 401, "invalid X-Webhook-Secret header"),
        ("malformed_body", 400, "body must be a JSON object"),
    ],
)
def test_initiation_rejections_are_json_messages_and_write_nothing(
    event: str,
    status: int,
    message: str,
    app_env: dict[str, str],
    invoke: Invoke,
    database_url: str,
) -> None:
    leads_before = scalar(database_url, "SELECT count(*) FROM leads")

    response = invoke(FN, _event(event))

    assert response["statusCode"] == status
    assert json.loads(response["body"]) == {"message": message}
    assert scalar(database_url, "SELECT count(*) FROM leads") == leads_before


def test_initiation_missing_secret_header_is_401(app_env: dict[str, str], invoke: Invoke) -> None:
    event = _event("known_caller")
    del event["headers"]["x-webhook-secret"]

    response = invoke(FN, event)

    assert response["statusCode"] == 401
    assert "missing" in json.loads(response["body"])["message"]


def test_initiation_unconfigured_secret_fails_closed(
    app_env: dict[str, str], invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INITIATION_WEBHOOK_SECRET")

    response = invoke(FN, _event("known_caller"))

    assert response["statusCode"] == 401


def test_initiation_custom_secret_header_name(
    app_env: dict[str, str], invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INITIATION_SECRET_HEADER", "X-ElevenLabs-Secret")
    event = _event("anonymous_caller")
    event["headers"]["x-elevenlabs-secret"] = event["headers"].pop("x-webhook-secret")

    assert invoke(FN, event)["statusCode"] == 200


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '"text"', "null", "{", ""])
def test_initiation_body_that_is_not_a_json_object_is_400(
    body: str, app_env: dict[str, str], invoke: Invoke
) -> None:
    response = invoke(FN, _with_body(_event("known_caller"), body))

    assert response["statusCode"] == 400
    assert "message" in json.loads(response["body"])


def test_initiation_oversized_body_is_413(app_env: dict[str, str], invoke: Invoke) -> None:
    body = {"caller_id": "+16045550142", "padding": "x" * 70_000}

    response = invoke(FN, _with_body(_event("known_caller"), body))

    assert response["statusCode"] == 413


@pytest.mark.parametrize("caller", [16045550142, ["+16045550142"], {"n": 1}, True])
def test_initiation_wrong_json_types_are_treated_as_anonymous(
    caller: Any, app_env: dict[str, str], invoke: Invoke
) -> None:
    body = json.loads(_event("known_caller")["body"]) | {"caller_id": caller, "called_number": 5}

    variables = _variables(invoke(FN, _with_body(_event("known_caller"), body)))

    assert variables["lead_id"] == ""


def test_initiation_degrades_to_the_anonymous_answer_when_the_database_is_down(
    app_env: dict[str, str], invoke: Invoke, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")

    variables = _variables(invoke(FN, _event("known_caller")))

    assert variables["lead_id"] == "" and variables["customer_phone"] == ""
    assert variables["organization_id"] == DEFAULT_ORGANIZATION_ID
    assert variables["organization_name"] == "BICI Bike Store"
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any("InitiationDegraded" in record for record in emf)


def test_initiation_database_down_serves_cached_callers_and_degrades_the_rest(
    app_env: dict[str, str],
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    store_cleanup: Callable[[str], None],
) -> None:
    from leadlookup.container import get_runtime, set_runtime

    store_cleanup("0c0c0000-0000-4000-8000-000000000002")
    execute(
        database_url,
        "INSERT INTO organizations (id, name, phone_number, phone_number_normalized, settings) "
        "VALUES ('0c0c0000-0000-4000-8000-000000000002', 'BICI North Shore', '+16045550100', "
        "'16045550100', '{\"timezone\": \"America/Vancouver\"}') ON CONFLICT DO NOTHING",
    )
    event = _with_body(
        _event("known_caller"), {"caller_id": "+16045550142", "called_number": "+16045550100"}
    )
    assert _variables(invoke(FN, event))["organization_name"] == "BICI North Shore"
    get_runtime().db.close()
    get_runtime().service._org_l1.clear()  # a new container: only Redis remembers the store
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    settings = get_runtime().settings
    set_runtime(None)
    monkeypatch.setenv("CACHE_KEY_PREFIX", settings.cache_key_prefix)

    cached_caller = _variables(invoke(FN, event))
    uncached = _with_body(event, {"caller_id": "+16045550188", "called_number": "+16045550100"})
    degraded = _variables(invoke(FN, uncached))

    assert cached_caller["lead_id"] != "" and cached_caller["customer_phone"] == "+16045550142"
    assert degraded["organization_name"] == "BICI North Shore"
    assert degraded["lead_id"] == "" and degraded["customer_phone"] == ""


def test_initiation_first_message_override_only_when_enabled(
    app_env: dict[str, str],
    invoke: Invoke,
    database_url: str,
    store_cleanup: Callable[[str], None],
) -> None:
    store_cleanup("0c0c0000-0000-4000-8000-000000000003")
    execute(
        database_url,
        "INSERT INTO organizations (id, name, phone_number, phone_number_normalized, settings) "
        "VALUES ('0c0c0000-0000-4000-8000-000000000003', 'BICI Kits', '+16045550101', "
        "'16045550101', '{\"first_message_override\": \"Hi, BICI Kits here!\"}') "
        "ON CONFLICT DO NOTHING",
    )
    with_override = _with_body(
        _event("known_caller"), {"caller_id": "anonymous", "called_number": "+16045550101"}
    )

    enabled = json.loads(invoke(FN, with_override)["body"])
    default = json.loads(invoke(FN, _event("anonymous_caller"))["body"])

    assert enabled["conversation_config_override"] == {
        "agent": {"first_message": "Hi, BICI Kits here!"}
    }
    assert "conversation_config_override" not in default
