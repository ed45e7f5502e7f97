"""What the post-call webhook queues: every field processing reads, within SQS's limit."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from leadlookup.adapters.queue import MAX_MESSAGE_BYTES, encode
from leadlookup.api import webhooks
from leadlookup.domain import call_report
from leadlookup.domain.models import PostCall

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = json.loads(
    json.loads((ROOT / "events/post_call_webhook/post_call_signed.json").read_text())["body"]
)


def call_of(body: dict[str, Any]) -> PostCall:
    call = call_report.parse_post_call(webhooks.parse_body(json.dumps(body).encode()))
    assert call is not None
    return call


def long_call(turns: int, words: str = "we talked about gravel bikes " * 20) -> dict[str, Any]:
    """The sample with ``turns`` turns, each as heavy as a real one with a tool call."""
    body = copy.deepcopy(SAMPLE)
    template = body["data"]["transcript"][0]
    body["data"]["transcript"] = [
        {
            **template,
            "role": "agent" if n % 2 else "user",
            "message": f"turn {n}: {words}",
            "time_in_call_secs": n,
            "tool_calls": [{"tool_name": "lookup", "params_as_json": "x" * 400}],
            "llm_usage": {"model_usage": {"gpt": {"input": {"tokens": n}}}},
        }
        for n in range(turns)
    ]
    return body


def test_post_call_message_of_a_short_call_is_the_call_whole() -> None:
    call = call_of(SAMPLE)

    message = webhooks.queued_message(call)

    assert PostCall.from_json(json.loads(encode(message))) == call


def test_post_call_message_of_a_long_call_fits_and_keeps_its_start_and_end() -> None:
    body = long_call(4000)
    call = call_of(body)
    assert len(json.dumps(call.to_json())) > 4 * MAX_MESSAGE_BYTES

    message = json.loads(encode(webhooks.queued_message(call)))

    stored = PostCall.from_json(message)
    assert stored == PostCall(**{**call.__dict__, "payload": stored.payload})
    turns = stored.payload["data"]["transcript"]
    trimmed = stored.payload["trimmed"]
    assert trimmed["transcript_turns"] == 4000
    assert trimmed["kept_first"] + trimmed["kept_last"] == len(turns) > 100
    assert turns[0]["message"].startswith("turn 0:")
    assert turns[-1]["message"].startswith("turn 3999:")
    assert set(turns[0]) == set(webhooks.TURN_KEYS)
    assert stored.payload["data"]["analysis"] == body["data"]["analysis"]
    # As many turns as fit: one more would not.
    assert len(encode(message)) > MAX_MESSAGE_BYTES - 2 * len(json.dumps(turns[0]))


def test_post_call_message_cuts_a_monologue_turn() -> None:
    call = call_of(long_call(3, words="x" * 100_000))

    message = webhooks.queued_message(call)

    turns = message["payload"]["data"]["transcript"]
    assert [len(t["message"]) for t in turns] == [webhooks.MAX_TURN_CHARS] * 3


def test_post_call_message_with_huge_other_parts_keeps_only_ids_in_the_payload() -> None:
    body = copy.deepcopy(SAMPLE)
    body["data"]["metadata"]["notes"] = "n" * (2 * MAX_MESSAGE_BYTES)
    call = call_of(body)

    message = json.loads(encode(webhooks.queued_message(call)))

    data = message["payload"]["data"]
    assert {k: data[k] for k in ("agent_id", "conversation_id", "status")} == {
        "agent_id": SAMPLE["data"]["agent_id"],
        "conversation_id": SAMPLE["data"]["conversation_id"],
        "status": "done",
    }
    results = SAMPLE["data"]["analysis"]["data_collection_results"]
    assert data["analysis"]["data_collection_results"] == {
        name: {"value": entry["value"]} for name, entry in results.items()
    }
    assert set(data) == {"agent_id", "conversation_id", "status", "analysis"}
    assert "metadata" in message["payload"]["trimmed"]["dropped"]
    assert (message["summary"], message["status"]) == (call.summary, call.status)
    # Decided before the trimming: the phone line and the transcript are gone from the payload.
    assert (message["channel"], message["reached"]) == ("phone", True)


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ([], "JSON object"),
        ({}, "'conversation_id'"),
        ({"conversation_id": ""}, "'conversation_id'"),
        ({"conversation_id": "c", "summary": 5}, "'summary'"),
        ({"conversation_id": "c", "payload": []}, "'payload'"),
        ({"conversation_id": "c", "bike_interest": "gravel"}, "'bike_interest'"),
        ({"conversation_id": "c", "channel": "fax"}, "'channel'"),
        ({"conversation_id": "c", "channel": ["sms"]}, "'channel'"),
        ({"conversation_id": "c", "reached": "yes"}, "'reached'"),
        ({"conversation_id": "c", "callback_requested": 1}, "'callback_requested'"),
    ],
)
def test_post_call_message_refused_names_the_field(message: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        PostCall.from_json(message)


def test_post_call_message_queued_before_channels_is_still_a_call() -> None:
    # What the webhook queued before reports had a channel: every one was counted as a call.
    older = {k: v for k, v in call_of(SAMPLE).to_json().items() if k not in NEW_KEYS}

    call = PostCall.from_json(older)

    assert (call.channel, call.reached, call.callback_requested) == ("phone", False, False)
    assert call.status == "qualified"


NEW_KEYS = ("channel", "reached", "callback_requested")
