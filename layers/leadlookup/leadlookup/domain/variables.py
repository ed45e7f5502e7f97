"""The agent's dynamic variables: one builder for calls (initiation webhook) and texts (replies).

Every answer (voice inbound or outbound, degraded) and every SMS reply job carries exactly
:data:`DYNAMIC_VARIABLE_KEYS`, every value a string: ElevenLabs fails a conversation whose
agent variables are missing, one agent serves calls and texts alike, and the store's agent was
configured for the Node service's variables (33 names) plus two its prompt uses that the Node
service never sent (``store_greeting``, ``location_address_formatted``); ``lead_id``,
``business_hours_today``, ``timezone``, ``channel`` and ``recent_messages`` are ours. Values
are a pure function of (organization, lead, time, call, recent texts), so a retried webhook
answers the same. The greeting phrases (the first sentence and its parts) live here too, at the
end: they are variables the agent concatenates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from leadlookup.domain import hours
from leadlookup.domain.hours import Week, store_status
from leadlookup.domain.models import Lead, Organization
from leadlookup.domain.status import QUALIFIED_STATUSES

DYNAMIC_VARIABLE_KEYS = (
    # The caller
    "customer_name",
    "has_customer_name",
    "customer_phone",
    "customer_greeting",
    "lead_id",
    "lead_status",
    "qualification_status",
    "bike_interest",
    "interaction_count",
    "last_contact",
    "last_topic",
    "previous_summary",
    "customer_history",
    "conversation_context",
    # The store
    "organization_id",
    "organization_name",
    "location_address",
    "location_address_formatted",
    "business_hours",
    "business_hours_today",
    "store_is_open",
    "store_status",
    "store_greeting",
    "store_hours_info",
    # The moment, in the store's time zone
    "current_time",
    "current_day",
    "current_date",
    "current_datetime",
    "full_datetime",
    "timezone",
    # The conversation and its first sentence
    "channel",
    "recent_messages",
    "is_outbound",
    "call_type",
    "dynamic_greeting",
    "time_greeting",
    "day_context",
    "weather_context",
    "greeting_opener",
    "greeting_variation",
)
CONTEXT_MAX_CHARS = 1500
FIRST_INTERACTION = "This is the first interaction with this customer."
NO_CALLER_CONTEXT = "The caller's number is unknown, so there is no history to go on."
_FALLBACK_ZONE = "America/Vancouver"
_TOPIC_MAX_CHARS = 120


def store_zone(org: Organization) -> ZoneInfo:
    """The organization's time zone (Vancouver when its setting is not a known zone)."""
    try:
        return ZoneInfo(org.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(_FALLBACK_ZONE)


@dataclass(frozen=True)
class _StoreFacts:
    """What an answer says of a store whatever the moment or the caller."""

    zone: ZoneInfo
    week: hours.Week
    business_hours: str
    address: str
    address_line: str
    # On one line: the greeting joins its sentences without normalizing each answer's text.
    spoken_name: str
    # By weekday, Monday first: "8:00 AM - 6:00 PM" / "Closed", and the same as a sentence.
    day_hours: tuple[str, ...]
    day_hours_info: tuple[str, ...]


# Parsing a store's week and phrasing it were nearly half of an answer's variables; a warm
# container answers for the same few Organization objects (the in-process L1 hands out the
# same one until it expires), so the facts are kept per object. The entry holds the object,
# so its id cannot be reused while the entry exists.
_FACTS: dict[int, tuple[Organization, _StoreFacts]] = {}
_FACTS_MAX = 64


def _store_facts(org: Organization) -> _StoreFacts:
    entry = _FACTS.get(id(org))
    if entry is not None and entry[0] is org:
        return entry[1]
    week = hours.week_hours(org.settings)
    address = _setting_text(org, "address")
    facts = _StoreFacts(
        zone=store_zone(org),
        week=week,
        business_hours=hours.week_hours_text(week),
        address=address,
        address_line=one_line(_setting_text(org, "address_formatted") or address),
        spoken_name=" ".join(org.spoken_name.split()),
        day_hours=tuple(hours.hours_text(day) for day in week),
        day_hours_info=tuple(hours.hours_info(day) for day in week),
    )
    if len(_FACTS) >= _FACTS_MAX:
        _FACTS.clear()
    _FACTS[id(org)] = (org, facts)
    return facts


def _setting_text(org: Organization, name: str) -> str:
    value = org.settings.get(name)
    return value if isinstance(value, str) else ""


def one_line(address: str) -> str:
    """An address as one line for directions: its lines joined with commas, spaces single."""
    lines = (" ".join(line.split()).strip(" ,") for line in address.splitlines())
    return ", ".join(line for line in lines if line)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def age_text(then: datetime, now: datetime) -> str:
    """How long ago ``then`` was, as said aloud: ``just now``, ``3 hours ago``, ``yesterday``."""
    seconds = (now - then).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return _plural(int(seconds // 60), "minute") + " ago"
    if seconds < 86400:
        return _plural(int(seconds // 3600), "hour") + " ago"
    days = int(seconds // 86400)
    if days == 1:
        return "yesterday"
    if days < 14:
        return f"{days} days ago"
    if days < 60:
        return _plural(days // 7, "week") + " ago"
    return _plural(days // 30, "month") + " ago"


def _when(item: dict[str, Any]) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(item.get("at")))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def _history_line(item: dict[str, Any], now: datetime) -> str | None:
    text = " ".join(str(item.get("text") or "").split())
    at = _when(item)
    if not text or at is None:
        return None
    age = age_text(at, now)
    kind = item.get("kind")
    if kind == "call":
        label = f" ({item['classification']})" if item.get("classification") else ""
        return f"Call {age}{label}: {text}"
    if kind == "inbound":
        return f'Customer texted {age}: "{text}"'
    if kind == "outbound":
        return f'We texted {age}: "{text}"'
    return None


def conversation_context(lead: Lead | None, now: datetime) -> str:
    """The customer's recent history, newest first, at most :data:`CONTEXT_MAX_CHARS`.

    Call summaries with their classification and age, the last inbound and outbound texts;
    a lead imported with only a summary shows that summary.
    """
    if lead is None:
        return NO_CALLER_CONTEXT
    lines = [line for item in lead.history if (line := _history_line(item, now))]
    if not lines and lead.last_summary:
        lines = [f"Earlier call summary: {' '.join(lead.last_summary.split())}"]
    if not lines:
        return FIRST_INTERACTION
    text = ""
    for line in lines:
        joined = f"{text}\n{line}" if text else line
        if len(joined) <= CONTEXT_MAX_CHARS:
            text = joined
            continue
        room = CONTEXT_MAX_CHARS - len(text) - (1 if text else 0)
        if room >= 40:
            # Part of an older line still says more than nothing; the cut is marked.
            cut = line[: room - 3].rstrip() + "..."
            text = f"{text}\n{cut}" if text else cut
        break
    return text


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 3].rsplit(" ", 1)[0]
    return cut + "..."


def last_topic(lead: Lead | None) -> str:
    """What the customer last talked about: the newest call summary or text they sent."""
    if lead is None:
        return ""
    for item in lead.history:
        if item.get("kind") in ("call", "inbound") and item.get("text"):
            return _shorten(str(item["text"]), _TOPIC_MAX_CHARS)
    return _shorten(lead.last_summary or "", _TOPIC_MAX_CHARS)


def qualification_status(lead: Lead | None) -> str:
    """``qualified`` or ``not yet qualified``, with the budget and timeline when known."""
    status = lead.status if lead else "new"
    word = "qualified" if status in QUALIFIED_STATUSES else "not yet qualified"
    data = lead.qualification_data if lead else {}
    if not data:
        return word
    details = [
        f"{label} {data[key]}"
        for key, label in (("budget_range", "budget"), ("timeline", "timeline"))
        if isinstance(data.get(key), str | int | float) and str(data[key]).strip()
    ]
    return f"{word} ({', '.join(details)})" if details else word


def customer_history(lead: Lead | None, now: datetime) -> str:
    """One sentence about who this is: new, or returning with how much history."""
    if lead is None:
        return "Unknown caller: the number is withheld or not a phone number."
    texts = sum(1 for item in lead.history if item.get("kind") == "inbound")
    if lead.interaction_count == 0 and not lead.history and lead.last_contact_at is None:
        return "New customer: this is their first contact."
    parts = [_plural(lead.interaction_count, "previous call")] if lead.interaction_count else []
    if texts:
        parts.append("has texted us")
    parts.append(f"status {lead.status}")
    if lead.last_contact_at is not None:
        parts.append(f"last contact {age_text(lead.last_contact_at, now)}")
    return f"Returning customer: {', '.join(parts)}."


def build_variables(
    org: Organization,
    lead: Lead | None,
    now_utc: datetime,
    *,
    channel: str = "voice",
    call_id: str = "",
    outbound: bool = False,
    recent_messages: str = "",
) -> dict[str, str]:
    """Every key of :data:`DYNAMIC_VARIABLE_KEYS`, every value a string.

    ``lead`` None is an anonymous caller (or the degraded answer). ``channel`` is ``voice``
    or ``sms``; ``call_id`` (the call SID or MessageSid) seeds the greeting's variation;
    ``outbound`` marks a follow-up call the store placed; ``recent_messages`` is the recent
    texts of an SMS conversation, one per line (empty on calls).
    """
    store = _store_facts(org)
    channel = "sms" if channel == "sms" else "voice"
    local = now_utc.astimezone(store.zone)
    week = store.week
    weekday = local.weekday()
    name = (lead.customer_name or "").strip() if lead else ""
    bike = str((lead.bike_interest or {}).get("type") or "").strip() if lead else ""
    call_type = "outbound_followup" if outbound else ("sms" if channel == "sms" else "inbound")
    moment = hours.at(week, local)
    clock, day, status = moment.clock, moment.day, moment.status
    said = phrases(
        customer_name=name,
        spoken_name=store.spoken_name,
        local=local,
        week=week,
        call_id=call_id,
        channel=channel,
        outbound=outbound,
        bike_interest=bike,
        status=status,
    )
    month = said.pop("current_month")
    minute = local.isoformat(timespec="minutes")  # YYYY-MM-DDTHH:MM, then the UTC offset
    return {
        "customer_name": name,
        "has_customer_name": "true" if name else "false",
        "customer_phone": f"+{lead.phone_number_normalized}" if lead else "",
        "customer_greeting": said["customer_greeting"],
        "lead_id": lead.id if lead else "",
        "lead_status": lead.status if lead else "new",
        "qualification_status": qualification_status(lead),
        "bike_interest": bike,
        "interaction_count": str(lead.interaction_count) if lead else "0",
        "last_contact": (
            age_text(lead.last_contact_at, now_utc) if lead and lead.last_contact_at else ""
        ),
        "last_topic": last_topic(lead),
        "previous_summary": (lead.last_summary or "") if lead else "",
        "customer_history": customer_history(lead, now_utc),
        "conversation_context": conversation_context(lead, now_utc),
        "organization_id": org.id,
        "organization_name": org.name,
        "location_address": store.address,
        "location_address_formatted": store.address_line,
        "business_hours": store.business_hours,
        "business_hours_today": store.day_hours[weekday],
        "store_is_open": "true" if moment.open else "false",
        "store_status": status,
        # The store's live agent still reads this older name for the same sentence.
        "store_greeting": status,
        "store_hours_info": store.day_hours_info[weekday],
        "current_time": clock,
        "current_day": day,
        "current_date": f"{month} {local.day}, {local.year}",
        # To the minute, like every other time field: a retry seconds later answers the same.
        "current_datetime": f"{minute[:16]}:00{minute[16:]}",
        "full_datetime": (
            f"{day}, {month} {local.day}, {local.year} at {clock} {local.tzname() or ''}"
        ).rstrip(),
        "timezone": store.zone.key,
        "channel": channel,
        "recent_messages": recent_messages,
        "is_outbound": "true" if outbound else "false",
        "call_type": call_type,
        "dynamic_greeting": said["dynamic_greeting"],
        "time_greeting": said["time_greeting"],
        "day_context": said["day_context"],
        "weather_context": said["weather_context"],
        "greeting_opener": said["greeting_opener"],
        "greeting_variation": said["greeting_variation"],
    }


def with_every_key(variables: Mapping[str, Any], **known: str) -> dict[str, Any]:
    """``variables`` as they are, plus any key of :data:`DYNAMIC_VARIABLE_KEYS` they lack.

    For a job queued by an older version: a missing key takes its value from ``known``, else
    from the older key it repeats (``store_greeting``, ``location_address_formatted``), else
    the empty string, so the conversation still opens.
    """
    complete = dict(variables)
    derived = {
        "store_greeting": str(complete.get("store_status") or ""),
        "location_address_formatted": one_line(str(complete.get("location_address") or "")),
    }
    for key in DYNAMIC_VARIABLE_KEYS:
        if key not in complete:
            complete[key] = known.get(key, derived.get(key, ""))
    return complete


# -- the greeting phrases ------------------------------------------------------------------
# The spoken greeting and store-hours phrases of an answer, as pure functions of their inputs.
# Everything here is a function of the store's settings, the store-local time and the call:
# no clock, no randomness, no I/O (stdlib only: this sits on the initiation cold path). The
# Node service picked a greeting at random; a retried webhook must answer the same, so the
# variation is derived from the call's id instead.

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


def phrases(
    *,
    customer_name: str,
    spoken_name: str,
    local: datetime,
    week: Week,
    call_id: str,
    channel: str,
    outbound: bool,
    bike_interest: str,
    status: str,
) -> dict[str, str]:
    """Every greeting variable of one conversation, keyed as the agent reads them.

    ``status`` is the store's status at ``local`` (the caller has it already).
    """
    return {
        "customer_greeting": customer_greeting(customer_name),
        "dynamic_greeting": dynamic_greeting(
            customer_name=customer_name,
            spoken_name=spoken_name,
            local=local,
            week=week,
            call_id=call_id,
            channel=channel,
            outbound=outbound,
            bike_interest=bike_interest,
            status=status,
        ),
        "time_greeting": time_greeting(local),
        "day_context": day_context(local),
        "weather_context": weather_context(local),
        "greeting_opener": greeting_opener(customer_name),
        "greeting_variation": greeting_variation(call_id, outbound, bike_interest),
        "current_month": month_name(local),
    }


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
