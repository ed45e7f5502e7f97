"""Texts after a call (the Node service's automation): store hours, directions, appointment.

An organization switches them on in its settings, per topic::

    {"sms_follow_ups": {"asked_hours": true, "asked_directions": true,
                        "appointment_request": true}}

The call's analysis (``data_collection_results.<field>.value``) picks the topics: the
boolean flags of the same names, or the store's live agent's free text in
``customer_triggers`` (comma-separated: "asked about store hours, asked for
directions/location") and ``follow_up_needed`` (one recommendation: "send directions with
map links"). One text covers every topic, at most one per lead per 30 minutes. The same text
fields can ask for a manager's callback, which flags the lead for staff instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus

from leadlookup.domain import hours
from leadlookup.domain.models import Organization

FOLLOW_UP_FLAGS = ("asked_hours", "asked_directions", "appointment_request")
# The live agent's free-text fields, read phrase by phrase.
PHRASE_FIELDS = ("customer_triggers", "follow_up_needed")
# A phrase asks for a topic when it holds one of the topic's words (case-insensitive): the
# agent's own choices ("asked about store hours", "send store hours", "asked for
# directions/location", "send directions with map links", "wants to schedule appointment",
# "confirm appointment details") and the ways a model rewords them.
TOPIC_WORDS = {
    "asked_hours": ("hour",),
    "asked_directions": ("direction", "location", "address"),
    "appointment_request": ("appointment",),
}
# "arrange manager callback for escalation"; "has a complaint" alone asks for no callback.
CALLBACK_WORDS = ("manager", "callback", "call back", "call-back")
WINDOW_SECONDS = 30 * 60
_TRUE = {"true", "yes", "1"}
_PHRASE_SEPARATORS = re.compile(r"[,;\n]")
# "no follow-up needed", "none", "not needed": a phrase that says no asks for nothing.
_REFUSAL = re.compile(r"(?:no|none|not|nothing)\b")


def phrases(values: Mapping[str, Any]) -> list[str]:
    """The live agent's trigger and follow-up phrases, lower-cased, refusals left out."""
    found = []
    for name in PHRASE_FIELDS:
        text = values.get(name)
        if not isinstance(text, str):
            continue
        for part in _PHRASE_SEPARATORS.split(text.casefold()):
            phrase = " ".join(part.split())
            if phrase and not _REFUSAL.match(phrase):
                found.append(phrase)
    return found


def topics(values: Mapping[str, Any]) -> list[str]:
    """The follow-up topics collected values ask for, in :data:`FOLLOW_UP_FLAGS` order.

    ``values`` maps data-collection field names to their values: a flag counts when it is
    true (or "true", "yes", "1"), a phrase when it holds one of the topic's words.
    """
    said = phrases(values)
    found = []
    for flag in FOLLOW_UP_FLAGS:
        value = values.get(flag)
        if (
            value is True
            or (isinstance(value, str) and value.strip().lower() in _TRUE)
            or any(word in phrase for phrase in said for word in TOPIC_WORDS[flag])
        ):
            found.append(flag)
    return found


def wants_callback(values: Mapping[str, Any]) -> bool:
    """Whether the collected phrases ask for a manager's callback."""
    return any(word in phrase for phrase in phrases(values) for word in CALLBACK_WORDS)


def asked(payload: dict[str, Any]) -> list[str]:
    """The follow-up topics a post-call event's analysis asks for (see :func:`topics`)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    analysis = data.get("analysis") if isinstance(data, dict) else None
    results = analysis.get("data_collection_results") if isinstance(analysis, dict) else None
    if not isinstance(results, dict):
        return []
    values = {
        name: entry.get("value")
        for name, entry in results.items()
        if isinstance(entry, dict) and name in (*FOLLOW_UP_FLAGS, *PHRASE_FIELDS)
    }
    return topics(values)


def enabled(org: Organization) -> set[str]:
    """The follow-up topics this organization's settings switch on."""
    settings = org.settings.get("sms_follow_ups")
    if not isinstance(settings, dict):
        return set()
    return {flag for flag in FOLLOW_UP_FLAGS if settings.get(flag) is True}


def hours_text(org: Organization) -> str:
    """The week's hours for a text: ``Mon-Fri 8:00 AM-6:00 PM, Sat-Sun 9:00 AM-4:30 PM``."""
    return hours.week_hours_brief(hours.week_hours(org.settings))


def follow_up_text(org: Organization, topics: list[str]) -> str:
    """One text answering every topic asked about on the call."""
    lines = [f"Thanks for calling {org.settings.get('spoken_name') or org.name}!"]
    address = str(org.settings.get("address") or "").strip()
    if "asked_hours" in topics:
        lines.append(f"Our hours: {hours_text(org)}.")
    if "asked_directions" in topics and address:
        lines.append(
            f"Find us at {address}: https://www.google.com/maps/search/?api=1&query="
            f"{quote_plus(address)}"
        )
    if "appointment_request" in topics:
        lines.append(
            "To book your appointment, reply with a day and time that suit you, or call us at "
            f"{org.phone_number}."
        )
    return " ".join(lines)
