"""Texts after a call (the Node service's automation): store hours, directions, appointment.

An organization switches them on in its settings, per topic::

    {"sms_follow_ups": {"asked_hours": true, "asked_directions": true,
                        "appointment_request": true}}

The post-call analysis flags of the same names (``data_collection_results.<flag>.value``)
pick the topics; one text covers all of them, at most one per lead per 30 minutes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

from leadlookup.models import Organization

FOLLOW_UP_FLAGS = ("asked_hours", "asked_directions", "appointment_request")
WINDOW_SECONDS = 30 * 60
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TRUE = {"true", "yes", "1"}


def asked(payload: dict[str, Any]) -> list[str]:
    """The follow-up flags the call's analysis set, in :data:`FOLLOW_UP_FLAGS` order."""
    data = payload.get("data") if isinstance(payload, dict) else None
    analysis = data.get("analysis") if isinstance(data, dict) else None
    results = analysis.get("data_collection_results") if isinstance(analysis, dict) else None
    if not isinstance(results, dict):
        return []
    found = []
    for flag in FOLLOW_UP_FLAGS:
        entry = results.get(flag)
        value = entry.get("value") if isinstance(entry, dict) else None
        if value is True or (isinstance(value, str) and value.strip().lower() in _TRUE):
            found.append(flag)
    return found


def enabled(org: Organization) -> set[str]:
    """The follow-up topics this organization's settings switch on."""
    settings = org.settings.get("sms_follow_ups")
    if not isinstance(settings, dict):
        return set()
    return {flag for flag in FOLLOW_UP_FLAGS if settings.get(flag) is True}


def _clock(text: str) -> str:
    hours, _, minutes = text.partition(":")
    try:
        hour, minute = int(hours), int(minutes or 0)
    except ValueError:
        return text
    suffix = "AM" if hour < 12 else "PM"
    return f"{(hour % 12) or 12}:{minute:02d} {suffix}"


def hours_text(org: Organization) -> str:
    """The week's hours, consecutive days with the same hours joined: Mon-Fri 8:00 AM-6:00 PM."""
    table = org.settings.get("business_hours") or {}
    spans: list[tuple[str, str, str]] = []
    for day in _DAYS:
        hours = table.get(day) if isinstance(table, dict) else None
        if isinstance(hours, dict) and hours.get("open") and hours.get("close"):
            text = f"{_clock(str(hours['open']))}-{_clock(str(hours['close']))}"
        else:
            text = "closed"
        if spans and spans[-1][2] == text:
            spans[-1] = (spans[-1][0], day, text)
        else:
            spans.append((day, day, text))
    parts = []
    for first, last, text in spans:
        days = first[:3].title() if first == last else f"{first[:3].title()}-{last[:3].title()}"
        parts.append(f"{days} {text}")
    return ", ".join(parts)


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
