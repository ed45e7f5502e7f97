"""Phone parsing: what counts as a caller, and one normalized form per number."""

from __future__ import annotations

import pytest

from leadlookup.phones import mask_phone, national_digits, normalize_phone


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


def test_mask_phone_keeps_only_the_ends() -> None:
    assert mask_phone("+16045550142") == "+1604***0142"
    assert "5550" not in mask_phone("+16045550142")
    assert mask_phone("123") == "***"
