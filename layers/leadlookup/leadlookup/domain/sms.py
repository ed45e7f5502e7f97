"""An inbound SMS as Twilio's form fields: validated, and read into what is stored."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from leadlookup.domain import optout
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
    return InboundMessage(
        message_sid=str(first_value(stored, "MessageSid")),
        from_number=first_value(stored, "From"),
        to_number=first_value(stored, "To"),
        body=first_value(stored, "Body") or "",
        params=stored,
        opt_change=optout.opt_change(
            first_value(stored, "OptOutType"), first_value(stored, "Body")
        ),
    )


def parties(message: Mapping[str, Any]) -> dict[str, Any]:
    # Masked: logs never hold a full phone number.
    return {
        "sender": mask_phone(first_value(message, "From")),
        "to": mask_phone(first_value(message, "To")),
    }
