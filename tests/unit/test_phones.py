"""Phone parsing: what counts as a caller, and one normalized form per number."""

from __future__ import annotations

import pytest

from leadlookup.domain.phones import mask_phone, national_digits, normalize_phone


@pytest.mark.parametrize(
    "raw", ["(778) 652-8784", "778-652-8784", "17786528784", "+1 778 652 8784", "tel:+17786528784"]
)
def test_normalize_phone_formats_of_one_number_agree(raw: str) -> None:
    assert normalize_phone(raw) == "17786528784"


@pytest.mark.parametrize(
    "raw",
    [
        "anonymous",
        "+266696687",
        "+7378742833",
        "+8656696",
        "+2562533",
        "client:web-123",
        "12345",
        "",
        "   ",
        "+1 778 652 8784 ext. 12",
        "x" * 500,
        None,
        17786528784,
    ],
)
def test_normalize_phone_rejects_what_is_not_a_phone_number(raw: object) -> None:
    assert normalize_phone(raw) is None


def test_normalize_phone_uses_the_default_region_for_national_numbers() -> None:
    assert normalize_phone("020 7946 0018", region="GB") == "442079460018"
    assert normalize_phone("020 7946 0018", region="CA") is None


def test_normalize_phone_strips_channel_prefixes() -> None:
    assert normalize_phone("whatsapp:+16045550142") == "16045550142"
    assert normalize_phone("SMS:+16045550142") == "16045550142"


def test_national_digits_drops_the_country_code() -> None:
    assert national_digits("17786528784") == "7786528784"


@pytest.mark.parametrize(
    "raw",
    [
        "+16045550142",
        "16045550142",
        "6045550142",
        "(604) 555-0142",
        "604.555.0142",
        "604 555 0142",
        "+1 604 555 0142",
        "1-604-555-0142",
        "tel:+16045550142",
        "tel:6045550142",
        "sms:+16045550142",
    ],
)
def test_mask_phone_masks_by_digits_whatever_the_format(raw: str) -> None:
    assert mask_phone(raw) == "+1604***0142"


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+442079460018", "+4420***0018"),  # country code, area code, last four
        ("+1 778 652 8784 ext. 12", "+1778***8784"),  # the extension never shows
        ("anonymous", "***mous"),  # no phone number: its last four characters at most
        ("+266696687", "***6687"),  # Twilio's sentinels are not numbers
        ("client:web-123456789", "***6789"),
        ("12345", "***"),  # short: nothing
        ("", "***"),
        (None, "***"),
    ],
)
def test_mask_phone_shows_at_most_code_area_and_last_four(raw: object, masked: str) -> None:
    assert mask_phone(raw) == masked


def test_mask_phone_always_hides_some_digits_of_short_numbers() -> None:
    masked = mask_phone("+8656696")  # possible, only five national digits

    assert sum(c.isdigit() for c in masked) - len("86") <= 5 - 3
