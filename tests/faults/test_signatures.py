"""Forged, truncated, replayed-too-late and future-dated signatures, and wrong secrets: all
rejected through the real handlers, and none of them writes anything."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

from devkit.postcall_events import sign_elevenlabs
from devkit.sms_events import event_params, set_params, sign_event
from leadlookup.config import DEFAULT_ORGANIZATION_ID
from tests.support.faults import (
    TWIML,
    Figures,
    Invoke,
    initiation_event,
    insert_lead,
    message_counts,
    new_phone,
    post_call_event,
    rejection_message,
    sms_event,
    sms_fields,
    table_state,
    timed,
)

LEADS = "lead_update"
POST_CALL = "post_call_webhook"
WEBHOOK = "sms_webhook"
INITIATION = "conversation_initiation"
ELEVENLABS_SECRET = "test-elevenlabs-secret"
TWILIO_TOKEN = "test-twilio-auth-token"


def attempt(
    invoke: Invoke,
    figures: Figures,
    database_url: str,
    function_dir: str,
    name: str,
    event: dict[str, Any],
    status: int,
) -> None:
    before = table_state(database_url)
    response, ms = timed(invoke, function_dir, event)
    wrote = table_state(database_url) != before
    ok = response["statusCode"] == status and rejection_message(response) is not None
    figures.record("forged", ms, ok and not wrote, f"{name}: {response} wrote={wrote}")


def resigned(body: str, at: int, secret: str = ELEVENLABS_SECRET) -> str:
    return sign_elevenlabs(body, secret, at)


ElevenLabsCase = Callable[[dict[str, Any], int], None]


def _header(value: str) -> ElevenLabsCase:
    def change(event: dict[str, Any], now: int) -> None:
        event["headers"]["elevenlabs-signature"] = value

    return change


def _signed(at_offset: int, secret: str = ELEVENLABS_SECRET) -> ElevenLabsCase:
    def change(event: dict[str, Any], now: int) -> None:
        event["headers"]["elevenlabs-signature"] = resigned(event["body"], now + at_offset, secret)

    return change


def _truncated(event: dict[str, Any], now: int) -> None:
    event["headers"]["elevenlabs-signature"] = resigned(event["body"], now)[:-1]


def _body_changed_after_signing(event: dict[str, Any], now: int) -> None:
    event["headers"]["elevenlabs-signature"] = resigned(event["body"], now)
    body = json.loads(event["body"])
    body["data"]["analysis"]["data_collection_results"]["call_classification"]["value"] = "hot"
    event["body"] = json.dumps(body)


def _timestamp_changed(event: dict[str, Any], now: int) -> None:
    digest = resigned(event["body"], now - 3600).split(",v0=")[1]
    event["headers"]["elevenlabs-signature"] = f"t={now},v0={digest}"


def _other_event_signature(event: dict[str, Any], now: int) -> None:
    other, _ = post_call_event(None)
    event["headers"]["elevenlabs-signature"] = other["headers"]["elevenlabs-signature"]


def _missing(event: dict[str, Any], now: int) -> None:
    event["headers"].pop("elevenlabs-signature")


ELEVENLABS_CASES: dict[str, ElevenLabsCase] = {
    "forged (another secret)": _signed(0, "not-the-secret"),
    "truncated digest": _truncated,
    "replayed 31 minutes late": _signed(-31 * 60),
    "replayed 24 hours late": _signed(-24 * 3600),
    "dated 6 minutes ahead": _signed(6 * 60),
    "dated a year ahead": _signed(365 * 24 * 3600),
    "body changed after signing": _body_changed_after_signing,
    "timestamp changed after signing": _timestamp_changed,
    "another delivery's signature": _other_event_signature,
    "missing header": _missing,
    "empty header": _header(""),
    "no timestamp": _header("v0=" + "0" * 64),
    "no digest": _header("t=1795631400"),
    "v1 scheme only": _header("t=1795631400,v1=" + "0" * 64),
    "two timestamps": _header("t=1,t=2,v0=" + "0" * 64),
    "non-hex digest": _header("t=1795631400,v0=zz"),
    "huge timestamp": _header("t=" + "9" * 40 + ",v0=" + "0" * 64),
}


def test_signatures_elevenlabs_post_call_every_forgery_is_401_and_writes_nothing(
    fault_env: dict[str, str], invoke: Invoke, database_url: str, figures: Figures
) -> None:
    figures.fault = f"{len(ELEVENLABS_CASES)} forged ElevenLabs-Signature variants"
    lead_id = insert_lead(database_url, new_phone(), DEFAULT_ORGANIZATION_ID)
    now = int(time.time())

    for name, change in ELEVENLABS_CASES.items():
        event, _ = post_call_event(lead_id)
        change(event, now)
        attempt(invoke, figures, database_url, POST_CALL, name, event, 401)
    genuine, _ = post_call_event(lead_id)
    accepted, _ = timed(invoke, POST_CALL, genuine)
    figures.notes["genuine_status"] = accepted["statusCode"]

    assert figures.failures == 0, figures.failed
    assert accepted["statusCode"] == 200  # the same route takes a genuine delivery


def _url_changed(**parts: str) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        signed = copy.deepcopy(event)
        for key, value in parts.items():
            if key == "domain":
                signed["requestContext"]["domainName"] = value
            elif key == "path":
                signed["rawPath"] = value
            elif key == "query":
                signed["rawQueryString"] = value
        sign_event(signed)
        event["headers"]["x-twilio-signature"] = signed["headers"]["x-twilio-signature"]

    return change


def _fields_changed(change: Callable[[list[tuple[str, str]]], list[tuple[str, str]]]) -> Any:
    def apply(event: dict[str, Any]) -> None:
        set_params(event, change(event_params(event)))

    return apply


def _twilio_header(value: str | None) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        if value is None:
            event["headers"].pop("x-twilio-signature")
        else:
            event["headers"]["x-twilio-signature"] = value

    return change


def _forged(event: dict[str, Any]) -> None:
    sign_event(event, "not-the-twilio-auth-token")


def _truncated_twilio(event: dict[str, Any]) -> None:
    event["headers"]["x-twilio-signature"] = event["headers"]["x-twilio-signature"][:-4]


def _http_scheme(event: dict[str, Any]) -> None:
    from devkit.sms_events import sign_twilio
    from leadlookup.api.auth import twilio_request_url

    url = twilio_request_url(event).replace("https://", "http://", 1)
    event["headers"]["x-twilio-signature"] = sign_twilio(url, event_params(event))


def _other_message_signature(event: dict[str, Any]) -> None:
    other = sms_event(new_phone())
    event["headers"]["x-twilio-signature"] = other["headers"]["x-twilio-signature"]


TWILIO_CASES: dict[str, Callable[[dict[str, Any]], None]] = {
    "forged (another auth token)": _forged,
    "truncated signature": _truncated_twilio,
    "signed for another host": _url_changed(domain="evil.example.com"),
    "signed for another path": _url_changed(path="/webhooks/twilio/other"),
    "signed with a query string": _url_changed(query="store=vancouver"),
    "signed as http://": _http_scheme,
    "body changed after signing": _fields_changed(
        lambda pairs: [(n, "Send me your card" if n == "Body" else v) for n, v in pairs]
    ),
    "sender changed after signing": _fields_changed(
        lambda pairs: [(n, "+16045550999" if n == "From" else v) for n, v in pairs]
    ),
    "field added after signing": _fields_changed(lambda pairs: [*pairs, ("OptOutType", "STOP")]),
    "field removed after signing": _fields_changed(
        lambda pairs: [(n, v) for n, v in pairs if n != "AccountSid"]
    ),
    "another message's signature": _other_message_signature,
    "missing header": _twilio_header(None),
    "empty header": _twilio_header(""),
    "not base64": _twilio_header("!!!!"),
    "right length, all zero": _twilio_header("A" * 27 + "="),
}


def test_signatures_twilio_sms_every_forgery_is_403_and_writes_nothing(
    fault_env: dict[str, str], invoke: Invoke, database_url: str, figures: Figures
) -> None:
    figures.fault = f"{len(TWILIO_CASES)} forged X-Twilio-Signature variants"

    for name, change in TWILIO_CASES.items():
        event = sms_event(new_phone())
        change(event)
        attempt(invoke, figures, database_url, WEBHOOK, name, event, 403)
    genuine = sms_event(new_phone())
    replayed = [timed(invoke, WEBHOOK, genuine)[0] for _ in range(3)]
    sid = sms_fields(genuine)["MessageSid"]
    figures.notes["genuine_replayed_3x_rows"] = message_counts(database_url, [sid])[sid]

    assert figures.failures == 0, figures.failed
    # Twilio signatures carry no timestamp: a replay is accepted and stored once (MessageSid).
    assert [r["body"] for r in replayed] == [TWIML] * 3
    assert message_counts(database_url, [sid]) == {sid: 1}


WRONG_SECRETS = [
    None,
    "",
    " test-initiation-secret",
    "test-initiation-secret ",
    "TEST-INITIATION-SECRET",
    "test-initiation-secre",
    "test-initiation-secrett",
    "test-initiation-secret\x00",
    "t\u0435st-initiation-secret",  # a Cyrillic e
    "' OR '1'='1",
]


def test_signatures_initiation_wrong_secret_is_401_and_writes_nothing(
    fault_env: dict[str, str], invoke: Invoke, database_url: str, figures: Figures
) -> None:
    figures.fault = f"{len(WRONG_SECRETS)} wrong or missing initiation secrets"

    for secret in WRONG_SECRETS:
        event = initiation_event(new_phone())
        if secret is None:
            event["headers"].pop("x-webhook-secret")
        else:
            event["headers"]["x-webhook-secret"] = secret
        attempt(invoke, figures, database_url, INITIATION, repr(secret), event, 401)

    assert figures.failures == 0, figures.failed
