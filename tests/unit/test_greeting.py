"""The greeting pieces, table-driven over times of day, weekdays and store hours."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from leadlookup.domain import hours, variables

VANCOUVER = ZoneInfo("America/Vancouver")
WEEKDAY = {"open": "08:00", "close": "18:00"}
WEEKEND = {"open": "09:00", "close": "16:30"}
# The seeded store: Monday to Friday 8:00-18:00, Saturday and Sunday 9:00-16:30.
SEEDED: dict[str, Any] = {
    "business_hours": {
        day: (WEEKEND if day in ("saturday", "sunday") else WEEKDAY) for day in hours.WEEKDAYS
    }
}
# A store closed on Sundays (no entry) and on Mondays (an unusable entry).
NO_SUN: dict[str, Any] = {
    "business_hours": {
        "monday": {"open": "", "close": ""},
        "tuesday": WEEKDAY,
        "wednesday": WEEKDAY,
        "thursday": WEEKDAY,
        "friday": WEEKDAY,
        "saturday": WEEKEND,
    }
}


WEEK_INFO = "Today's hours are 8:00 AM to 6:00 PM."
WKND = "Today's hours are 9:00 AM to 4:30 PM."
CLOSED_INFO = "The store is closed today."
UNTIL_6 = "We're open until 6:00 PM today."


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    """Store-local time in the week of Monday 2026-11-23 (day 0 = Monday)."""
    return datetime(2026, 11, 23 + day, hour, minute, tzinfo=VANCOUVER)


@pytest.mark.parametrize(
    ("hour", "minute", "expected"),
    [
        (0, 30, "Good morning!"),
        (6, 0, "Good morning!"),
        (11, 59, "Good morning!"),
        (12, 0, "Good afternoon!"),
        (16, 59, "Good afternoon!"),
        (17, 0, "Good evening!"),
        (23, 30, "Good evening!"),
    ],
)
def test_greeting_time_greeting_follows_the_store_clock(
    hour: int, minute: int, expected: str
) -> None:
    assert variables.time_greeting(_at(2, hour, minute)) == expected


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (0, "Hope your week's off to a good start!"),
        (1, "Hope your week's going well!"),
        (2, "Happy Wednesday, we're halfway through the week!"),
        (3, "The weekend's almost here!"),
        (4, "Happy Friday!"),
        (5, "Hope you're having a great Saturday!"),
        (6, "Hope you're having a relaxing Sunday!"),
    ],
)
def test_greeting_day_context_names_each_weekday(day: int, expected: str) -> None:
    assert variables.day_context(_at(day, 10)) == expected


@pytest.mark.parametrize(
    ("settings", "day", "hour", "minute", "is_open", "status", "hours_info"),
    [
        # before opening, open, at closing time, after closing, on every kind of day
        # ("Closed ..." stands for "We're closed ..." to keep the table narrow)
        (SEEDED, 2, 7, 30, False, "We open at 8:00 AM today.", WEEK_INFO),
        (SEEDED, 2, 8, 0, True, UNTIL_6, WEEK_INFO),
        (SEEDED, 2, 14, 5, True, UNTIL_6, WEEK_INFO),
        (SEEDED, 2, 18, 0, False, "Closed for the day; we open tomorrow at 8:00 AM.", WEEK_INFO),
        (SEEDED, 4, 19, 0, False, "Closed for the day; we open tomorrow at 9:00 AM.", WEEK_INFO),
        (SEEDED, 5, 16, 29, True, "We're open until 4:30 PM today.", WKND),
        (SEEDED, 6, 17, 0, False, "Closed for the day; we open tomorrow at 8:00 AM.", WKND),
        (NO_SUN, 5, 17, 0, False, "Closed for the day; we open on Tuesday at 8:00 AM.", WKND),
        (NO_SUN, 6, 12, 0, False, "Closed today; we open on Tuesday at 8:00 AM.", CLOSED_INFO),
        (NO_SUN, 0, 9, 0, False, "Closed today; we open tomorrow at 8:00 AM.", CLOSED_INFO),
        ({}, 2, 12, 0, False, "", CLOSED_INFO),
    ],
)  # fmt: skip
def test_greeting_store_status_open_closed_and_before_opening(
    settings: dict[str, Any],
    day: int,
    hour: int,
    minute: int,
    is_open: bool,
    status: str,
    hours_info: str,
) -> None:
    local = _at(day, hour, minute)
    status = status.replace("Closed", "We're closed", 1)

    week = hours.week_hours(settings)

    assert hours.is_open(week, local) is is_open
    assert hours.store_status(week, local) == status
    assert hours.hours_info(week[local.weekday()]) == hours_info


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (SEEDED, "Monday to Friday 8:00 AM - 6:00 PM, Saturday and Sunday 9:00 AM - 4:30 PM"),
        (
            NO_SUN,
            "Monday Closed, Tuesday to Friday 8:00 AM - 6:00 PM, Saturday 9:00 AM - 4:30 PM, "
            "Sunday Closed",
        ),
        ({}, ""),
        ({"business_hours": "9-5"}, ""),
    ],
)
def test_greeting_week_hours_group_equal_consecutive_days(
    settings: dict[str, Any], expected: str
) -> None:
    assert hours.week_hours_text(hours.week_hours(settings)) == expected


@pytest.mark.parametrize(
    ("name", "first", "opener"),
    [
        ("Ada", "Ada", "Hey Ada!"),
        ("Ada Lovelace", "Ada", "Hey Ada!"),
        ("  ada   lovelace ", "ada", "Hey ada!"),
        ("Ada!", "Ada", "Hey Ada!"),
        ('"Ada," Lovelace', "Ada", "Hey Ada!"),
        ("O'Brien", "O'Brien", "Hey O'Brien!"),
        ("!!! Ada", "Ada", "Hey Ada!"),
        ("", "", "Hey there!"),
        ("  ", "", "Hey there!"),
        ("?", "", "Hey there!"),
    ],
)
def test_greeting_customer_greeting_is_the_first_name_and_the_opener_greets_it(
    name: str, first: str, opener: str
) -> None:
    assert variables.customer_greeting(name) == first
    assert variables.greeting_opener(name) == opener


@pytest.mark.parametrize(
    ("name", "day", "hour", "expected"),
    [
        (
            "Ada",
            2,
            14,
            "Hey Ada! Thanks for calling Bee-chee. Happy Wednesday, we're halfway through the "
            "week! We're open until 6:00 PM today. What's up?",
        ),
        (
            "",
            2,
            7,
            "Hey there! Thanks for calling Bee-chee. Happy Wednesday, we're halfway through the "
            "week! We open at 8:00 AM today. What's up?",
        ),
        (
            "Ada",
            4,
            19,
            "Hey Ada! Thanks for calling Bee-chee. Happy Friday! We're closed for the day; we "
            "open tomorrow at 9:00 AM. What's up?",
        ),
    ],
)
def test_greeting_dynamic_greeting_is_the_whole_first_sentence(
    name: str, day: int, hour: int, expected: str
) -> None:
    call_id = _call_id_for(variables.INBOUND_VARIATIONS, "What's up")

    sentence = variables.dynamic_greeting(
        customer_name=name,
        spoken_name="Bee-chee",
        local=_at(day, hour),
        week=hours.week_hours(SEEDED),
        call_id=call_id,
    )

    assert sentence == expected


def test_greeting_follow_up_call_says_who_calls_and_asks_about_the_bike() -> None:
    call_id = _call_id_for(
        variables.OUTBOUND_VARIATIONS, "Do you have a minute to pick up where we left off"
    )
    common: dict[str, Any] = {
        "spoken_name": "Bee-chee",
        "local": _at(2, 14),
        "week": hours.week_hours(SEEDED),
        "call_id": call_id,
        "outbound": True,
    }

    with_bike = variables.dynamic_greeting(customer_name="Ada", bike_interest="gravel", **common)
    e_bike = variables.dynamic_greeting(customer_name="Ada", bike_interest="e-bike", **common)
    unsure = variables.dynamic_greeting(customer_name="", bike_interest="unsure", **common)

    assert with_bike == (
        "Hey Ada! It's Bee-chee calling you back. Do you have a minute to talk about the gravel "
        "bike you asked about?"
    )
    assert e_bike.endswith("Do you have a minute to talk about the e-bike you asked about?")
    assert unsure == (
        "Hey there! It's Bee-chee calling you back. Do you have a minute to pick up where we "
        "left off?"
    )


def test_greeting_who_we_are_for_calls_texts_and_follow_ups() -> None:
    assert variables.who_we_are("Bee-chee", "voice", False) == "Thanks for calling Bee-chee"
    assert variables.who_we_are("Bee-chee", "sms", False) == "Thanks for texting Bee-chee"
    assert variables.who_we_are("Bee-chee", "voice", True) == "It's Bee-chee calling you back"


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (("Hey Ada!", "Thanks for calling Bikes Inc.", "", "What's up?"),
         "Hey Ada! Thanks for calling Bikes Inc. What's up?"),
        (("Thanks for calling Yay Bikes!", "", "We open at 8:00 AM today"),
         "Thanks for calling Yay Bikes! We open at 8:00 AM today."),
        (("Hey there!", "Thanks for calling Bee-chee Bike Store"),
         "Hey there! Thanks for calling Bee-chee Bike Store."),
        (("", ""), ""),
    ],
)  # fmt: skip
def test_greeting_sentences_end_each_piece_once_and_skip_empty_ones(
    pieces: tuple[str, ...], expected: str
) -> None:
    assert variables.sentences(*pieces) == expected


def test_greeting_variation_is_fixed_per_call_and_varies_across_calls() -> None:
    ids = [f"CA{n:032x}" for n in range(40)]

    first = [variables.greeting_variation(call_id, False) for call_id in ids]
    again = [variables.greeting_variation(call_id, False) for call_id in ids]
    outbound = {variables.greeting_variation(call_id, True) for call_id in ids}

    assert first == again
    assert set(first) == set(variables.INBOUND_VARIATIONS)
    assert outbound == set(variables.OUTBOUND_VARIATIONS)
    # Agents write `{{greeting_variation}}?`: no phrase brings its own ending.
    assert not [v for v in (*first, *outbound) if v.rstrip()[-1] in ".!?"]


def _call_id_for(choices: tuple[str, ...], wanted: str) -> str:
    """A call id whose variation is ``wanted`` (found, not assumed, so the table stays honest)."""
    for n in range(1000):
        call_id = f"CA{n:032x}"
        if variables.variation(call_id, choices) == wanted:
            return call_id
    raise AssertionError(f"no call id picks {wanted!r}")
