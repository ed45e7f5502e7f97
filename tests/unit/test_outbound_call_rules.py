"""Outbound calls without I/O: keys, refusals, jobs and outcomes, ElevenLabs' answers read."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from leadlookup.adapters.elevenlabs import CallError, ElevenLabsDialer, PlacedCall, _placed
from leadlookup.domain import calls
from leadlookup.domain.calls import CallJob, CallOutcome
from leadlookup.domain.models import Lead, Organization
from leadlookup.errors import InvalidInput

CALL_ID = "3f0c5d1e-8a1b-4c2d-9e3f-4a5b6c7d8e9f"


def _org(**settings: Any) -> Organization:
    return Organization("org-1", "Store", "+17786528784", "17786528784", settings)


def _lead(digits: str = "16045550142", **fields: Any) -> Lead:
    return Lead("lead-1", "org-1", f"+{digits}", digits, **fields)


def test_call_key_is_the_clients_or_a_new_one() -> None:
    assert calls.call_key(" press-1 ") == "press-1"
    drawn = calls.call_key(None)
    assert str(uuid.UUID(drawn)) == drawn
    assert calls.call_key(None) != drawn


@pytest.mark.parametrize("raw", ["", "   ", "k" * 101])
def test_call_key_refuses_an_empty_or_long_header(raw: str) -> None:
    with pytest.raises(InvalidInput, match="'Idempotency-Key' must be 1 to 100 characters"):
        calls.call_key(raw)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("phnum_0123", "phnum_0123"),
        ("  phnum_0123 ", "phnum_0123"),
        ("", None),
        (None, None),
        (42, None),
        ("phnum 0123", None),
        ("x" * 129, None),
    ],
)
def test_agent_phone_number_id_reads_the_store_setting(value: Any, expected: str | None) -> None:
    settings = {} if value is None else {calls.AGENT_PHONE_SETTING: value}
    assert calls.agent_phone_number_id(_org(**settings)) == expected


def test_refusal_names_why_no_call_may_be_placed() -> None:
    ready = _org(agent_phone_number_id="phnum_1")

    assert calls.refusal(_lead(), ready) is None
    assert "opted out" in str(calls.refusal(_lead(opted_out_at=datetime.now(UTC)), ready))
    assert "no callable phone number" in str(calls.refusal(_lead("18005550142"), ready))
    assert "'agent_phone_number_id'" in str(calls.refusal(_lead(), _org()))


def test_statuses_rank_so_that_reports_complete_expired_calls_and_finals_stay() -> None:
    rank = calls.CALL_STATUS_RANK
    assert rank["queued"] < rank["dialing"] < rank["expired"] < rank["completed"]
    assert rank["failed"] == rank["completed"]
    assert set(rank) == {*calls.ACTIVE_STATUSES, "expired", "failed", "completed"}
    assert calls.rank(None) == 0


def _job(**changes: Any) -> dict[str, Any]:
    job = CallJob(
        CALL_ID, "org-1", "lead-1", "+16045550142", "phnum_1", {"is_outbound": "true"}, 1.5
    ).to_json()
    job.update(changes)
    return job


def test_call_job_round_trips_through_json() -> None:
    job = _job()

    assert CallJob.from_json(json.loads(json.dumps(job))).to_json() == job


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"call_id": ""}, "call job field 'call_id' is required"),
        ({"to_number": None}, "call job field 'to_number' is required"),
        ({"agent_phone_number_id": 7}, "call job field 'agent_phone_number_id' is required"),
        ({"dynamic_variables": {"a": 1}}, "'dynamic_variables' must map names to strings"),
        ({"dynamic_variables": []}, "'dynamic_variables' must map names to strings"),
        ({"requested_at": "soon"}, "'requested_at' must be a number"),
        ({"requested_at": True}, "'requested_at' must be a number"),
    ],
)
def test_call_job_refuses_what_is_not_a_job(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        CallJob.from_json(_job(**changes))


def test_call_job_refuses_a_body_that_is_no_object() -> None:
    with pytest.raises(InvalidInput, match="call job must be a JSON object"):
        CallJob.from_json([1])


def test_call_outcome_round_trips_with_its_kind() -> None:
    outcome = CallOutcome(CALL_ID, calls.DIALING, "conv_1", "CA1")
    body = outcome.to_json()

    assert body["kind"] == calls.OUTCOME_KIND
    assert calls.is_call_outcome(body) and not calls.is_call_outcome({"key": "reply:SM1"})
    assert CallOutcome.from_json(body) == outcome


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "delivery_status"}, "must be a JSON object of kind 'call_outcome'"),
        ({"call_id": "nope"}, "'call_id' must be a UUID"),
        ({"status": "completed"}, "'status' must be dialing or failed"),
        ({"conversation_id": 3}, "'conversation_id' must be a string or null"),
    ],
)
def test_call_outcome_refuses_what_is_not_an_outcome(changes: dict[str, Any], message: str) -> None:
    body = {**CallOutcome(CALL_ID, calls.FAILED, error="why").to_json(), **changes}

    with pytest.raises(InvalidInput, match=message):
        CallOutcome.from_json(body)


def test_call_outcome_error_is_kept_short() -> None:
    body = CallOutcome(CALL_ID, calls.FAILED, error="x" * 2000).to_json()

    assert len(CallOutcome.from_json(body).error or "") == calls.MAX_ERROR_CHARS


def test_notes_say_who_asked_and_why_a_call_failed() -> None:
    assert calls.requested_note({"sub": "s1", "email": "ana@example.com"}) == (
        "Call requested by ana@example.com"
    )
    assert calls.requested_note({"sub": "s1", "email": None}) == "Call requested by s1"
    assert calls.failed_note("busy") == "Call could not be placed: busy"
    assert calls.note_key(CALL_ID, "failed") == f"call:{CALL_ID}:failed"
    assert calls.note_params(CALL_ID) == {"call_id": CALL_ID}


# -- ElevenLabs' answers ----------------------------------------------------------------------


def _answer(body: Any) -> bytes:
    return json.dumps(body).encode()


def test_a_successful_answer_is_a_placed_call() -> None:
    body = {"success": True, "message": "ok", "conversation_id": "conv_1", "callSid": "CA1"}

    assert _placed(200, _answer(body)) == PlacedCall("conv_1", "CA1")


@pytest.mark.parametrize(
    ("status", "body", "reason", "message"),
    [
        (401, {"detail": {"status": "invalid_api_key"}}, "auth", "refused the API key (HTTP 401)"),
        (
            422,
            {"detail": [{"loc": ["body", "to_number"], "msg": "Field required"}]},
            "refused",
            "ElevenLabs refused the call: body.to_number: Field required",
        ),
        (429, {}, "rate_limited", "limiting requests"),
        (500, {"detail": "boom"}, "http", "ElevenLabs answered HTTP 500: boom"),
        (200, {"success": False, "message": "busy"}, "refused", "could not place the call: busy"),
        (200, ["not", "an", "object"], "protocol", "not an outbound-call response"),
    ],
)
def test_other_answers_are_call_errors_naming_why(
    status: int, body: Any, reason: str, message: str
) -> None:
    with pytest.raises(CallError, match=re.escape(message)) as caught:
        _placed(status, _answer(body))
    assert caught.value.reason == reason


def test_a_body_that_is_not_json_is_a_protocol_error() -> None:
    with pytest.raises(CallError) as caught:
        _placed(200, b"<html>")
    assert caught.value.reason == "protocol"


def test_the_request_body_carries_the_documented_fields() -> None:
    dialer = ElevenLabsDialer("https://api.elevenlabs.io", "agent_1", lambda: "key")

    assert dialer.request_body("phnum_1", "+16045550142", {"is_outbound": "true"}) == {
        "agent_id": "agent_1",
        "agent_phone_number_id": "phnum_1",
        "to_number": "+16045550142",
        "conversation_initiation_client_data": {"dynamic_variables": {"is_outbound": "true"}},
    }


def test_no_api_key_is_a_call_error_before_anything_is_sent() -> None:
    dialer = ElevenLabsDialer("http://127.0.0.1:9", "agent_1", lambda: None)

    with pytest.raises(CallError) as caught:
        dialer.call("phnum_1", "+16045550142", {})
    assert caught.value.reason == "auth"


def test_an_api_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="ELEVENLABS_API_URL"):
        ElevenLabsDialer("ftp://example.com", "agent_1", lambda: "key")
