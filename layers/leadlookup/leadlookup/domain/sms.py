"""Texts: an inbound SMS as Twilio's form fields (validated, read into what is stored), and
opt-out, the one home of the keywords Twilio acts on and what they change on a lead."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from leadlookup.domain.models import InboundMessage
from leadlookup.domain.phones import mask_phone
from leadlookup.errors import InvalidInput

# The MessageSid is the FIFO deduplication id, so it must be one as it is: at most 128
# characters, letters, digits and punctuation (no spaces).
_MESSAGE_SID = re.compile(r"[\x21-\x7e]{1,128}")


Message = dict[str, Any]


def first_value(message: Mapping[str, Any], name: str) -> str | None:
    """The (first) value of a form field, or None when it is absent."""
    value = message.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def validated_message(message: object) -> Message:
    """A queued message (Twilio's form fields), or :class:`InvalidInput` naming the problem."""
    if not isinstance(message, dict):
        raise InvalidInput("message must be a JSON object of form fields")
    for name, value in message.items():
        text = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        )
        if not text:
            raise InvalidInput(f"field {str(name)[:40]!r} must be text")
    sid = first_value(message, "MessageSid")
    if not sid:
        raise InvalidInput("field 'MessageSid' is required")
    if not _MESSAGE_SID.fullmatch(sid):
        raise InvalidInput("field 'MessageSid' is not a message id")
    return message


def _storable(fields: Message) -> Message:
    """The fields without NUL characters, which PostgreSQL text and jsonb cannot hold.

    The signature was checked on the fields as received; what is stored drops only NULs, so
    such a message is kept (minus the NULs) instead of failing until the dead-letter queue.
    """

    def clean(value: Any) -> Any:
        if isinstance(value, list):
            return [clean(item) for item in value]
        return value.replace("\x00", "") if isinstance(value, str) else value

    return {clean(name): clean(value) for name, value in fields.items()}


def inbound_message(fields: Mapping[str, Any]) -> InboundMessage:
    """The message to store from a queued message's fields (validated, NULs dropped)."""
    stored = _storable(validated_message(dict(fields)))
    body = first_value(stored, "Body") or ""
    change, keyword = classify(first_value(stored, "OptOutType"), body)
    return InboundMessage(
        message_sid=str(first_value(stored, "MessageSid")),
        from_number=first_value(stored, "From"),
        to_number=first_value(stored, "To"),
        body=body,
        params=stored,
        opt_change=change,
        keyword=keyword,
    )


def parties(message: Mapping[str, Any]) -> dict[str, Any]:
    # Masked: logs never hold a full phone number.
    return {
        "sender": mask_phone(first_value(message, "From")),
        "to": mask_phone(first_value(message, "To")),
    }


# -- opt-out: the one home of its keywords and states --------------------------------------
# Opt-out: the keywords Twilio acts on and what they change on a lead (their one home).
# Twilio answers its keywords itself and stops delivering to a number that sent STOP until it
# sends START; a lead's ``opted_out_at`` mirrors that, so the agent never answers or texts an
# opted-out number and staff see why.

# The two changes a text can make to a lead's opt-out state.
OUT = "out"
IN = "in"
# Twilio's default keywords (a whole body, trimmed, any case).
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
# Twilio answers these itself too (and they change nothing): the agent stays out.
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
# With Advanced Opt-Out, Twilio classifies the message itself (custom keywords included).
_OPT_OUT_TYPES = {"STOP": OUT, "START": IN, "HELP": None}
# Twilio's "Attempt to send to unsubscribed recipient": a STOP we never saw (another keyword,
# another channel) learnt from a refused send; the lead is marked opted out.
TWILIO_UNSUBSCRIBED = 21610


def opt_change(opt_out_type: str | None, body: str | None) -> str | None:
    """:data:`OUT` for an opt-out keyword, :data:`IN` for an opt-in one, else None."""
    classified = (opt_out_type or "").strip().upper()
    if classified in _OPT_OUT_TYPES:
        return _OPT_OUT_TYPES[classified]
    keyword = (body or "").strip().upper()
    if keyword in OPT_OUT_KEYWORDS:
        return OUT
    if keyword in OPT_IN_KEYWORDS:
        return IN
    return None


def classify(opt_out_type: str | None, body: str) -> tuple[str | None, bool]:
    """(:func:`opt_change`, :func:`is_keyword`) of one inbound text, read once."""
    change = opt_change(opt_out_type, body)
    return change, is_keyword(body, change)


def is_keyword(body: str, change: str | None) -> bool:
    """Whether Twilio answers this text itself (an opt-out, opt-in or help keyword)."""
    return change is not None or body.strip().upper() in HELP_KEYWORDS
