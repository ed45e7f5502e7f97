"""Twilio signatures: the layer's check agrees with the official ``twilio`` RequestValidator."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator, add_port, remove_port

from devkit.sms_events import event_params, set_params, sign_event, status_fields, webhook_event
from devkit.standins import TwilioStandIn
from leadlookup.api import auth, webhooks
from leadlookup.api.http import error_status
from leadlookup.config import Settings
from leadlookup.domain import sms
from leadlookup.errors import Forbidden, InvalidInput

TOKEN = "test-twilio-auth-token"
DOMAIN = "abc123xyz.execute-api.us-east-1.amazonaws.com"
API_URL = f"https://{DOMAIN}/webhooks/twilio/sms"
PAIRS = [
    ("ToCountry", "CA"),
    ("FromZip", ""),
    ("Body", "Hi! Caf\u00e9 at 5? 100% & more"),
    ("To", "+17786528784"),
    ("ToZip", ""),
    ("MessageSid", "SM3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e"),
    ("AccountSid", "AC5e1f0c9b7d3a4e6f8a2b1c0d9e8f7a6b"),
    ("From", "+12505550134"),
    ("ApiVersion", "2010-04-01"),
]


class MultiValueForm(dict):
    """A form with repeated names, shaped like Django's QueryDict for the RequestValidator."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        for name, value in pairs:
            self.setdefault(name, []).append(value)

    def getlist(self, name: str) -> list[str]:
        return self[name]


def twilio_signature(url: str, pairs: list[tuple[str, str]], token: str = TOKEN) -> str:
    """The signature the official package computes for a POST of ``pairs`` to ``url``."""
    return RequestValidator(token).compute_signature(url, MultiValueForm(pairs))


def settings(**overrides: Any) -> Settings:
    env = {"TWILIO_AUTH_TOKEN": TOKEN, **overrides.pop("env", {})}
    return Settings(env=env, **overrides)


def event_signed_by_twilio(url: str, pairs: list[tuple[str, str]], **kwargs: Any) -> dict:
    event = webhook_event(pairs, token=None, **kwargs)
    event["headers"]["x-twilio-signature"] = twilio_signature(url, pairs)
    return event


def test_compute_signature_matches_request_validator_for_a_sample_form() -> None:
    expected = twilio_signature(API_URL, PAIRS)

    assert auth.twilio_signature(API_URL, PAIRS, TOKEN) == expected
    assert auth.twilio_signature(API_URL, dict(PAIRS), TOKEN) == expected


def test_compute_signature_matches_request_validator_for_repeated_keys() -> None:
    pairs = [*PAIRS, ("MediaUrl", "https://b.example/2"), ("MediaUrl", "https://a.example/1")]
    pairs += [("MediaUrl", "https://b.example/2"), ("Tag", ""), ("Tag", "vip")]

    ours = auth.twilio_signature(API_URL, pairs, TOKEN)

    assert ours == twilio_signature(API_URL, pairs)
    assert ours == auth.twilio_signature(API_URL, webhooks.form_fields(pairs), TOKEN)


@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=20)), min_size=0, max_size=8
    ),
    st.text(alphabet="abcxyz09/=&?", max_size=20),
)
def test_compute_signature_matches_request_validator_for_any_form(
    pairs: list[tuple[str, str]], suffix: str
) -> None:
    url = f"{API_URL}{suffix}"

    assert auth.twilio_signature(url, pairs, TOKEN) == twilio_signature(url, pairs)


@pytest.mark.parametrize(
    "url",
    [
        API_URL,
        f"https://{DOMAIN}:443/webhooks/twilio/sms",
        f"https://{DOMAIN}/webhooks/twilio/sms?source=twilio&x=",
        "https://sms.bici.example:8443/hooks/sms?a=1",
        "http://localhost:3000/webhooks/twilio/sms",
        "http://localhost/webhooks/twilio/sms",
    ],
)
def test_signature_urls_are_request_validators_without_and_with_port(url: str) -> None:
    parsed = urlparse(url)

    assert auth.twilio_signature_urls(url) == [remove_port(parsed), add_port(parsed)]


def test_verify_accepts_a_base64_body_with_blank_values() -> None:
    event = event_signed_by_twilio(API_URL, PAIRS)
    raw = base64.b64decode(event["body"])
    assert event["isBase64Encoded"] is True
    assert b"FromZip=&" in raw

    auth.verify_twilio_signature(event, webhooks.parse_form(raw), settings())


def test_verify_needs_the_blank_values_that_were_signed() -> None:
    event = event_signed_by_twilio(API_URL, PAIRS)
    without_blanks = [(name, value) for name, value in PAIRS if value]

    with pytest.raises(Forbidden):
        auth.verify_twilio_signature(event, without_blanks, settings())


def test_verify_accepts_repeated_keys() -> None:
    pairs = [*PAIRS, ("MediaUrl", "https://b.example/2"), ("MediaUrl", "https://a.example/1")]
    event = event_signed_by_twilio(API_URL, pairs)

    auth.verify_twilio_signature(event, event_params(event), settings())


def test_verify_covers_the_raw_query_string() -> None:
    query = "source=twilio&note=a%20b&empty="
    event = event_signed_by_twilio(f"{API_URL}?{query}", PAIRS, raw_query=query)
    event_without_query = event_signed_by_twilio(API_URL, PAIRS, raw_query=query)

    auth.verify_twilio_signature(event, PAIRS, settings())
    with pytest.raises(Forbidden):
        auth.verify_twilio_signature(event_without_query, PAIRS, settings())


@pytest.mark.parametrize("signed_url", [API_URL, f"https://{DOMAIN}:443/webhooks/twilio/sms"])
def test_verify_accepts_the_url_with_and_without_the_default_port(signed_url: str) -> None:
    event = event_signed_by_twilio(signed_url, PAIRS)

    auth.verify_twilio_signature(event, PAIRS, settings())


def test_verify_uses_public_base_url_over_the_api_domain() -> None:
    public = "https://sms.bici.example"
    event = event_signed_by_twilio(f"{public}/webhooks/twilio/sms", PAIRS)

    auth.verify_twilio_signature(event, PAIRS, settings(public_base_url=public))
    auth.verify_twilio_signature(event, PAIRS, settings(public_base_url=public + ":443/"))
    with pytest.raises(Forbidden):
        auth.verify_twilio_signature(event, PAIRS, settings())


@pytest.mark.parametrize("base", ["https://api.bici.example", "https://api.bici.example/voice"])
@pytest.mark.parametrize("port", ["", ":443"])
def test_verify_public_base_url_with_or_without_a_base_path_agrees_with_request_validator(
    base: str, port: str
) -> None:
    # Through a custom domain's API mapping, rawPath lacks the mapping's path ("/voice").
    origin, _, path = base.partition("//")[2].partition("/")
    called = f"https://{origin}{port}/{path}{'/' if path else ''}webhooks/twilio/sms?x=1"
    event = event_signed_by_twilio(called, PAIRS)
    event["rawQueryString"] = "x=1"
    assert event["rawPath"] == "/webhooks/twilio/sms"

    rebuilt = auth.twilio_request_url(event, base)
    auth.verify_twilio_signature(event, PAIRS, settings(public_base_url=base))

    # Both ways: Twilio's validator accepts our signature for the URL we rebuilt, too.
    assert rebuilt == f"{base}/webhooks/twilio/sms?x=1"
    ours = auth.twilio_signature(rebuilt, PAIRS, TOKEN)
    assert RequestValidator(TOKEN).validate(called, MultiValueForm(PAIRS), ours)


def test_verify_refuses_a_base_path_that_differs_from_the_one_twilio_called() -> None:
    with_path = event_signed_by_twilio("https://api.bici.example/voice/webhooks/twilio/sms", PAIRS)
    without = event_signed_by_twilio("https://api.bici.example/webhooks/twilio/sms", PAIRS)

    with pytest.raises(Forbidden):
        auth.verify_twilio_signature(
            with_path, PAIRS, settings(public_base_url="https://api.bici.example")
        )
    with pytest.raises(Forbidden):
        auth.verify_twilio_signature(
            without, PAIRS, settings(public_base_url="https://api.bici.example/voice")
        )


def test_verify_with_a_named_stage_on_the_api_domain_signs_the_stage() -> None:
    event = event_signed_by_twilio(
        f"https://{DOMAIN}/prod/webhooks/twilio/sms", PAIRS, stage="prod"
    )
    assert event["rawPath"] == "/prod/webhooks/twilio/sms"

    auth.verify_twilio_signature(event, PAIRS, settings())


def test_verify_with_a_named_stage_behind_public_base_url_strips_the_stage() -> None:
    public = "https://sms.bici.example"
    event = event_signed_by_twilio(f"{public}/webhooks/twilio/sms", PAIRS, stage="prod")

    auth.verify_twilio_signature(event, PAIRS, settings(public_base_url=public))


def test_route_path_strips_only_a_leading_stage_segment() -> None:
    assert auth.route_path("/prod/webhooks/twilio/sms", "prod") == "/webhooks/twilio/sms"
    assert auth.route_path("/production/x", "prod") == "/production/x"
    assert auth.route_path("/prod/x", "$default") == "/prod/x"
    assert auth.route_path("/prod", "prod") == "/"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("forged", "invalid X-Twilio-Signature header"),
        ("missing", "missing X-Twilio-Signature header"),
        ("tampered", "invalid X-Twilio-Signature header"),
        ("other host", "invalid X-Twilio-Signature header"),
    ],
)
def test_verify_rejects_a_bad_signature_with_403(change: str, message: str) -> None:
    event = webhook_event(PAIRS)
    pairs = event_params(event)
    if change == "forged":
        sign_event(event, token="not-the-token")
    elif change == "missing":
        del event["headers"]["x-twilio-signature"]
    elif change == "tampered":
        pairs = [(n, "+16045550000" if n == "From" else v) for n, v in pairs]
    else:
        event["requestContext"]["domainName"] = "evil.example"

    with pytest.raises(Forbidden) as raised:
        auth.verify_twilio_signature(event, pairs, settings())

    assert str(raised.value) == message
    assert error_status(raised.value) == 403


def test_verify_without_a_configured_token_fails_closed() -> None:
    event = webhook_event(PAIRS)

    with pytest.raises(Forbidden, match="not configured"):
        auth.verify_twilio_signature(event, event_params(event), Settings(env={}))


def test_verify_is_skipped_when_unsigned_webhooks_are_allowed() -> None:
    event = webhook_event(PAIRS, token=None)

    auth.verify_twilio_signature(event, PAIRS, Settings(env={}, allow_unsigned_webhooks=True))


def test_parse_form_keeps_blank_values_and_order() -> None:
    raw = urlencode(PAIRS).encode()

    assert webhooks.parse_form(raw) == PAIRS


def test_form_fields_keeps_every_value_of_a_repeated_name() -> None:
    fields = webhooks.form_fields([("A", "1"), ("B", ""), ("A", "2"), ("A", "3")])

    assert fields == {"A": ["1", "2", "3"], "B": ""}


def test_set_params_encodes_the_body_as_http_api_does() -> None:
    event = set_params(webhook_event(PAIRS), [("Body", "a b"), ("From", "+1")])

    assert base64.b64decode(event["body"]) == b"Body=a+b&From=%2B1"
    assert event["headers"]["content-length"] == "18"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"Body": "STOP"}, "out"),
        ({"Body": "  stop \n"}, "out"),
        ({"Body": "Unsubscribe"}, "out"),
        ({"Body": "stopall"}, "out"),
        ({"Body": "cancel"}, "out"),
        ({"Body": "END"}, "out"),
        ({"Body": "quit"}, "out"),
        ({"Body": "Start"}, "in"),
        ({"Body": "yes"}, "in"),
        ({"Body": "UNSTOP"}, "in"),
        ({"Body": "stop please"}, None),
        ({"Body": "Please STOP"}, None),
        ({"Body": ""}, None),
        ({}, None),
        ({"Body": "ARRET", "OptOutType": "STOP"}, "out"),
        ({"Body": "go", "OptOutType": "START"}, "in"),
        ({"Body": "stop", "OptOutType": "HELP"}, None),
    ],
)
def test_opt_change_reads_whole_body_keywords(fields: dict, expected: str | None) -> None:
    assert sms.opt_change(fields.get("OptOutType"), fields.get("Body")) == expected


def test_message_group_id_is_to_colon_from_made_safe_for_sqs() -> None:
    assert webhooks.message_group_id("+17786528784", "+12505550134") == "+17786528784:+12505550134"
    assert webhooks.message_group_id("+17786528784", "BICI Shop") == "+17786528784:BICI_Shop"
    assert len(webhooks.message_group_id("x" * 100, "y" * 100)) == 128


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ([], "JSON object"),
        ({"Body": "hi"}, "'MessageSid' is required"),
        ({"MessageSid": ""}, "'MessageSid' is required"),
        ({"MessageSid": "SM 1"}, "'MessageSid' is not a message id"),
        ({"MessageSid": "SM1", "Body": 5}, "'Body' must be text"),
        ({"MessageSid": "SM1", "Body": ["a", None]}, "'Body' must be text"),
    ],
)
def test_validated_message_names_the_problem(message: Any, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        sms.validated_message(message)


# -- status callbacks: the stand-in signs as Twilio does, the samples verify -------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:3000/webhooks/twilio/status",
        "https://api.bici.example/voice/webhooks/twilio/status?store=1",
    ],
)
def test_twilio_stand_in_signs_status_callbacks_as_the_request_validator_checks(url: str) -> None:
    pairs = status_fields("SM" + "a" * 32, "undelivered", 30007)

    signature = TwilioStandIn(auth_token=TOKEN).signature(url, pairs)

    assert signature == twilio_signature(url, pairs)
    assert RequestValidator(TOKEN).validate(url, MultiValueForm(pairs), signature)


@pytest.mark.parametrize(
    ("name", "valid"), [("delivered", True), ("undelivered", True), ("forged", False)]
)
def test_twilio_sample_status_events_verify_as_twilio_signed_them(name: str, valid: bool) -> None:
    path = Path(__file__).resolve().parents[2] / "events" / "twilio_status" / f"{name}.json"
    event = json.loads(path.read_text())
    pairs = event_params(event)
    url = f"https://{DOMAIN}/webhooks/twilio/status"

    accepted = RequestValidator(TOKEN).validate(
        url, MultiValueForm(pairs), event["headers"]["x-twilio-signature"]
    )

    assert accepted is valid
    if valid:
        auth.verify_twilio_signature(event, pairs, settings())
    else:
        with pytest.raises(Forbidden):
            auth.verify_twilio_signature(event, pairs, settings())
