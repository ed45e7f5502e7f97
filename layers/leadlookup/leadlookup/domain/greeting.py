"""The spoken greeting and store-hours phrases of an answer, as pure functions of their inputs.

Everything here is a function of the store's settings, the store-local time and the call:
no clock, no randomness, no I/O (stdlib only: this sits on the initiation cold path). The
Node service picked a greeting at random; a retried webhook must answer the same, so the
variation is derived from the call's id instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from leadlookup.domain.hours import Week, store_status

MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

# One phrase per weekday (Monday first): the same day always says the same thing.
DAY_CONTEXT = (
    "Hope your week's off to a good start!",
    "Hope your week's going well!",
    "Happy Wednesday, we're halfway through the week!",
    "The weekend's almost here!",
    "Happy Friday!",
    "Hope you're having a great Saturday!",
    "Hope you're having a relaxing Sunday!",
)
# By store-local month (January first); seasonal, not live weather (the Node service had no
# weather feed either), and written for the northern hemisphere the chain's stores are in.
_WINTER = "Hope you're staying dry out there, it's a good season for a tune-up!"
_SPRING = "Riding season is starting up!"
_SUMMER = "Perfect weather for a ride!"
_FALL = "Great fall riding weather lately!"
WEATHER_CONTEXT = (
    _WINTER, _WINTER, _SPRING, _SPRING, _SPRING, _SUMMER,
    _SUMMER, _SUMMER, _FALL, _FALL, _FALL, _WINTER,
)  # fmt: skip
# The closing phrase of an inbound first sentence, without its question mark (the replaced
# service's format: agents write `{{greeting_variation}}?`); which one a call gets comes from
# its id.
INBOUND_VARIATIONS = ("What's up", "How can I help you today", "What can I do for you")
# A follow-up call's question when no bike interest is known, in the same format.
OUTBOUND_VARIATIONS = (
    "Do you have a minute to pick up where we left off",
    "Is now a good time to follow up on our last chat",
)
# Stripped from the ends of a name or bike type that is spoken inside a phrase.
_PUNCTUATION = ".,;:!?\"'()[]{}"
# Bike types that name no bike (post-call analysis writes "unsure" when it learned nothing).
_NO_BIKE = frozenset({"unsure", "not sure", "unknown", "none", "n/a"})


def month_name(moment: datetime) -> str:
    """``January``."""
    return MONTH_NAMES[moment.month - 1]


def time_greeting(local: datetime) -> str:
    """``Good morning!`` (before noon), ``Good afternoon!`` (before 5 PM), ``Good evening!``."""
    if local.hour < 12:
        return "Good morning!"
    if local.hour < 17:
        return "Good afternoon!"
    return "Good evening!"


def day_context(local: datetime) -> str:
    """The weekday's phrase."""
    return DAY_CONTEXT[local.weekday()]


def weather_context(local: datetime) -> str:
    """The season's phrase (by store-local month)."""
    return WEATHER_CONTEXT[local.month - 1]


def first_name(customer_name: str) -> str:
    """The first word of a customer's name without punctuation (``Ada Lovelace`` -> ``Ada``)."""
    for word in customer_name.split():
        # "Ada," or "Ada!" would double the greeting's own punctuation ("Hey Ada!!").
        word = word.strip(_PUNCTUATION)
        if word:
            return word
    return ""


def customer_greeting(customer_name: str) -> str:
    """The customer's first name alone (``Ada``), or empty without a name."""
    return first_name(customer_name)


def greeting_opener(customer_name: str) -> str:
    """``Hey Ada!``, or ``Hey there!`` without a name."""
    return f"Hey {first_name(customer_name) or 'there'}!"


def variation(call_id: str, choices: Sequence[str]) -> str:
    """One of ``choices``, the same for every retry of one call (SHA-256 of its id)."""
    digest = hashlib.sha256(call_id.encode("utf-8", "replace")).digest()
    return choices[int.from_bytes(digest[:4], "big") % len(choices)]


def bike_phrase(bike_interest: str) -> str:
    """``the gravel bike`` / ``the e-bike``; empty when no bike is known."""
    bike = " ".join(bike_interest.split()).strip(_PUNCTUATION)
    if not bike or bike.casefold() in _NO_BIKE:
        return ""
    return f"the {bike}" if bike.casefold().endswith("bike") else f"the {bike} bike"


@lru_cache(maxsize=256)  # one answer asks twice (the variable, and inside the greeting)
def greeting_variation(call_id: str, outbound: bool, bike_interest: str = "") -> str:
    """The first sentence's closing question without its ``?``, derived from the call.

    A follow-up call asks about the bike the customer asked about when one is known.
    """
    if not outbound:
        return variation(call_id, INBOUND_VARIATIONS)
    bike = bike_phrase(bike_interest)
    if bike:
        return f"Do you have a minute to talk about {bike} you asked about"
    return variation(call_id, OUTBOUND_VARIATIONS)


def who_we_are(spoken_name: str, channel: str, outbound: bool) -> str:
    """``Thanks for calling <store>`` (or texting); on a follow-up, who is calling.

    Without an ending: :func:`sentences` ends it, unless the name already does ("Bikes Inc.").
    """
    if outbound:
        return f"It's {spoken_name} calling you back"
    return f"Thanks for {'texting' if channel == 'sms' else 'calling'} {spoken_name}"


def sentences(*pieces: str) -> str:
    """The non-empty ``pieces`` as sentences, one space between, each one ended once.

    A piece that already ends in ``.``, ``!`` or ``?`` keeps its ending (a store named
    "Bikes Inc." must not read "Bikes Inc.."); any other gets a full stop. Pieces are single
    lines (a store's spoken name is made one by the caller, once per store).
    """
    return " ".join([piece if piece[-1] in ".!?" else piece + "." for piece in pieces if piece])


def dynamic_greeting(
    *,
    customer_name: str,
    spoken_name: str,
    local: datetime,
    week: Week,
    call_id: str,
    channel: str = "voice",
    outbound: bool = False,
    bike_interest: str = "",
    status: str | None = None,
) -> str:
    """The complete first sentence the agent says.

    Inbound: ``Hey Ada! Thanks for calling <store>. <day context> <store status> What's up?``;
    a follow-up call: greeting, who is calling, and whether now is a good time.
    ``status`` is :func:`store_status` of ``week`` at ``local`` when the caller has it already.
    """
    question = greeting_variation(call_id, outbound, bike_interest) + "?"
    if outbound:
        return sentences(
            greeting_opener(customer_name), who_we_are(spoken_name, channel, True), question
        )
    return sentences(
        greeting_opener(customer_name),
        who_we_are(spoken_name, channel, False),
        day_context(local),
        store_status(week, local) if status is None else status,
        question,
    )
