"""The pure parts of sends and delivery status: the cut, the ranking, the parsing, the form."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadlookup.adapters.twilio import TwilioSender
from leadlookup.config import Settings
from leadlookup.domain.delivery import (
    FAILED_STATUSES,
    STATUS_RANK,
    DeliveryUpdate,
    is_delivery_update,
    parse_update,
    rank,
)
from leadlookup.domain.jobs import ELLIPSIS, MAX_SMS_CHARS, fit_sms
from leadlookup.domain.models import Organization
from leadlookup.errors import ConfigError, InvalidInput
from leadlookup.usecases.replies import store_sender

SID = "SM" + "b" * 32


# -- fit_sms -----------------------------------------------------------------------------------


def test_fit_sms_leaves_a_text_that_fits_untouched() -> None:
    text = "x" * MAX_SMS_CHARS

    assert fit_sms(text) == (text, False)


def test_fit_sms_cuts_after_the_last_sentence_that_fits() -> None:
    text = "First sentence here. " * 80 + "Tail"

    cut, was_cut = fit_sms(text)

    assert was_cut and cut.endswith("here.") and len(cut) <= MAX_SMS_CHARS
    assert text.startswith(cut)


def test_fit_sms_prefers_a_word_to_a_sentence_that_keeps_too_little() -> None:
    text = "Yes. " + "word " * 400

    cut, _ = fit_sms(text)

    assert cut.endswith("word" + ELLIPSIS)
    assert len(cut) > MAX_SMS_CHARS - 10


def test_fit_sms_does_not_take_a_decimal_point_for_a_sentence_end() -> None:
    text = ("It costs 3.5 dollars " * 100).strip()

    cut, _ = fit_sms(text, limit=100)

    assert cut.endswith(ELLIPSIS)
    assert not cut.endswith("3." + ELLIPSIS)


@given(st.text(min_size=0, max_size=2500), st.integers(min_value=10, max_value=1600))
def test_fit_sms_never_exceeds_the_limit_and_keeps_a_prefix(text: str, limit: int) -> None:
    cut, was_cut = fit_sms(text, limit)

    assert len(cut) <= limit
    assert was_cut is (len(text) > limit)
    assert text.startswith(cut.removesuffix(ELLIPSIS) if was_cut else cut)


# -- the ranking ---------------------------------------------------------------------------------


def test_rank_orders_the_lifecycle_and_puts_failures_last() -> None:
    lifecycle = ["queued", "sending", "sent", "delivered", "read"]

    assert [rank(s) for s in lifecycle] == sorted(rank(s) for s in lifecycle)
    assert all(rank(f) == max(STATUS_RANK.values()) for f in FAILED_STATUSES)
    assert rank(None) == rank("receiving") == 0


# -- parsing a callback --------------------------------------------------------------------------


def test_parse_update_takes_sid_status_and_error_code_and_ignores_other_fields() -> None:
    pairs = [
        ("SmsSid", SID),
        ("MessageStatus", "undelivered"),
        ("MessageSid", SID),
        ("ErrorCode", "30007"),
        ("SomethingNew", "x"),
    ]

    assert parse_update(pairs) == DeliveryUpdate(SID, "undelivered", 30007)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("MessageStatus", "sent")], "field 'MessageSid' is required"),
        ([("MessageSid", "SM 1"), ("MessageStatus", "sent")], "'MessageSid' is not a message id"),
        ([("MessageSid", SID)], "field 'MessageStatus' is required"),
        ([("MessageSid", SID), ("MessageStatus", "x" * 40)], "is not a message status"),
        ([("MessageSid", SID), ("MessageStatus", "failed"), ("ErrorCode", "-1")], "a number"),
    ],
)
def test_parse_update_names_the_field_that_is_wrong(
    pairs: list[tuple[str, str]], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_update(pairs)


def test_delivery_update_round_trips_and_is_told_apart_from_an_outcome() -> None:
    update = DeliveryUpdate(SID, "failed", 30034)

    assert DeliveryUpdate.from_json(update.to_json()) == update
    assert is_delivery_update(update.to_json())
    assert not is_delivery_update({"key": "reply:SM1", "sender_kind": "agent"})
    with pytest.raises(InvalidInput, match="error_code"):
        DeliveryUpdate.from_json({**update.to_json(), "error_code": "30034"})


# -- the sender ----------------------------------------------------------------------------------


def _org(phone: str, normalized: str, **settings: object) -> Organization:
    return Organization("o1", "BICI", phone, normalized, dict(settings))


def test_store_sender_is_e164_whatever_format_the_number_was_entered_in() -> None:
    assert store_sender(_org("(778) 652-8784", "17786528784")) == ("+17786528784", None)
    assert store_sender(_org("17786528784", "17786528784")) == ("+17786528784", None)


def test_store_sender_takes_a_messaging_service_only_when_it_is_one() -> None:
    service = "MG" + "1" * 32

    assert store_sender(_org("+17786528784", "17786528784", messaging_service_sid=service)) == (
        "+17786528784",
        service,
    )
    assert store_sender(_org("+17786528784", "17786528784", messaging_service_sid="PN1"))[1] is None


def _form(sender: TwilioSender, messaging_service_sid: str | None = None) -> dict[str, str]:
    raw = sender.form("+16045550142", "+17786528784", "hi", messaging_service_sid)
    return dict(parse_qsl(raw.decode()))


def test_twilio_sender_form_names_the_callback_and_one_sender() -> None:
    callback = "https://api.bici.example/webhooks/twilio/status"
    sender = TwilioSender("https://api.twilio.com", "AC1", lambda: "t", status_callback=callback)
    service = "MG" + "2" * 32

    with_number, with_service = _form(sender), _form(sender, service)
    without_callback = _form(TwilioSender("https://api.twilio.com", "AC1", lambda: "t"))

    assert with_number == {
        "To": "+16045550142",
        "From": "+17786528784",
        "Body": "hi",
        "StatusCallback": callback,
    }
    assert with_service["MessagingServiceSid"] == service and "From" not in with_service
    assert "StatusCallback" not in without_callback


def test_settings_status_callback_url_must_be_http() -> None:
    url = "https://api.bici.example/webhooks/twilio/status"

    assert (
        Settings.from_env({"TWILIO_STATUS_CALLBACK_URL": f" {url} "}).twilio_status_callback_url
        == url
    )
    assert Settings.from_env({}).twilio_status_callback_url is None
    with pytest.raises(ConfigError, match="TWILIO_STATUS_CALLBACK_URL must be an http"):
        Settings.from_env({"TWILIO_STATUS_CALLBACK_URL": "api.bici.example/status"})
