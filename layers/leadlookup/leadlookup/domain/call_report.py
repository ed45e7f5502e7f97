"""An ElevenLabs post-call report, read into a :class:`~leadlookup.domain.models.PostCall`.

What a report says and what it means for the lead, with no I/O: which data-collection fields
are read and where they are kept, whether the conversation was a phone call (ElevenLabs
reports every conversation, and every SMS reply opens one), whether the call reached someone,
what status it earns, and whether a manager callback was asked for. Malformed required parts
are 400 naming the field; malformed optional parts are ignored (ElevenLabs disables a webhook
that keeps failing).
"""

from __future__ import annotations

import math
from typing import Any

from leadlookup.domain import followups, status
from leadlookup.domain.models import PHONE, SMS, WEB, Organization, PostCall, parse_uuid
from leadlookup.errors import InvalidInput

# The data-collection fields the processor reads (``data.analysis.data_collection_results``):
# the store's live agent sends the first eight as strings; the last three are the boolean
# follow-up flags of agents configured for the replaced service.
DATA_COLLECTION_FIELDS = (
    "customer_name",
    "bike_type",
    "budget_range",
    "purchase_timeline",
    "riding_experience",
    "customer_triggers",
    "follow_up_needed",
    "call_classification",
    *followups.FOLLOW_UP_FLAGS,
)


# Where a collected value is kept in the lead's qualification_data: what staff read (GET
# /leads/{id}) and the next call loads with the lead. The triggers and the follow-up advice
# are the last call's, next to budget and timeline, because staff act on them per lead.
QUALIFICATION_FIELDS = (
    ("budget_range", "budget_range"),
    ("timeline", "purchase_timeline"),
    ("riding_experience", "riding_experience"),
    ("customer_triggers", "customer_triggers"),
    ("follow_up_needed", "follow_up_needed"),
)


TRANSCRIPTION = "post_call_transcription"


# Acknowledged and dropped whatever their size: audio is base64 MP3 of the whole call.
IGNORED_TYPES = frozenset({"post_call_audio", "call_initiation_failure"})


# What analysis models write when they did not learn the value: never worth storing. The live
# agent's own "unsure" and "not_specified" choices are among them (compared with underscores
# read as spaces), so a call that learned nothing never overwrites what an earlier one did.
PLACEHOLDERS = frozenset(
    {
        "", "-", "?", "n/a", "na", "none", "null", "nil", "unknown", "unknown caller",
        "not provided", "not given", "not mentioned", "not specified", "not stated",
        "not available", "unspecified", "undefined", "anonymous", "no name", "customer",
        "the customer", "caller", "the caller", "user", "the user", "unsure", "not sure",
    }
)  # fmt: skip


MAX_CONVERSATION_ID_CHARS = 256


MAX_NAME_CHARS = 200


MAX_VALUE_CHARS = 500


MAX_SUMMARY_CHARS = 10_000


MAX_CLASSIFICATION_CHARS = 100


def parse_post_call(body: dict[str, Any]) -> PostCall | None:
    """The call described by a parsed body; None for event types that are not stored.

    Required parts of the wrong type are 400 naming the field; optional parts of the wrong
    type are ignored (ElevenLabs disables a webhook that keeps failing). Whether it was a
    phone call, whether it reached someone and whether a callback was asked for are decided
    here, from the whole event.
    """
    if body.get("type") != TRANSCRIPTION:
        return None
    data = body.get("data")
    if not isinstance(data, dict):
        raise InvalidInput("field 'data' must be a JSON object")
    conversation_id = data.get("conversation_id")
    if conversation_id is None:
        raise InvalidInput("field 'data.conversation_id' is required")
    if not isinstance(conversation_id, str) or not conversation_id.strip():
        raise InvalidInput("field 'data.conversation_id' must be a non-empty string")
    if len(conversation_id) > MAX_CONVERSATION_ID_CHARS:
        raise InvalidInput(
            f"field 'data.conversation_id' is longer than {MAX_CONVERSATION_ID_CHARS} characters"
        )

    variables = section(section(data, "conversation_initiation_client_data"), "dynamic_variables")
    phone_call = section(section(data, "metadata"), "phone_call")
    analysis = section(data, "analysis")
    results = section(analysis, "data_collection_results")
    values = {name: _result(results, name) for name in DATA_COLLECTION_FIELDS}

    channel = _channel(phone_call, variables)
    reached = channel == PHONE and _someone_spoke(data.get("transcript"))
    classification = _text(values["call_classification"], MAX_CLASSIFICATION_CHARS)
    proposed = status.call_status(classification, reached)
    bike_type = _text(values["bike_type"], MAX_VALUE_CHARS)
    qualification = {
        column: value
        for column, name in QUALIFICATION_FIELDS
        if (value := _scalar(values[name])) is not None
    }
    return PostCall(
        conversation_id=conversation_id.strip(),
        payload=body,
        lead_id=_uuid_or_none(variables.get("lead_id")),
        external_number=_string(phone_call.get("external_number")),
        agent_number=_string(phone_call.get("agent_number")),
        agent_name=_string(data.get("agent_name")),
        summary=_text(analysis.get("transcript_summary"), MAX_SUMMARY_CHARS, truncate=True),
        classification=classification,
        status=proposed,
        customer_name=_text(values["customer_name"], MAX_NAME_CHARS),
        bike_interest={"type": bike_type} if bike_type else {},
        qualification_data=qualification,
        channel=channel,
        reached=reached,
        callback_requested=followups.wants_callback(values),
    )


def _channel(phone_call: dict[str, Any], variables: dict[str, Any]) -> str:
    """What the conversation was: a phone call only when it had a phone line.

    Our SMS replies open their conversations with ``channel`` and ``call_type`` ``sms``; a
    conversation without ``metadata.phone_call`` that is not one of them came from the web
    widget or a test in the ElevenLabs dashboard.
    """
    for name in ("channel", "call_type"):
        value = variables.get(name)
        if isinstance(value, str) and value.strip().casefold() == SMS:
            return SMS
    return PHONE if phone_call else WEB


def _someone_spoke(transcript: Any) -> bool:
    """Whether the call reached a person: a user turn with words in it.

    The agent speaks first on every call, so its turns prove nothing; a caller who hangs up
    during the greeting (or a call nobody answered) leaves no user turn, or one with no
    letters or digits (silence, noise).
    """
    if not isinstance(transcript, list):
        return False
    return any(
        isinstance(turn, dict)
        and turn.get("role") == "user"
        and isinstance(turn.get("message"), str)
        and any(c.isalnum() for c in turn["message"])
        for turn in transcript
    )


def is_agent_name(name: str, organization: Organization, agent_name: str | None) -> bool:
    wanted = _fold(name)
    agent_names = (organization.settings.get("agent_name"), agent_name)
    return any(isinstance(a, str) and _fold(a) == wanted for a in agent_names)


def _fold(text: str) -> str:
    return " ".join(text.split()).strip(" .!?,;:'\"").casefold()


def _is_placeholder(text: str) -> bool:
    return _fold(text.replace("_", " ")) in PLACEHOLDERS


def section(parent: dict[str, Any], name: str) -> dict[str, Any]:
    value = parent.get(name)
    return value if isinstance(value, dict) else {}


def _result(results: dict[str, Any], name: str) -> Any:
    return section(results, name).get("value")


def _string(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _text(value: Any, limit: int, truncate: bool = False) -> str | None:
    """A meaningful string value: not empty, not a placeholder, not absurdly long."""
    text = _string(value)
    if text is None or _is_placeholder(text) or not any(c.isalnum() for c in text):
        return None
    if len(text) > limit:
        return text[:limit] if truncate else None
    return text


def _scalar(value: Any) -> str | int | float | None:
    """A qualification value: meaningful text, or a number as the model gave it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    return _text(value, MAX_VALUE_CHARS)


def _uuid_or_none(value: Any) -> str | None:
    try:
        return parse_uuid(value)
    except InvalidInput:
        return None
