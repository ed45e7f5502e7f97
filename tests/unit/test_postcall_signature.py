"""The ElevenLabs post-call signature scheme and payload parsing (no network)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from devkit.postcall_events import resign, sign_elevenlabs, signature_timestamp
from leadlookup import auth, postcall
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
    signed = json.loads((ROOT / "events/lead_update/post_call_signed.json").read_text())
    expired = json.loads((ROOT / "events/lead_update/post_call_expired.json").read_text())
    at = signature_timestamp(signed)

    assert verify(signed["headers"]["elevenlabs-signature"], signed["body"], now=at) == at
    with pytest.raises(Unauthorized, match="expired"):
        verify(expired["headers"]["elevenlabs-signature"], expired["body"], now=at)
    assert signature_timestamp(expired) == at - 2 * 3600


def test_postcall_signature_resign_makes_fresh_samples(tmp_path: Path) -> None:
    (tmp_path / "lead_update").mkdir()
    for name in ("post_call_signed.json", "post_call_expired.json"):
        source = ROOT / "events/lead_update" / name
        (tmp_path / "lead_update" / name).write_text(source.read_text())
    now = T + 86_400

    written = resign(tmp_path, now=now)

    signed, expired, batch = (json.loads(p.read_text()) for p in written)
    assert [p.name for p in written] == [
        "post_call_signed.json",
        "post_call_expired.json",
        "sqs_batch.json",
    ]
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

    call = postcall.parse_post_call(body)

    assert call is not None
    assert call.customer_name == "Ada"
    assert call.bike_interest == {"type": "e-bike"}
    assert call.qualification_data == {"budget_range": 3000, "timeline": "this week"}
    assert (call.status, call.classification) == ("hot", "HOT")
    assert call.summary == "Asked about e-bikes."


@pytest.mark.parametrize("value", ["", "unknown", "Not mentioned.", "n/a", "?", None, False, ["x"]])
def test_postcall_parse_drops_placeholder_values(value: Any) -> None:
    call = postcall.parse_post_call(
        transcription(customer_name=value, bike_type=value, purchase_timeline=value)
    )

    assert call is not None
    assert call.customer_name is None
    assert call.bike_interest == {}
    assert call.qualification_data == {}


@pytest.mark.parametrize("value", ["closed", "vip", "", 5])
def test_postcall_parse_passes_only_ladder_statuses(value: Any) -> None:
    call = postcall.parse_post_call(transcription(call_classification=value))

    assert call is not None
    assert call.status is None


def test_postcall_parse_ignores_other_types() -> None:
    assert postcall.parse_post_call({"type": "post_call_audio", "data": []}) is None


def test_postcall_parse_body_cleans_text_for_postgres() -> None:
    raw = b'{"a\\u0000": "x\\u0000y", "b": ["\\ud800z"], "c": 1e999}'

    body = postcall.parse_body(raw)

    assert body == {"a": "xy", "b": ["?z"], "c": None}


@pytest.mark.parametrize(
    "raw",
    [b"[]", b"nope", b'{"x": NaN}', b"\xff\xfe", b"[" * 100_000, b'{"a":' * 40 + b"1" + b"}" * 40],
)
def test_postcall_parse_body_rejects_non_objects(raw: bytes) -> None:
    with pytest.raises(InvalidInput, match="body"):
        postcall.parse_body(raw)
