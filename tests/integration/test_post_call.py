"""The ElevenLabs post-call webhook (LeadUpdateFunction) through the real handler, against real
PostgreSQL and Redis: signatures, storage and the merge rules."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pg8000.native
import pytest
import redis
from moto import mock_aws

from devkit.postcall_events import queued_bodies, sign_elevenlabs, sign_event
from devkit.proxy import TcpProxy
from leadlookup import container as runtime_module
from leadlookup.domain import call_report
from tests.support.faults import create_standard_queue, drain, queued_count, sqs_event
from tests.support.lead_update import (
    AGENT_ORG_CALLER,
    AGENT_ORG_ID,
    AGENT_ORG_LEAD_ID,
    AGENT_ORG_PHONE,
    BATCH,
    BATCH_CONVERSATIONS,
    FUNCTION,
    LEAD_ID,
    LEAD_PHONE,
    ORG_ID,
    POST_CALL_FUNCTION,
    SAMPLE_CONVERSATIONS,
    SECRET,
    SIGNED,
    SIGNED_AT,
    STRANGER,
    Invoke,
    body_of,
    count,
    fetch_lead,
    load,
    summaries,
)


def post_call(
    change: Callable[[dict[str, Any]], None] | None = None,
    *,
    conversation_id: str | None = None,
    at: int = SIGNED_AT,
    secret: str = SECRET,
    sample: dict[str, Any] = SIGNED,
) -> tuple[dict[str, Any], str]:
    """The signed sample with a fresh conversation id, changed by ``change``, signed at ``at``."""
    body = json.loads(sample["body"])
    conversation_id = conversation_id or f"conv_test_{uuid.uuid4().hex}"
    body["data"]["conversation_id"] = conversation_id
    if change is not None:
        change(body)
    event = copy.deepcopy(sample)
    event["body"] = json.dumps(body)
    return sign_event(event, secret, at), conversation_id


def results(body: dict[str, Any]) -> dict[str, Any]:
    return body["data"]["analysis"]["data_collection_results"]


def set_result(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        results(body)[name]["value"] = value

    return change


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = body
        for name in parents:
            node = node[name]
        node[last] = value

    return change


def without_lead_variable(body: dict[str, Any]) -> None:
    del body["data"]["conversation_initiation_client_data"]["dynamic_variables"]["lead_id"]


# -- the sample events -------------------------------------------------------------------


def test_post_call_signed_event_merges_into_lead(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    response = invoke(POST_CALL_FUNCTION, load("post_call_signed.json"))

    assert response["statusCode"] == 200
    assert body_of(response) == {"status": "ok"}
    row = fetch_lead(db)
    assert row is not None
    assert row["customer_name"] == "Ada"
    assert row["status"] == "qualified"
    assert row["bike_interest"] == {"type": "gravel"}
    assert row["qualification_data"] == {
        "budget_range": "$2,000-$3,000",
        "timeline": "within a month",
    }
    assert row["last_summary"].startswith("Ada called about gravel bikes")
    assert (row["interaction_count"], row["version"]) == (1, 2)
    [summary] = summaries(db, SAMPLE_CONVERSATIONS[0])
    assert (summary["lead_id"], summary["organization_id"]) == (LEAD_ID, ORG_ID)
    assert summary["classification"] == "qualified"
    assert summary["payload"]["data"]["conversation_id"] == SAMPLE_CONVERSATIONS[0]


def test_post_call_expired_event_is_rejected(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    # The clock stands where the sample pair was signed: the expired one is 2 hours older.
    response = invoke(POST_CALL_FUNCTION, load("post_call_expired.json"))

    assert response["statusCode"] == 401
    assert "expired" in body_of(response)["message"]
    assert summaries(db, SAMPLE_CONVERSATIONS[1]) == []
    row = fetch_lead(db)
    assert row is not None
    assert (row["interaction_count"], row["version"]) == (0, 1)


# -- post-call: signatures ---------------------------------------------------------------


def _forged(event: dict[str, Any]) -> None:
    event["headers"]["elevenlabs-signature"] = sign_elevenlabs(event["body"], "wrong", SIGNED_AT)


def _truncated(event: dict[str, Any]) -> None:
    event["headers"]["elevenlabs-signature"] = event["headers"]["elevenlabs-signature"][:-8]


def _tampered(event: dict[str, Any]) -> None:
    event["body"] = event["body"].replace('"qualified"', '"customer"')


def _missing(event: dict[str, Any]) -> None:
    del event["headers"]["elevenlabs-signature"]


def _malformed(event: dict[str, Any]) -> None:
    event["headers"]["elevenlabs-signature"] = "sha256=abc"


def _expired(event: dict[str, Any]) -> None:
    at = SIGNED_AT - 31 * 60
    event["headers"]["elevenlabs-signature"] = sign_elevenlabs(event["body"], SECRET, at)


def _future(event: dict[str, Any]) -> None:
    at = SIGNED_AT + 6 * 60
    event["headers"]["elevenlabs-signature"] = sign_elevenlabs(event["body"], SECRET, at)


@pytest.mark.parametrize(
    "spoil", [_forged, _truncated, _tampered, _missing, _malformed, _expired, _future]
)
def test_post_call_bad_signature_is_401_and_writes_nothing(
    spoil: Callable[[dict[str, Any]], None],
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    event, conversation_id = post_call()
    spoil(event)

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 401
    assert body_of(response)["message"]
    assert summaries(db, conversation_id) == []
    row = fetch_lead(db)
    assert row is not None
    assert (row["customer_name"], row["interaction_count"], row["version"]) == (None, 0, 1)


def test_post_call_inside_window_edges_is_accepted(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    old, old_id = post_call(at=SIGNED_AT - 30 * 60)
    early, early_id = post_call(at=SIGNED_AT + 5 * 60)

    statuses = [
        invoke(POST_CALL_FUNCTION, old)["statusCode"],
        invoke(POST_CALL_FUNCTION, early)["statusCode"],
    ]

    assert statuses == [200, 200]
    assert len(summaries(db, old_id)) == len(summaries(db, early_id)) == 1


def test_post_call_without_secret_fails_closed(
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ELEVENLABS_WEBHOOK_SECRET")
    event, conversation_id = post_call()

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 401
    assert summaries(db, conversation_id) == []


def test_post_call_over_body_limit_is_413(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    def pad(body: dict[str, Any]) -> None:
        body["data"]["padding"] = "x" * (4 * 1024 * 1024)

    event, conversation_id = post_call(pad)

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 413
    assert summaries(db, conversation_id) == []


# -- post-call: storage and merge rules --------------------------------------------------


def test_post_call_redelivery_records_once(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, conversation_id = post_call()

    responses = [
        invoke(POST_CALL_FUNCTION, event),
        invoke(POST_CALL_FUNCTION, copy.deepcopy(event)),
    ]

    assert [r["statusCode"] for r in responses] == [200, 200]
    assert [body_of(r) for r in responses] == [{"status": "ok"}, {"status": "ok"}]
    assert len(summaries(db, conversation_id)) == 1
    row = fetch_lead(db)
    assert row is not None
    assert (row["interaction_count"], row["version"]) == (1, 2)


@pytest.mark.parametrize(
    ("before", "classification", "after"),
    [
        ("new", "qualified", "qualified"),
        ("contacted", "Hot", "hot"),
        ("hot", "qualified", "hot"),
        ("customer", "new", "customer"),
        ("closed", "customer", "closed"),
        ("closed", "hot", "closed"),
        # The sample call reached the caller: a status the call cannot give is 'contacted'.
        ("new", "closed", "contacted"),
        ("new", "new", "contacted"),
        ("qualified", "vip", "qualified"),
    ],
)
def test_post_call_status_only_upgrades(
    before: str,
    classification: str,
    after: str,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    db.run("UPDATE leads SET status = :s WHERE id = :id", s=before, id=LEAD_ID)
    event, _ = post_call(set_result("call_classification", classification))

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 200
    row = fetch_lead(db)
    assert row is not None
    assert row["status"] == after
    assert row["interaction_count"] == 1


@pytest.mark.parametrize("value", ["", "   ", None, "Unknown", "N/A", "not provided", 7, ["Bo"]])
def test_post_call_keeps_name_over_placeholders(
    value: Any,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    db.run("UPDATE leads SET customer_name = 'Ada' WHERE id = :id", id=LEAD_ID)
    event, _ = post_call(set_result("customer_name", value))

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 200
    row = fetch_lead(db)
    assert row is not None
    assert (row["customer_name"], row["interaction_count"]) == ("Ada", 1)


@pytest.mark.parametrize("value", ["Sofia", "sofia.", " SOFIA "])
def test_post_call_ignores_agents_own_name(
    value: str,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    def change(body: dict[str, Any]) -> None:
        without_lead_variable(body)
        body["data"]["metadata"]["phone_call"]["agent_number"] = AGENT_ORG_PHONE
        body["data"]["metadata"]["phone_call"]["external_number"] = AGENT_ORG_CALLER
        results(body)["customer_name"]["value"] = value

    event, conversation_id = post_call(change)

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 200
    row = fetch_lead(db, AGENT_ORG_LEAD_ID)
    assert row is not None
    assert (row["customer_name"], row["interaction_count"]) == ("Grace", 1)
    [summary] = summaries(db, conversation_id)
    assert (summary["lead_id"], summary["organization_id"]) == (AGENT_ORG_LEAD_ID, AGENT_ORG_ID)


def test_post_call_sets_a_real_name(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, _ = post_call(set_result("customer_name", "  Ada Lovelace "))

    invoke(POST_CALL_FUNCTION, event)

    row = fetch_lead(db)
    assert row is not None
    assert row["customer_name"] == "Ada Lovelace"


def test_post_call_empty_values_do_not_clobber(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    db.run(
        'UPDATE leads SET bike_interest = \'{"type": "road", "size": "56"}\', '
        'qualification_data = \'{"budget_range": "$1,500", "timeline": "spring"}\', '
        "last_summary = 'earlier call' WHERE id = :id",
        id=LEAD_ID,
    )

    def change(body: dict[str, Any]) -> None:
        for name in ("bike_type", "budget_range", "purchase_timeline"):
            results(body)[name]["value"] = ""
        body["data"]["analysis"]["transcript_summary"] = ""

    event, _ = post_call(change)

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 200
    row = fetch_lead(db)
    assert row is not None
    assert row["bike_interest"] == {"type": "road", "size": "56"}
    assert row["qualification_data"] == {"budget_range": "$1,500", "timeline": "spring"}
    assert row["last_summary"] == "earlier call"
    assert row["interaction_count"] == 1


def test_post_call_merges_without_dropping_keys(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    db.run(
        'UPDATE leads SET bike_interest = \'{"type": "road", "size": "56"}\' WHERE id = :id',
        id=LEAD_ID,
    )
    event, _ = post_call(set_result("budget_range", 2500))

    invoke(POST_CALL_FUNCTION, event)

    row = fetch_lead(db)
    assert row is not None
    assert row["bike_interest"] == {"type": "gravel", "size": "56"}
    assert row["qualification_data"] == {"budget_range": 2500, "timeline": "within a month"}


def test_post_call_lead_variable_wins_over_phone(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, conversation_id = post_call(_set("data.metadata.phone_call.external_number", STRANGER))

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 200
    [summary] = summaries(db, conversation_id)
    assert summary["lead_id"] == LEAD_ID
    assert (
        count(db, "SELECT count(*) FROM leads WHERE phone_number_normalized = '12365550177'") == 0
    )


def test_post_call_finds_lead_by_phone_without_variable(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, conversation_id = post_call(without_lead_variable)

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 200
    [summary] = summaries(db, conversation_id)
    assert summary["lead_id"] == LEAD_ID
    row = fetch_lead(db)
    assert row is not None
    assert (row["customer_name"], row["interaction_count"]) == ("Ada", 1)


def test_post_call_unknown_lead_variable_falls_back_to_phone(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    def change(body: dict[str, Any]) -> None:
        variables = body["data"]["conversation_initiation_client_data"]["dynamic_variables"]
        variables["lead_id"] = str(uuid.uuid4())

    event, conversation_id = post_call(change)

    invoke(POST_CALL_FUNCTION, event)

    [summary] = summaries(db, conversation_id)
    assert summary["lead_id"] == LEAD_ID


@pytest.mark.parametrize("lead_variable", [None, "", "not-a-uuid"])
def test_post_call_unresolved_stores_summary_without_lead(
    lead_variable: str | None,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    def change(body: dict[str, Any]) -> None:
        variables = body["data"]["conversation_initiation_client_data"]["dynamic_variables"]
        variables["lead_id"] = lead_variable
        body["data"]["metadata"]["phone_call"]["external_number"] = STRANGER

    event, conversation_id = post_call(change)
    leads_before = count(db, "SELECT count(*) FROM leads")

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 200
    [summary] = summaries(db, conversation_id)
    assert (summary["lead_id"], summary["organization_id"]) == (None, ORG_ID)
    assert summary["summary"].startswith("Ada called about gravel bikes")
    assert count(db, "SELECT count(*) FROM leads") == leads_before
    row = fetch_lead(db)
    assert row is not None
    assert row["interaction_count"] == 0


def test_post_call_web_call_without_phone_stores_summary(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    def change(body: dict[str, Any]) -> None:
        without_lead_variable(body)
        del body["data"]["metadata"]["phone_call"]

    event, conversation_id = post_call(change)

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 200
    [summary] = summaries(db, conversation_id)
    assert (summary["lead_id"], summary["organization_id"]) == (None, ORG_ID)


def test_post_call_refreshes_cached_lookup(
    lead: str, invoke: Invoke, cache: redis.Redis, frozen: Callable[[int], None]
) -> None:
    service = runtime_module.get_runtime().service
    service.find_or_create_lead(LEAD_PHONE, ORG_ID)
    event, _ = post_call()

    invoke(POST_CALL_FUNCTION, event)

    lead_now = service.find_or_create_lead(LEAD_PHONE, ORG_ID)
    assert (lead_now.customer_name, lead_now.status, lead_now.interaction_count) == (
        "Ada",
        "qualified",
        1,
    )


@pytest.mark.parametrize("kind", ["post_call_audio", "call_initiation_failure", 5, None])
def test_post_call_other_types_are_ignored(
    kind: Any,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    def change(body: dict[str, Any]) -> None:
        body["type"] = kind

    event, conversation_id = post_call(change)

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 200
    assert body_of(response) == {"status": "ignored"}
    assert summaries(db, conversation_id) == []


def test_post_call_missing_conversation_id_is_400(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, _ = post_call(lambda body: body["data"].pop("conversation_id"))

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 400
    assert "data.conversation_id" in body_of(response)["message"]
    row = fetch_lead(db)
    assert row is not None
    assert row["interaction_count"] == 0


@pytest.mark.parametrize(
    ("change", "status", "named"),
    [
        (_set("data", []), 400, "data"),
        (_set("data", "x"), 400, "data"),
        (_set("data.conversation_id", 42), 400, "data.conversation_id"),
        (_set("data.conversation_id", ""), 400, "data.conversation_id"),
        (_set("data.conversation_id", "c" * 300), 400, "data.conversation_id"),
        (_set("data.analysis", "x"), 200, None),
        (_set("data.analysis.data_collection_results", []), 200, None),
        (_set("data.analysis.data_collection_results.customer_name", "Ada"), 200, None),
        (_set("data.analysis.data_collection_results.customer_name.value", {"a": 1}), 200, None),
        (_set("data.analysis.data_collection_results.bike_type.value", ["gravel"]), 200, None),
        (_set("data.analysis.data_collection_results.budget_range.value", True), 200, None),
        (_set("data.analysis.data_collection_results.call_classification.value", 3), 200, None),
        (_set("data.analysis.transcript_summary", {"text": "x"}), 200, None),
        (_set("data.conversation_initiation_client_data", []), 200, None),
        (_set("data.conversation_initiation_client_data.dynamic_variables", "x"), 200, None),
        (_set("data.conversation_initiation_client_data.dynamic_variables.lead_id", 7), 200, None),
        (_set("data.metadata", None), 200, None),
        (_set("data.metadata.phone_call", []), 200, None),
        (_set("data.metadata.phone_call.external_number", 12365550199), 200, None),
        (_set("data.metadata.phone_call.agent_number", {"n": 1}), 200, None),
        (_set("data.transcript", "x" * 10), 200, None),
        (_set("data.analysis.transcript_summary", "a\u0000b"), 200, None),
        (_set("data.analysis.data_collection_results.customer_name.value", "Ada\ud800"), 200, None),
        (
            _set(
                "data.transcript",
                [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
            ),
            400,
            "nested",
        ),
    ],
)
def test_post_call_odd_payloads_never_500(
    change: Callable[[dict[str, Any]], None],
    status: int,
    named: str | None,
    lead: str,
    invoke: Invoke,
    frozen: Callable[[int], None],
) -> None:
    event, _ = post_call(change)

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == status
    if named is not None:
        assert named in body_of(response)["message"]


@pytest.mark.parametrize(
    "raw",
    ["[1, 2]", '"text"', "not json", '{"type": "post_call_transcription", "x": NaN}', "{" * 5000],
)
def test_post_call_non_object_bodies_are_400(
    raw: str, lead: str, invoke: Invoke, frozen: Callable[[int], None]
) -> None:
    event = copy.deepcopy(SIGNED)
    event["body"] = raw
    event["headers"]["elevenlabs-signature"] = sign_elevenlabs(raw, SECRET, SIGNED_AT)

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 400
    assert "body" in body_of(response)["message"]


def test_post_call_strips_nul_from_stored_text(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, conversation_id = post_call(
        _set("data.analysis.transcript_summary", "Wants\u0000 a bike")
    )

    invoke(POST_CALL_FUNCTION, event)

    [summary] = summaries(db, conversation_id)
    assert summary["summary"] == "Wants a bike"


def test_post_call_base64_body_is_verified_decoded(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, conversation_id = post_call()
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 200
    assert len(summaries(db, conversation_id)) == 1


# -- the store's live agent ----------------------------------------------------------------

LIVE = load("post_call_live_agent.json")
LIVE_CONVERSATION = SAMPLE_CONVERSATIONS[2]
CALLBACK = "arrange manager callback for escalation"


def live_call(
    change: Callable[[dict[str, Any]], None] | None = None, *, conversation_id: str | None = None
) -> tuple[dict[str, Any], str]:
    """The live agent's sample report with a fresh conversation id, changed by ``change``."""
    return post_call(change, conversation_id=conversation_id, sample=LIVE)


def _variables(body: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = body["data"]["conversation_initiation_client_data"][
        "dynamic_variables"
    ]
    return variables


def _text_conversation(how: str) -> Callable[[dict[str, Any]], None]:
    """A report of a text conversation: as our SMS replies open them, or with no phone line."""

    def change(body: dict[str, Any]) -> None:
        if how in ("no phone_call", "sms reply"):
            del body["data"]["metadata"]["phone_call"]
        if how in ("channel sms", "sms reply"):
            _variables(body)["channel"] = "sms"
        if how in ("call_type sms", "sms reply"):
            _variables(body)["call_type"] = "SMS"
        body["data"]["analysis"]["transcript_summary"] = "Texted to ask about Sunday hours."
        results(body)["customer_name"]["value"] = "Bob"
        results(body)["call_classification"]["value"] = "hot"

    return change


def _lead_state(db: pg8000.native.Connection) -> dict[str, Any]:
    rows = db.run(
        "SELECT status, last_summary, interaction_count, version, customer_name, "
        "qualification_data, callback_requested_at, last_automation_key, last_contact_at "
        "FROM leads WHERE id = :id",
        id=LEAD_ID,
    )
    return dict(zip([c["name"] for c in db.columns], rows[0], strict=True))


def _notes(db: pg8000.native.Connection) -> list[tuple[str, str, str]]:
    """The lead's 'system' history rows: (external_id, sender_kind, body)."""
    rows = db.run(
        "SELECT external_id, sender_kind, body FROM messages "
        "WHERE lead_id = :id AND direction = 'system' ORDER BY created_at, id",
        id=LEAD_ID,
    )
    return [(r[0], r[1], r[2]) for r in rows]


def _channel(db: pg8000.native.Connection, conversation_id: str) -> str:
    return str(
        db.run("SELECT channel FROM call_summaries WHERE conversation_id = :c", c=conversation_id)[
            0
        ][0]
    )


def _call_lines(lead_id: str = LEAD_ID) -> list[str]:
    """The calls in the lead's history as the next call's conversation_context sees them."""
    lead_now = runtime_module.get_runtime().service.get_lead(lead_id)
    return [item["text"] for item in lead_now.history if item["kind"] == "call"]


def test_post_call_live_agent_report_moves_a_new_lead_to_contacted_and_keeps_every_field(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    response = invoke(POST_CALL_FUNCTION, LIVE)

    assert response["statusCode"] == 200
    row = fetch_lead(db)
    assert row is not None
    assert (row["status"], row["interaction_count"], row["version"]) == ("contacted", 1, 2)
    assert row["customer_name"] == "Ada"
    assert row["bike_interest"] == {"type": "hybrid"}
    assert row["qualification_data"] == {
        "budget_range": "1000_2000",
        "timeline": "this_month",
        "riding_experience": "returning_rider",
        "customer_triggers": (
            "asked about store hours, asked for directions/location, interested in test ride"
        ),
        "follow_up_needed": "send directions with map links",
    }
    [summary] = summaries(db, LIVE_CONVERSATION)
    assert (summary["lead_id"], summary["classification"]) == (LEAD_ID, "sales")
    assert _channel(db, LIVE_CONVERSATION) == "phone"
    assert _call_lines() == [row["last_summary"]]
    assert _lead_state(db)["callback_requested_at"] is None


@pytest.mark.parametrize(
    ("before", "classification"),
    [
        ("contacted", "service"),
        ("qualified", "sales"),
        ("hot", "support"),
        ("customer", "general"),
        ("closed", "sales"),
    ],
)
def test_post_call_live_agent_report_never_lowers_or_reopens_a_lead(
    before: str,
    classification: str,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    db.run("UPDATE leads SET status = :s WHERE id = :id", s=before, id=LEAD_ID)
    event, conversation_id = live_call(set_result("call_classification", classification))

    invoke(POST_CALL_FUNCTION, event)

    row = fetch_lead(db)
    assert row is not None
    assert (row["status"], row["interaction_count"]) == (before, 1)
    assert summaries(db, conversation_id)[0]["classification"] == classification


def _only_agent_spoke(body: dict[str, Any]) -> None:
    body["data"]["transcript"] = body["data"]["transcript"][:1]


def _caller_said_nothing(body: dict[str, Any]) -> None:
    for turn in body["data"]["transcript"]:
        if turn["role"] == "user":
            turn["message"] = " ... "


@pytest.mark.parametrize(
    "change", [_only_agent_spoke, _caller_said_nothing, _set("data.transcript", None)]
)
def test_post_call_call_that_reached_nobody_leaves_a_new_lead_new(
    change: Callable[[dict[str, Any]], None],
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    event, _ = live_call(change)

    invoke(POST_CALL_FUNCTION, event)

    row = fetch_lead(db)
    assert row is not None
    assert (row["status"], row["interaction_count"]) == ("new", 1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("follow_up_needed", CALLBACK),
        ("follow_up_needed", "Arrange a manager CALLBACK"),
        ("customer_triggers", "has a complaint, wants the manager to call back"),
    ],
)
def test_post_call_manager_callback_flags_the_lead_once(
    field: str,
    value: str,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    cache: redis.Redis,
    frozen: Callable[[int], None],
) -> None:
    service = runtime_module.get_runtime().service
    service.find_or_create_lead(LEAD_PHONE, ORG_ID)  # cached before the report
    event, conversation_id = live_call(set_result(field, value))

    responses = [
        invoke(POST_CALL_FUNCTION, event),
        invoke(POST_CALL_FUNCTION, copy.deepcopy(event)),
    ]
    flagged = _lead_state(db)
    later, later_id = live_call(set_result("follow_up_needed", CALLBACK))
    invoke(POST_CALL_FUNCTION, later)

    assert [r["statusCode"] for r in responses] == [200, 200]
    assert flagged["callback_requested_at"] is not None
    assert flagged["interaction_count"] == 1
    note = "Customer asked for a manager callback"
    assert _notes(db) == [
        (f"callback:{conversation_id}", "system", note),
        (f"callback:{later_id}", "system", note),
    ]
    # Still flagged since the first request: staff clear it (not yet possible).
    assert _lead_state(db)["callback_requested_at"] == flagged["callback_requested_at"]
    cached = service.find_or_create_lead(LEAD_PHONE, ORG_ID)
    assert cached.callback_requested_at == flagged["callback_requested_at"]
    body = body_of(invoke(FUNCTION, load("get.json")))
    assert body["callback_requested_at"] == flagged["callback_requested_at"].isoformat()


@pytest.mark.parametrize(
    ("triggers", "follow_up"),
    [
        ("has a complaint", "send thank you message"),
        ("needs general help", "no follow-up needed"),
        ("asked about store hours", "no manager callback needed"),
    ],
)
def test_post_call_complaint_without_a_callback_request_flags_nothing(
    triggers: str,
    follow_up: str,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    def change(body: dict[str, Any]) -> None:
        results(body)["customer_triggers"]["value"] = triggers
        results(body)["follow_up_needed"]["value"] = follow_up

    event, _ = live_call(change)

    invoke(POST_CALL_FUNCTION, event)

    assert _lead_state(db)["callback_requested_at"] is None
    assert _notes(db) == []


@pytest.mark.parametrize(
    ("how", "channel"),
    [
        ("no phone_call", "web"),
        ("channel sms", "sms"),
        ("call_type sms", "sms"),
        ("sms reply", "sms"),
    ],
)
def test_post_call_text_conversation_is_stored_but_is_not_a_call(
    how: str,
    channel: str,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    invoke(POST_CALL_FUNCTION, LIVE)  # a real call first
    after_call = _lead_state(db)
    event, conversation_id = live_call(_text_conversation(how))

    responses = [
        invoke(POST_CALL_FUNCTION, event),
        invoke(POST_CALL_FUNCTION, copy.deepcopy(event)),
    ]

    assert [r["statusCode"] for r in responses] == [200, 200]
    assert _lead_state(db) == after_call  # no count, summary, status, name, contact or text
    [summary] = summaries(db, conversation_id)
    assert (summary["lead_id"], summary["summary"]) == (
        LEAD_ID,
        "Texted to ask about Sunday hours.",
    )
    assert _channel(db, conversation_id) == channel
    assert _call_lines() == [after_call["last_summary"]]


def test_post_call_text_conversation_asking_for_a_manager_flags_only_that(
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    cache: redis.Redis,
    frozen: Callable[[int], None],
) -> None:
    service = runtime_module.get_runtime().service
    service.find_or_create_lead(LEAD_PHONE, ORG_ID)  # cached before the report
    before = _lead_state(db)

    def change(body: dict[str, Any]) -> None:
        _text_conversation("sms reply")(body)
        results(body)["follow_up_needed"]["value"] = CALLBACK

    event, conversation_id = live_call(change)

    invoke(POST_CALL_FUNCTION, event)
    invoke(POST_CALL_FUNCTION, copy.deepcopy(event))

    after = _lead_state(db)
    assert after["callback_requested_at"] is not None
    assert _notes(db) == [
        (f"callback:{conversation_id}", "system", "Customer asked for a manager callback")
    ]
    unchanged = ("status", "last_summary", "interaction_count", "customer_name", "last_contact_at")
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert after["version"] == before["version"] + 1
    cached = service.find_or_create_lead(LEAD_PHONE, ORG_ID)
    assert (cached.callback_requested_at, cached.interaction_count) == (
        after["callback_requested_at"],
        0,
    )
    assert _call_lines() == []


@pytest.mark.parametrize("how", ["phone call", "sms reply"])
def test_post_call_storing_a_report_is_one_round_trip(
    how: str, lead: str, counted: Any, pg_proxy: TcpProxy, db: pg8000.native.Connection
) -> None:
    def change(body: dict[str, Any]) -> None:
        if how == "sms reply":
            _text_conversation(how)(body)
        results(body)["follow_up_needed"]["value"] = CALLBACK

    event, conversation_id = live_call(change)
    call = call_report.parse_post_call(json.loads(event["body"]))
    assert call is not None
    stored_lead = counted.service.get_lead(LEAD_ID)
    pg_proxy.reset_counters()

    inserted = counted.service.record_call_summary(call, ORG_ID, stored_lead)

    assert inserted
    assert pg_proxy.round_trips == 1  # the summary, the lead and the history note together
    assert len(summaries(db, conversation_id)) == 1
    assert len(_notes(db)) == 1


# -- storage first: the post-call queue --------------------------------------------------

PROCESSOR = "post_call_processor"


class Queue:
    """A moto standard queue that POST_CALL_QUEUE_URL points at."""

    def __init__(self, client: Any, url: str, arn: str) -> None:
        self.client, self.url, self.arn = client, url, arn

    def receive(self) -> list[dict[str, Any]]:
        return self.client.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])


@pytest.fixture
def queue(lead: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Queue]:
    with mock_aws():
        client, url, arn = create_standard_queue()
        monkeypatch.setenv("POST_CALL_QUEUE_URL", url)
        runtime_module.set_runtime(None)
        yield Queue(client, url, arn)
    runtime_module.set_runtime(None)


def test_post_call_webhook_queues_the_call_and_stores_nothing_itself(
    queue: Queue, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    response = invoke(POST_CALL_FUNCTION, SIGNED)

    assert response["statusCode"] == 200
    assert body_of(response) == {"status": "ok"}
    assert summaries(db, SAMPLE_CONVERSATIONS[0]) == []
    [message] = queue.receive()
    assert message["Body"] == queued_bodies(SIGNED)[0]
    assert message["Body"] == BATCH["Records"][0]["body"]  # the sample batch is current


def test_post_call_processor_stores_the_queued_call_once_under_redelivery(
    queue: Queue, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    invoke(POST_CALL_FUNCTION, SIGNED)
    [message] = queue.receive()
    event = sqs_event([message], queue.arn)

    results = [invoke(PROCESSOR, event), invoke(PROCESSOR, copy.deepcopy(event))]

    assert results == [{"batchItemFailures": []}] * 2
    [summary] = summaries(db, SAMPLE_CONVERSATIONS[0])
    assert summary["lead_id"] == LEAD_ID
    assert summary["payload"]["data"]["conversation_id"] == SAMPLE_CONVERSATIONS[0]
    row = fetch_lead(db)
    assert row is not None
    assert (row["customer_name"], row["status"]) == ("Ada", "qualified")
    assert (row["interaction_count"], row["version"]) == (1, 2)


def test_post_call_processor_sample_batch_stores_every_call_once(
    lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    results = [invoke(PROCESSOR, copy.deepcopy(BATCH)) for _ in range(2)]

    assert results == [{"batchItemFailures": []}] * 2
    assert [len(summaries(db, c)) for c in BATCH_CONVERSATIONS] == [1, 1]
    # The second call has no lead_id variable: its lead is found by the caller's number.
    assert [summaries(db, c)[0]["lead_id"] for c in BATCH_CONVERSATIONS] == [LEAD_ID, LEAD_ID]
    row = fetch_lead(db)
    assert row is not None
    assert (row["interaction_count"], row["version"]) == (2, 3)


def test_post_call_processor_fails_exactly_the_malformed_records(
    lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    batch = copy.deepcopy(BATCH)
    good, bad = batch["Records"]
    bad["body"] = json.dumps({"conversation_id": 7})
    garbage = {**copy.deepcopy(bad), "messageId": "not-json", "body": "{"}
    batch["Records"].append(garbage)

    result = invoke(PROCESSOR, batch)

    assert sorted(i["itemIdentifier"] for i in result["batchItemFailures"]) == sorted(
        [bad["messageId"], "not-json"]
    )
    assert len(summaries(db, json.loads(good["body"])["conversation_id"])) == 1


def test_post_call_long_transcript_is_queued_within_the_limit_and_stored(
    queue: Queue, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    def long_call(body: dict[str, Any]) -> None:
        turn = body["data"]["transcript"][1]
        body["data"]["transcript"] = [
            {**turn, "message": f"turn {n} " + "about the gravel bike " * 40} for n in range(3000)
        ]

    event, conversation_id = post_call(long_call)
    assert len(event["body"]) > 3 * 1024 * 1024

    response = invoke(POST_CALL_FUNCTION, event)
    batches = drain(queue.client, queue.url, queue.arn, invoke, PROCESSOR)

    assert response["statusCode"] == 200
    assert batches == [{"records": 1, "failed": 0}]
    [summary] = summaries(db, conversation_id)
    trimmed = summary["payload"]["trimmed"]
    assert trimmed["transcript_turns"] == 3000
    kept = summary["payload"]["data"]["transcript"]
    assert kept[0]["message"].startswith("turn 0 ") and kept[-1]["message"].startswith("turn 2999 ")
    assert summary["summary"].startswith("Ada called about gravel bikes")


@pytest.mark.parametrize("kind", ["post_call_audio", "call_initiation_failure"])
@pytest.mark.parametrize("megabytes", [0.001, 5, 9.5])
def test_post_call_audio_and_initiation_failures_are_200_and_dropped_at_any_size(
    kind: str,
    megabytes: float,
    queue: Queue,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    audio = "UklGR" * int(megabytes * 1024 * 1024 / 5)
    body = {
        "type": kind,
        "event_timestamp": SIGNED_AT,
        "data": {"agent_id": "agent_1", "conversation_id": f"conv_{kind}", "full_audio": audio},
    }
    event = copy.deepcopy(SIGNED)
    event["body"] = json.dumps(body)
    event = sign_event(event, SECRET, SIGNED_AT)

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 200
    assert body_of(response) == {"status": "ignored"}
    assert queued_count(queue.client, queue.url) == 0
    assert summaries(db, f"conv_{kind}") == []


def test_post_call_big_audio_with_a_forged_signature_is_still_401(
    queue: Queue, invoke: Invoke, frozen: Callable[[int], None]
) -> None:
    body = {"type": "post_call_audio", "data": {"full_audio": "A" * (5 * 1024 * 1024)}}
    event = copy.deepcopy(SIGNED)
    event["body"] = json.dumps(body)
    event = sign_event(event, "not-the-secret", SIGNED_AT)

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 401
    assert queued_count(queue.client, queue.url) == 0


def test_post_call_queue_unreachable_is_503_and_writes_nothing(
    lead: str,
    aws_env: None,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POST_CALL_QUEUE_URL", "http://127.0.0.1:1/123456789012/post-call")
    runtime_module.set_runtime(None)
    event, conversation_id = post_call()

    response = invoke(POST_CALL_FUNCTION, event)

    assert response["statusCode"] == 503
    assert body_of(response) == {"message": "queue is unreachable"}
    assert summaries(db, conversation_id) == []
    row = fetch_lead(db)
    assert row is not None and row["interaction_count"] == 0
