"""The ElevenLabs post-call signature scheme and payload parsing (no network)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from devkit.postcall_events import resign, sign_elevenlabs, signature_timestamp
from leadlookup.api import auth, webhooks
from leadlookup.domain import call_report, followups
from leadlookup.errors import InvalidInput, Unauthorized

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-elevenlabs-secret"
BODY = '{"type":"post_call_transcription","data":{"conversation_id":"conv_1"}}'
T = 1_795_631_400


def digest(body: str, secret: str = SECRET, t: int = T) -> str:
    return hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()


def verify(value: str | None, body: str = BODY, now: float = T) -> int:
    return auth.verify_elevenlabs_signature(value, body.encode(), SECRET, now)


def test_postcall_signature_devkit_signs_the_documented_scheme() -> None:
    value = sign_elevenlabs(BODY, SECRET, T)

    assert value == f"t={T},v0={digest(BODY)}"
    assert auth.elevenlabs_signature(BODY.encode(), SECRET, T) == digest(BODY)


def test_postcall_signature_valid_returns_timestamp() -> None:
    assert verify(sign_elevenlabs(BODY, SECRET, T)) == T


@pytest.mark.parametrize(
    "value",
    [
        f"v0={digest(BODY)},t={T}",
        f" t={T} , v0={digest(BODY).upper()} ",
        f"t={T},v1=abc,v0={digest(BODY)}",
        f"t={T},v0={'0' * 64},v0={digest(BODY)}",
    ],
)
def test_postcall_signature_accepts_equivalent_header_forms(value: str) -> None:
    assert verify(value) == T


@pytest.mark.parametrize(
    "value",
    [
        f"t={T},v0={digest(BODY, secret='other')}",
        f"t={T},v0={digest(BODY)[:-2]}",
        f"t={T},v0={digest(BODY)}00",
        f"t={T + 1},v0={digest(BODY)}",
        f"t={T},v0={digest(BODY + ' ')}",
    ],
)
def test_postcall_signature_rejects_wrong_digest(value: str) -> None:
    with pytest.raises(Unauthorized, match="does not match"):
        verify(value)


def test_postcall_signature_rejects_tampered_body() -> None:
    value = sign_elevenlabs(BODY, SECRET, T)

    with pytest.raises(Unauthorized, match="does not match"):
        verify(value, body=BODY.replace("conv_1", "conv_2"))


@pytest.mark.parametrize(
    "value",
    [
        "t=abc,v0=00",
        f"v0={digest(BODY)}",
        f"t={T}",
        f"t={T},t={T},v0={digest(BODY)}",
        f"t=-{T},v0={digest(BODY)}",
        f"t={T},v0=zz",
        f"t={T},v0=\u00e9\u00e9",
        f"t={T},v0=",
        "sha256=abc",
        f"t={T}{'9' * 20},v0=00",
    ],
)
def test_postcall_signature_rejects_malformed_header(value: str) -> None:
    with pytest.raises(Unauthorized, match="malformed"):
        verify(value)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_postcall_signature_rejects_missing_header(value: str | None) -> None:
    with pytest.raises(Unauthorized, match="missing"):
        verify(value)


@pytest.mark.parametrize(
    ("age", "accepted"),
    [(0, True), (30 * 60, True), (30 * 60 + 1, False), (2 * 3600, False)],
)
def test_postcall_signature_expires_after_30_minutes(age: int, accepted: bool) -> None:
    value = sign_elevenlabs(BODY, SECRET, T)

    if accepted:
        assert verify(value, now=T + age) == T
    else:
        with pytest.raises(Unauthorized, match="expired"):
            verify(value, now=T + age)


@pytest.mark.parametrize(("ahead", "accepted"), [(5 * 60, True), (5 * 60 + 1, False)])
def test_postcall_signature_allows_5_minutes_of_clock_skew(ahead: int, accepted: bool) -> None:
    value = sign_elevenlabs(BODY, SECRET, T + ahead)

    if accepted:
        assert verify(value, body=BODY, now=T) == T + ahead
    else:
        with pytest.raises(Unauthorized, match="future"):
            verify(value, now=T)


def test_postcall_signature_window_checked_only_after_digest() -> None:
    forged_and_old = f"t={T - 7200},v0={'1' * 64}"

    with pytest.raises(Unauthorized, match="does not match"):
        verify(forged_and_old)


def test_postcall_signature_sample_events_verify_at_their_timestamp() -> None:
    signed = json.loads((ROOT / "events/post_call_webhook/post_call_signed.json").read_text())
    expired = json.loads((ROOT / "events/post_call_webhook/post_call_expired.json").read_text())
    at = signature_timestamp(signed)

    assert verify(signed["headers"]["elevenlabs-signature"], signed["body"], now=at) == at
    live = json.loads((ROOT / "events/post_call_webhook/post_call_live_agent.json").read_text())
    assert verify(live["headers"]["elevenlabs-signature"], live["body"], now=at) == at
    with pytest.raises(Unauthorized, match="expired"):
        verify(expired["headers"]["elevenlabs-signature"], expired["body"], now=at)
    assert signature_timestamp(expired) == at - 2 * 3600


def test_postcall_signature_resign_makes_fresh_samples(tmp_path: Path) -> None:
    (tmp_path / "post_call_webhook").mkdir()
    for name in ("post_call_signed.json", "post_call_expired.json", "post_call_live_agent.json"):
        source = ROOT / "events/post_call_webhook" / name
        (tmp_path / "post_call_webhook" / name).write_text(source.read_text())
    now = T + 86_400

    written = resign(tmp_path, now=now)

    signed, expired, live, batch = (json.loads(p.read_text()) for p in written)
    assert [p.name for p in written] == [
        "post_call_signed.json",
        "post_call_expired.json",
        "post_call_live_agent.json",
        "sqs_batch.json",
    ]
    assert verify(live["headers"]["elevenlabs-signature"], live["body"], now=now) == now
    queued = json.loads(batch["Records"][0]["body"])
    assert queued["payload"]["event_timestamp"] == now  # the batch follows the re-signing
    assert verify(signed["headers"]["elevenlabs-signature"], signed["body"], now=now) == now
    assert json.loads(signed["body"])["event_timestamp"] == now
    assert signed["requestContext"]["timeEpoch"] == now * 1000
    with pytest.raises(Unauthorized, match="expired"):
        verify(expired["headers"]["elevenlabs-signature"], expired["body"], now=now)


# -- payload parsing ---------------------------------------------------------------------


def transcription(**results: Any) -> dict[str, Any]:
    return {
        "type": "post_call_transcription",
        "data": {
            "conversation_id": "conv_1",
            "analysis": {
                "transcript_summary": "Asked about e-bikes.",
                "data_collection_results": {
                    name: {"data_collection_id": name, "value": value}
                    for name, value in results.items()
                },
            },
        },
    }


def test_postcall_parse_maps_the_merge_table() -> None:
    body = transcription(
        customer_name=" Ada ",
        bike_type="e-bike",
        budget_range=3000,
        purchase_timeline="this week",
        call_classification="HOT",
    )

    call = call_report.parse_post_call(body)

    assert call is not None
    assert call.customer_name == "Ada"
    assert call.bike_interest == {"type": "e-bike"}
    assert call.qualification_data == {"budget_range": 3000, "timeline": "this week"}
    assert (call.status, call.classification) == ("hot", "HOT")
    assert call.summary == "Asked about e-bikes."


@pytest.mark.parametrize("value", ["", "unknown", "Not mentioned.", "n/a", "?", None, False, ["x"]])
def test_postcall_parse_drops_placeholder_values(value: Any) -> None:
    call = call_report.parse_post_call(
        transcription(customer_name=value, bike_type=value, purchase_timeline=value)
    )

    assert call is not None
    assert call.customer_name is None
    assert call.bike_interest == {}
    assert call.qualification_data == {}


@pytest.mark.parametrize("value", ["closed", "vip", "", 5])
def test_postcall_parse_passes_only_ladder_statuses(value: Any) -> None:
    call = call_report.parse_post_call(transcription(call_classification=value))

    assert call is not None
    assert call.status is None


def _call(**data: Any) -> Any:
    body = transcription(call_classification="general")
    body["data"].update(data)
    call = call_report.parse_post_call(body)
    assert call is not None
    return call


PHONE_CALL = {"phone_call": {"agent_number": "+17786528784", "external_number": "+12365550199"}}
USER_SPOKE = [{"role": "agent", "message": "Hi!"}, {"role": "user", "message": "Hi, it's Ada."}]


@pytest.mark.parametrize(
    ("metadata", "variables", "channel"),
    [
        (PHONE_CALL, {"channel": "voice", "call_type": "inbound"}, "phone"),
        (PHONE_CALL, {}, "phone"),
        (PHONE_CALL, {"channel": "sms"}, "sms"),
        (PHONE_CALL, {"call_type": " SMS "}, "sms"),
        ({"text_only": True}, {"channel": "sms", "call_type": "sms"}, "sms"),
        ({}, {}, "web"),
        ({"phone_call": None}, {"channel": "voice"}, "web"),
        ({"phone_call": {}}, {"channel": 5}, "web"),
    ],
)
def test_postcall_parse_tells_a_phone_call_from_a_text_conversation(
    metadata: dict[str, Any], variables: dict[str, Any], channel: str
) -> None:
    call = _call(
        metadata=metadata,
        conversation_initiation_client_data={"dynamic_variables": variables},
        transcript=USER_SPOKE,
    )

    assert call.channel == channel
    assert call.reached is (channel == "phone")
    assert call.status == ("contacted" if channel == "phone" else None)


@pytest.mark.parametrize(
    ("transcript", "reached"),
    [
        (USER_SPOKE, True),
        ([{"role": "user", "message": "Yes"}], True),
        ([{"role": "agent", "message": "Hi, thanks for calling!"}], False),
        ([{"role": "agent", "message": "Hi!"}, {"role": "user", "message": " ... "}], False),
        ([{"role": "user", "message": None}, "x", 5], False),
        ([], False),
        ("Hi, it's Ada.", False),
        (None, False),
    ],
)
def test_postcall_parse_reached_means_the_caller_said_something(
    transcript: Any, reached: bool
) -> None:
    call = _call(metadata=PHONE_CALL, transcript=transcript)

    assert call.reached is reached
    assert call.status == ("contacted" if reached else None)
    assert call.classification == "general"


@pytest.mark.parametrize(
    ("classification", "status"),
    [("sales", "contacted"), ("new", "contacted"), ("Qualified", "qualified"), ("hot", "hot")],
)
def test_postcall_parse_reached_call_is_at_least_contacted(
    classification: str, status: str
) -> None:
    body = transcription(call_classification=classification)
    body["data"].update(metadata=PHONE_CALL, transcript=USER_SPOKE)

    call = call_report.parse_post_call(body)

    assert call is not None
    assert (call.status, call.classification) == (status, classification)


def test_postcall_parse_keeps_the_live_agents_fields_for_staff() -> None:
    call = call_report.parse_post_call(
        transcription(
            bike_type="unsure",
            budget_range="not_specified",
            purchase_timeline="just_browsing",
            riding_experience="Returning_Rider",
            customer_triggers="asked about store hours, has a complaint",
            follow_up_needed="arrange manager callback for escalation",
        )
    )

    assert call is not None
    assert call.bike_interest == {}
    assert call.qualification_data == {
        "timeline": "just_browsing",
        "riding_experience": "Returning_Rider",
        "customer_triggers": "asked about store hours, has a complaint",
        "follow_up_needed": "arrange manager callback for escalation",
    }
    assert call.callback_requested is True


def test_postcall_parse_reads_every_field_it_names() -> None:
    assert (
        len(set(call_report.DATA_COLLECTION_FIELDS))
        == len(call_report.DATA_COLLECTION_FIELDS)
        == 11
    )
    read = {name for _, name in call_report.QUALIFICATION_FIELDS}
    read |= {"customer_name", "bike_type", "call_classification"}
    read |= {*followups.FOLLOW_UP_FLAGS, *followups.PHRASE_FIELDS}
    assert read == set(call_report.DATA_COLLECTION_FIELDS)


def test_postcall_parse_ignores_other_types() -> None:
    assert call_report.parse_post_call({"type": "post_call_audio", "data": []}) is None


def test_postcall_parse_body_cleans_text_for_postgres() -> None:
    raw = b'{"a\\u0000": "x\\u0000y", "b": ["\\ud800z"], "c": 1e999}'

    body = webhooks.parse_body(raw)

    assert body == {"a": "xy", "b": ["?z"], "c": None}


@pytest.mark.parametrize(
    "raw",
    [b"[]", b"nope", b'{"x": NaN}', b"\xff\xfe", b"[" * 100_000, b'{"a":' * 40 + b"1" + b"}" * 40],
)
def test_postcall_parse_body_rejects_non_objects(raw: bytes) -> None:
    with pytest.raises(InvalidInput, match="body"):
        webhooks.parse_body(raw)
