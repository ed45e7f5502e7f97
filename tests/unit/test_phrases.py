"""The phrase variables as agents concatenate them in first messages, at every hour and day.

Agents of the replaced service build their first message from the phrase variables, e.g.
``{{greeting_opener}} {{time_greeting}} {{day_context}} {{greeting_variation}}?``; each phrase
must bring its own ending (or none, for the variation) so that no caller, hour or store makes
the sentence read "??", "!!" or "!.".
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from leadlookup.domain.models import Lead, Organization, default_organization_snapshot
from leadlookup.domain.variables import build_variables

VANCOUVER = ZoneInfo("America/Vancouver")
SEEDED = Organization.from_json(default_organization_snapshot())
# A store whose spoken name ends in a full stop and that has no hours (no store status).
ODD = Organization.from_json(
    default_organization_snapshot()
    | {"settings": {"spoken_name": "Bikes Inc.", "timezone": "America/Vancouver"}}
)
KNOWN = Lead(
    id="5e1f0000-0000-4000-8000-0000000000a1",
    organization_id=SEEDED.id,
    phone_number="+16045550142",
    phone_number_normalized="16045550142",
    customer_name="Ada Lovelace",
    status="qualified",
    bike_interest={"type": "gravel"},
    interaction_count=2,
)
NEW = Lead(
    id="5e1f0000-0000-4000-8000-0000000000a2",
    organization_id=SEEDED.id,
    phone_number="+16045550199",
    phone_number_normalized="16045550199",
)
CALLERS: dict[str, tuple[Lead | None, dict[str, Any]]] = {
    "known": (KNOWN, {}),
    "new": (NEW, {}),
    "anonymous": (None, {}),
    "outbound": (KNOWN, {"outbound": True}),
    "outbound, nothing known": (NEW, {"outbound": True}),
    "text": (KNOWN, {"channel": "sms"}),
}
# The first messages agents write: the replaced service's phrase concatenations, with and
# without the trailing "?", and the one-variable first message of the store's live agent.
TEMPLATES = (
    "{{greeting_opener}} {{time_greeting}} {{day_context}} {{greeting_variation}}?",
    "{{greeting_opener}} {{time_greeting}} {{day_context}} {{greeting_variation}}",
    "{{greeting_opener}} {{time_greeting}} {{weather_context}} {{greeting_variation}}?",
    "{{greeting_opener}} {{time_greeting}} {{greeting_variation}}?",
    "{{dynamic_greeting}}",
)
# Store-local hours: before opening, morning, noon, the 5 PM turn, late evening, after midnight.
HOURS = ((6, 30), (9, 15), (12, 0), (16, 59), (17, 0), (23, 45), (0, 10))
# Monday 2026-11-23 to Sunday 2026-11-29, and a summer week (daylight saving, other seasons).
WEEKS = (datetime(2026, 11, 23, tzinfo=VANCOUVER), datetime(2026, 6, 1, tzinfo=VANCOUVER))
DOUBLED = re.compile(r"\?\?|!!|\.!|!\.|\.\.|\?\.|\.\?|\s{2}")


def _render(template: str, variables: dict[str, str]) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda match: variables[match.group(1)], template)


def _moments() -> list[datetime]:
    return [
        week.replace(hour=hour, minute=minute) + timedelta(days=day)
        for week in WEEKS
        for day in range(7)
        for hour, minute in HOURS
    ]


@pytest.mark.parametrize("store", [SEEDED, ODD], ids=["seeded store", "odd store"])
@pytest.mark.parametrize("caller", list(CALLERS))
def test_phrases_concatenate_without_doubled_punctuation(caller: str, store: Organization) -> None:
    lead, kwargs = CALLERS[caller]
    bad: list[str] = []
    rendered = 0

    for n, moment in enumerate(_moments()):
        variables = build_variables(store, lead, moment, call_id=f"CA{n:032x}", **kwargs)
        for template in TEMPLATES:
            text = _render(template, variables)
            rendered += 1
            if DOUBLED.search(text) or text != text.strip() or "Lovelace" in text:
                bad.append(f"{moment:%a %H:%M}: {text!r}")

    assert rendered == len(_moments()) * len(TEMPLATES) == 490
    assert bad == []


@pytest.mark.parametrize("caller", list(CALLERS))
def test_phrases_keep_the_replaced_services_formats(caller: str) -> None:
    lead, kwargs = CALLERS[caller]
    named = lead is not None and bool(lead.customer_name)

    for n, moment in enumerate(_moments()):
        v = build_variables(SEEDED, lead, moment, call_id=f"CA{n:032x}", **kwargs)

        assert v["customer_greeting"] == ("Ada" if named else "")
        assert v["greeting_opener"] == ("Hey Ada!" if named else "Hey there!")
        assert v["time_greeting"] in ("Good morning!", "Good afternoon!", "Good evening!")
        assert v["greeting_variation"] and v["greeting_variation"][-1] not in ".!? "
        assert v["day_context"][-1] in "!?" and v["weather_context"][-1] in "!?"
        assert v["dynamic_greeting"].startswith(v["greeting_opener"] + " ")
        assert v["dynamic_greeting"].endswith(" " + v["greeting_variation"] + "?")


def test_phrases_render_the_sales_agents_first_message() -> None:
    friday_evening = datetime(2026, 11, 27, 18, 30, tzinfo=VANCOUVER)
    call_id = "CA" + "0" * 32

    known = build_variables(SEEDED, KNOWN, friday_evening, call_id=call_id)
    anonymous = build_variables(SEEDED, None, friday_evening, call_id=call_id)

    template = TEMPLATES[0]
    assert _render(template, known) == (
        f"Hey Ada! Good evening! Happy Friday! {known['greeting_variation']}?"
    )
    assert _render(template, anonymous).startswith("Hey there! Good evening! Happy Friday! ")
