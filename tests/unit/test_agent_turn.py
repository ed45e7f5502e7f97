"""The agent's turn, read from scripted ElevenLabs events with a hand-moved clock (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from leadlookup.adapters.elevenlabs import AgentError, Turn, is_holding_phrase
from leadlookup.config import Settings
from leadlookup.domain.jobs import ReplyJob
from leadlookup.errors import InvalidInput

SETTLE = 1.5
GREETING = "Hey Ada! Thanks for calling Bee-chee Bike Store. What's up?"
TEXT = "is the Trek FX 3 in stock?"


def said(text: str) -> dict[str, Any]:
    return {"type": "agent_response", "agent_response_event": {"agent_response": text}}


def opened(turn: Turn, at: float = 0.0) -> list[dict[str, Any]]:
    return turn.receive({"type": "conversation_initiation_metadata"}, at)


def greeted_turn() -> Turn:
    turn = Turn(TEXT, SETTLE, GREETING)
    opened(turn)
    turn.receive(said(GREETING), 0.1)
    return turn


@pytest.mark.parametrize(
    "text",
    [
        "One moment, let me check that for you.",
        "Let me check our current Cannondale inventory for you...",
        "Great question! Give me a sec.",
        "Hold on while I look that up.",
        "Let me look that up \u2026",
    ],
)
def test_turn_holding_phrases_are_recognised(text: str) -> None:
    assert is_holding_phrase(text)


@pytest.mark.parametrize(
    "text",
    [
        # The store's prompt's own example: the result follows in the same response.
        "Let me check what sizes we have available for that model... I can see we have sizes "
        "S, M, L, XL in stock. Which size would work best for you?",
        "Let me have our bike tech call you back with exact specs.",
        "Let me see, what size are you looking for?",
        "We're open until 6:00 PM today.",
        "",
    ],
)
def test_turn_answers_are_not_holding_phrases(text: str) -> None:
    assert not is_holding_phrase(text)


def test_turn_text_goes_out_when_the_greeting_came() -> None:
    turn = Turn(TEXT, SETTLE, GREETING)
    opened(turn)

    frames = turn.receive(said(GREETING), 0.1)

    assert frames == [{"type": "user_message", "text": TEXT}]
    assert turn.answer() is None


def test_turn_without_a_greeting_sends_the_text_after_the_settle_window() -> None:
    turn = Turn(TEXT, SETTLE, None)
    opened(turn, 10.0)

    early = turn.tick(10.0 + SETTLE - 0.01)
    due = turn.wake_at()
    frames = turn.tick(10.0 + SETTLE)

    assert early == [] and due == 10.0 + SETTLE
    assert frames == [{"type": "user_message", "text": TEXT}]


def test_turn_answer_closes_after_the_settle_window() -> None:
    turn = greeted_turn()

    turn.receive(said("Yes, two in stock."), 2.0)

    assert not turn.over(2.0 + SETTLE - 0.01)
    assert turn.over(2.0 + SETTLE)
    assert turn.answer() == "Yes, two in stock."


def test_turn_answer_in_parts_is_joined_and_a_correction_replaces_its_part() -> None:
    turn = greeted_turn()

    turn.receive(said("Yes, two in stock."), 2.0)
    turn.receive(said("Want me to hold one?"), 2.1)
    turn.receive(
        {
            "type": "agent_response_correction",
            "agent_response_correction_event": {
                "original_agent_response": "Yes, two in stock.",
                "corrected_agent_response": "Yes, three in stock.",
            },
        },
        2.2,
    )

    assert turn.answer() == "Yes, three in stock. Want me to hold one?"


@pytest.mark.parametrize(
    "tool_event",
    [
        {"type": "agent_tool_request", "agent_tool_request": {"tool_name": "search"}},
        {"type": "agent_tool_response", "agent_tool_response": {"tool_name": "search"}},
        {"type": "mcp_tool_call", "mcp_tool_call": {"state": "loading"}},
    ],
)
def test_turn_speech_before_tool_activity_is_dropped(tool_event: dict[str, Any]) -> None:
    turn = greeted_turn()
    turn.receive(said("Sure, checking our stock now."), 2.0)

    frames = turn.receive(tool_event, 2.1)
    quiet = turn.over(10.0)
    turn.receive(said("Yes, two in stock."), 12.0)

    assert frames == [] and quiet is False
    assert turn.answer() == "Yes, two in stock."


def test_turn_holding_phrase_is_replaced_by_what_follows_it() -> None:
    turn = greeted_turn()

    turn.receive(said("One moment, let me check that for you."), 2.0)
    waiting = (turn.over(30.0), turn.answer())
    turn.receive(said("Yes, two in stock."), 31.0)

    assert waiting == (False, None)
    assert turn.answer() == "Yes, two in stock."


def test_turn_echo_marks_what_came_before_it_as_the_greeting() -> None:
    turn = Turn(TEXT, SETTLE, None)
    opened(turn)
    turn.tick(SETTLE)

    turn.receive(said("Hi! Ryder from BICI here."), 1.6)
    turn.receive({"type": "user_transcript", "user_transcription_event": {}}, 1.7)
    turn.receive(said("Yes, two in stock."), 2.5)

    assert turn.answer() == "Yes, two in stock."


def test_turn_late_greeting_is_known_by_its_text() -> None:
    turn = Turn(TEXT, SETTLE, GREETING)
    opened(turn)
    turn.tick(SETTLE)

    turn.receive(said("Yes, two in stock."), 1.6)
    turn.receive(said(" Hey Ada!  Thanks for calling Bee-chee Bike Store. What's up? "), 1.7)

    assert turn.answer() == "Yes, two in stock."


def test_turn_client_tool_is_refused_and_mcp_approval_denied() -> None:
    turn = greeted_turn()

    client = turn.receive(
        {"type": "client_tool_call", "client_tool_call": {"tool_call_id": "c1", "tool_name": "x"}},
        2.0,
    )
    mcp = turn.receive(
        {
            "type": "mcp_tool_call",
            "mcp_tool_call": {"tool_call_id": "m1", "state": "awaiting_approval"},
        },
        2.1,
    )

    assert [(f["type"], f["tool_call_id"], f["is_error"]) for f in client] == [
        ("client_tool_result", "c1", True)
    ]
    assert mcp == [{"type": "mcp_tool_approval_result", "tool_call_id": "m1", "is_approved": False}]


def test_turn_ping_gets_its_pong_and_an_error_event_raises() -> None:
    turn = greeted_turn()

    pong = turn.receive({"type": "ping", "ping_event": {"event_id": 7}}, 1.0)
    with pytest.raises(AgentError) as failure:
        turn.receive(
            {"type": "error", "error_event": {"code": 1002, "message": "llm_timeout"}}, 2.0
        )

    assert pong == [{"type": "pong", "event_id": 7}]
    assert failure.value.reason == "agent"
    assert "llm_timeout" in str(failure.value)


def test_turn_settings_default_and_parse() -> None:
    defaults = Settings.from_env({})
    custom = Settings.from_env(
        {"ELEVENLABS_API_URL": "http://127.0.0.1:3101/", "SMS_REPLY_SETTLE_MS": "250"}
    )

    assert (defaults.elevenlabs_api_url, defaults.sms_reply_settle_ms) == (
        "https://api.elevenlabs.io",
        1500,
    )
    assert (custom.elevenlabs_api_url, custom.sms_reply_settle_ms) == ("http://127.0.0.1:3101", 250)


@pytest.mark.parametrize(
    ("kind", "accepted"), [("agent", True), ("staff", False), ("follow_up", False)]
)
def test_reply_job_without_words_is_an_agent_job_only(kind: str, accepted: bool) -> None:
    job = {
        "key": "reply:MM1",
        "kind": kind,
        "organization_id": "b0c1b1c1-0000-0000-0000-000000000001",
        "lead_id": None,
        "to_number": "+16045550142",
        "from_number": "+17786528784",
        "body": "",
    }

    if accepted:
        assert ReplyJob.from_json(job).body == ""
    else:
        with pytest.raises(InvalidInput, match="'body' is required"):
            ReplyJob.from_json(job)
