"""Phone number parsing, normalization and masking (design section 5)."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

# Channel prefixes that Twilio and ElevenLabs put in front of an address.
_PREFIXES = ("tel:", "sms:", "whatsapp:", "client:")
# Longest string worth handing to libphonenumber; anything longer is not a phone number.
_MAX_INPUT_CHARS = 64


def _strip_prefix(raw: str) -> str:
    text = raw.strip()
    lowered = text.lower()
    for prefix in _PREFIXES:
        if lowered.startswith(prefix):
            return text[len(prefix) :].strip()
    return text


@lru_cache(maxsize=4096)
def _normalize(raw: str, region: str) -> str | None:
    text = _strip_prefix(raw)
    if not text or len(text) > _MAX_INPUT_CHARS:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    # Twilio's anonymous sentinels (+266696687, +7378742833, ...) fail is_valid_number, which is
    # why validity, not mere parseability, decides what counts as a caller.
    if number.extension or not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def normalize_phone(raw: object, region: str = "CA") -> str | None:
    """E.164 digits without '+' (``17786528784``), or None when ``raw`` is not a phone number."""
    if not isinstance(raw, str):
        return None
    return _normalize(raw, region)


def national_digits(normalized: str) -> str:
    """The national significant number of a normalized number (legacy rows stored without +1)."""
    number = phonenumbers.parse("+" + normalized)
    return str(number.national_number)


def mask_phone(raw: object) -> str:
    """A phone number safe for logs: ``+1604***0142``; anything short is fully masked."""
    text = str(raw or "")
    if len(text) <= 8:
        return "***"
    return f"{text[:5]}***{text[-4:]}"
