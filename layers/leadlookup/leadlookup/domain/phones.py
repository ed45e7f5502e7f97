"""Phone number parsing, normalization and masking (README.md, "How the lookups behave")."""

from __future__ import annotations

from functools import lru_cache

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
    # Imported on first use: the SMS webhook only masks numbers, and must not pay for it.
    import phonenumbers

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


def normalize_phones(raws: tuple[object, ...], region: str = "CA") -> tuple[str | None, ...]:
    """:func:`normalize_phone` of each of ``raws`` (a text's ``To`` and ``From``), in order."""
    return tuple(normalize_phone(raw, region) for raw in raws)


# Parsed on every initiation (is the caller the store itself?); a pure function of its input.
@lru_cache(maxsize=4096)
def national_digits(normalized: str) -> str:
    """The national significant number of a normalized number (legacy rows stored without +1)."""
    import phonenumbers

    number = phonenumbers.parse("+" + normalized)
    return str(number.national_number)


# A masked number hides at least this many digits of its national number.
_MIN_HIDDEN_DIGITS = 3
_SHOWN_TAIL = 4


def mask_phone(raw: object, region: str = "CA") -> str:
    """A phone number safe for logs, from its digits whatever the format: ``+1604***0142``.

    At most the country code, the area code and the last four digits show, and never fewer
    than three digits hide (short numbers show less). Input that is no phone number shows at
    most its last four characters, and nothing when it is short.
    """
    return _mask(str(raw or "")[: _MAX_INPUT_CHARS * 2], region)


@lru_cache(maxsize=4096)
def _mask(text: str, region: str) -> str:
    import phonenumbers  # on first use, as in _normalize

    stripped = _strip_prefix(text)
    number = None
    if stripped and len(stripped) <= _MAX_INPUT_CHARS:
        try:
            number = phonenumbers.parse(stripped, region)
        except phonenumbers.NumberParseException:
            number = None
    if number is None or not phonenumbers.is_possible_number(number):
        return "***" + stripped[-_SHOWN_TAIL:] if len(stripped) > 2 * _SHOWN_TAIL else "***"
    national = phonenumbers.national_significant_number(number)
    area = phonenumbers.length_of_geographical_area_code(
        number
    ) or phonenumbers.length_of_national_destination_code(number)
    tail = min(_SHOWN_TAIL, max(len(national) - _MIN_HIDDEN_DIGITS, 0))
    area = min(area, max(len(national) - tail - _MIN_HIDDEN_DIGITS, 0))
    shown_tail = national[len(national) - tail :] if tail else ""
    return f"+{number.country_code}{national[:area]}***{shown_tail}"
