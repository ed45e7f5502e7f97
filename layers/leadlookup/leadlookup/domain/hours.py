"""A store's hours and what they say at a moment: the one home of store hours and their phrases.

Pure functions of the store's ``business_hours`` setting and a store-local time (no clock, no
I/O). The agent's variables, the first sentence, the fallback text and the follow-up texts all
read the week from here, so a store's hours are parsed and worded one way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


# English names by table, not strftime: the answer is in English whatever the locale, and
# strftime costs several microseconds a call.
DAY_NAMES = tuple(day.capitalize() for day in WEEKDAYS)


def day_name(moment: datetime) -> str:
    """``Monday``."""
    return DAY_NAMES[moment.weekday()]


def clock_text(value: time | datetime) -> str:
    """``2:05 PM`` (12-hour clock, no leading zero)."""
    hour = value.hour % 12 or 12
    return f"{hour}:{value.minute:02d} {'AM' if value.hour < 12 else 'PM'}"


def _parse_clock(raw: object) -> time | None:
    # "HH:MM" by hand: strptime costs ~7 us a call, and one answer reads the week's hours.
    hours, sep, minutes = str(raw).partition(":")
    if not (sep and hours.isascii() and hours.isdigit() and minutes.isascii()):
        return None
    if not (minutes.isdigit() and len(minutes) == 2 and len(hours) <= 2):
        return None
    hour, minute = int(hours), int(minutes)
    return time(hour, minute) if hour < 24 and minute < 60 else None


Hours = tuple[time, time] | None


# (opens, closes) or None (closed) per weekday, Monday first; the variables keep each store's.
Week = tuple[Hours, ...]


def week_hours(settings: Mapping[str, Any]) -> Week:
    """The store's week from its ``business_hours`` setting."""
    return tuple(day_hours(settings, day) for day in range(7))


def day_hours(settings: Mapping[str, Any], weekday: int) -> Hours:
    """(opens, closes) of ``weekday`` (0 = Monday) from the settings, None when closed."""
    table = settings.get("business_hours")
    hours = table.get(WEEKDAYS[weekday]) if isinstance(table, dict) else None
    if not isinstance(hours, dict):
        return None
    opens, closes = _parse_clock(hours.get("open")), _parse_clock(hours.get("close"))
    if opens is None or closes is None or closes <= opens:
        return None
    return opens, closes


def hours_text(hours: Hours) -> str:
    """``8:00 AM - 6:00 PM``, or ``Closed``."""
    if hours is None:
        return "Closed"
    return f"{clock_text(hours[0])} - {clock_text(hours[1])}"


def _day_span(first: int, last: int) -> str:
    names = [DAY_NAMES[first], DAY_NAMES[last]]
    if first == last:
        return names[0]
    return f"{names[0]} {'and' if last == first + 1 else 'to'} {names[1]}"


def week_hours_text(week: Week) -> str:
    """The whole week, equal consecutive days grouped: ``Monday to Friday 8:00 AM - ...``."""
    texts = [hours_text(hours) for hours in week]
    if all(text == "Closed" for text in texts):
        return ""
    groups: list[tuple[int, int, str]] = []
    for day, text in enumerate(texts):
        if groups and groups[-1][2] == text:
            groups[-1] = (groups[-1][0], day, text)
        else:
            groups.append((day, day, text))
    return ", ".join(f"{_day_span(first, last)} {text}" for first, last, text in groups)


def is_open(week: Week, local: datetime) -> bool:
    """Whether the store is open at store-local time ``local``."""
    hours = week[local.weekday()]
    return hours is not None and hours[0] <= local.time() < hours[1]


def _next_opening(week: Week, local: datetime) -> tuple[int, time] | None:
    """(days from today, opening time) of the next opening after ``local``; None if never."""
    for ahead in range(8):
        hours = week[(local.weekday() + ahead) % 7]
        if hours is not None and (ahead > 0 or local.time() < hours[0]):
            return ahead, hours[0]
    return None


def store_status(week: Week, local: datetime) -> str:
    """Open now (until when), not open yet today, or closed (and when it opens next)."""
    today = week[local.weekday()]
    if today is not None and today[0] <= local.time() < today[1]:
        return f"We're open until {clock_text(today[1])} today."
    following = _next_opening(week, local)
    if following is None:
        return ""
    ahead, opens = following
    if ahead == 0:
        return f"We open at {clock_text(opens)} today."
    when = "tomorrow" if ahead == 1 else "on " + day_name(local + timedelta(days=ahead))
    prefix = "We're closed for the day" if today is not None else "We're closed today"
    return f"{prefix}; we open {when} at {clock_text(opens)}."


@dataclass(frozen=True)
class Moment:
    """What the store's week says at one store-local time: the words and whether it is open."""

    clock: str  # 2:05 PM
    day: str  # Monday
    open: bool
    status: str  # store_status()


def at(week: Week, local: datetime) -> Moment:
    """The store at ``local``, read once for every phrase of an answer."""
    return Moment(
        clock=clock_text(local),
        day=day_name(local),
        open=is_open(week, local),
        status=store_status(week, local),
    )


def hours_info(hours: Hours) -> str:
    """One day's hours as a sentence about today."""
    if hours is None:
        return "The store is closed today."
    return f"Today's hours are {clock_text(hours[0])} to {clock_text(hours[1])}."


def week_hours_brief(week: Week) -> str:
    """The week for a text message, equal consecutive days joined: ``Mon-Fri 8:00 AM-6:00 PM``."""
    groups: list[tuple[int, int, str]] = []
    for day, hours in enumerate(week):
        text = "closed" if hours is None else f"{clock_text(hours[0])}-{clock_text(hours[1])}"
        if groups and groups[-1][2] == text:
            groups[-1] = (groups[-1][0], day, text)
        else:
            groups.append((day, day, text))
    parts = []
    for first, last, text in groups:
        days = DAY_NAMES[first][:3]
        if last != first:
            days += f"-{DAY_NAMES[last][:3]}"
        parts.append(f"{days} {text}")
    return ", ".join(parts)
