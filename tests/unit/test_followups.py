"""Follow-up topics and callback requests from a call's collected values (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from leadlookup.domain import followups

HOURS, DIRECTIONS, APPOINTMENT = followups.FOLLOW_UP_FLAGS


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # The live agent's own choices.
        ({"customer_triggers": "asked about store hours"}, [HOURS]),
        ({"customer_triggers": "asked for directions/location"}, [DIRECTIONS]),
        ({"customer_triggers": "wants to schedule appointment"}, [APPOINTMENT]),
        ({"follow_up_needed": "send store hours"}, [HOURS]),
        ({"follow_up_needed": "send directions with map links"}, [DIRECTIONS]),
        ({"follow_up_needed": "confirm appointment details"}, [APPOINTMENT]),
        (
            {
                "customer_triggers": "wants to schedule appointment, asked about store hours,"
                " asked for directions/location",
            },
            [HOURS, DIRECTIONS, APPOINTMENT],
        ),
        # Any case, other separators, the two fields together.
        (
            {"customer_triggers": "ASKED ABOUT STORE HOURS; Asked For Directions"},
            [HOURS, DIRECTIONS],
        ),
        (
            {"customer_triggers": "asked about store hours", "follow_up_needed": "send directions"},
            [HOURS, DIRECTIONS],
        ),
        # Topics without a text of their own, refusals, nothing at all.
        (
            {
                "customer_triggers": "inquired about prices, interested in test ride, has a "
                "complaint, needs general help",
                "follow_up_needed": "send price list",
            },
            [],
        ),
        ({"follow_up_needed": "no follow-up needed"}, []),
        ({"follow_up_needed": "None"}, []),
        ({"customer_triggers": "", "follow_up_needed": None}, []),
        ({"customer_triggers": ["asked about store hours"]}, []),
        # The boolean flags of agents configured for the replaced service still count.
        ({HOURS: True, DIRECTIONS: "true", APPOINTMENT: "no"}, [HOURS, DIRECTIONS]),
        (
            {APPOINTMENT: "Yes", "customer_triggers": "asked about store hours"},
            [HOURS, APPOINTMENT],
        ),
    ],
)
def test_followups_topics_from_phrases_and_flags(
    values: dict[str, Any], expected: list[str]
) -> None:
    assert followups.topics(values) == expected


@pytest.mark.parametrize(
    ("values", "wanted"),
    [
        ({"follow_up_needed": "arrange manager callback for escalation"}, True),
        ({"follow_up_needed": "Arrange Manager Callback"}, True),
        ({"customer_triggers": "has a complaint, wants a call back"}, True),
        ({"customer_triggers": "asked to speak to the manager"}, True),
        ({"customer_triggers": "has a complaint"}, False),
        (
            {"customer_triggers": "has a complaint", "follow_up_needed": "send thank you message"},
            False,
        ),
        ({"follow_up_needed": "no manager callback needed"}, False),
        ({"follow_up_needed": "no follow-up needed"}, False),
        ({}, False),
    ],
)
def test_followups_callback_request(values: dict[str, Any], wanted: bool) -> None:
    assert followups.wants_callback(values) is wanted


def test_followups_asked_reads_a_post_call_payload() -> None:
    payload = {
        "data": {
            "analysis": {
                "data_collection_results": {
                    "customer_triggers": {"value": "asked about store hours"},
                    "appointment_request": {"value": True},
                    "budget_range": {"value": "directions"},  # not a follow-up field
                }
            }
        }
    }

    assert followups.asked(payload) == [HOURS, APPOINTMENT]
