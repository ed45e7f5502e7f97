"""The initiation's one-route dispatch answers exactly what the Powertools resolver answers."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from leadlookup.api.http import create_resolver, single_route
from leadlookup.errors import InvalidInput, PayloadTooLarge, Unauthorized, Unavailable

ROOT = Path(__file__).resolve().parents[2]
METHOD, PATH = "POST", "/webhooks/elevenlabs/conversation-initiation"
SAMPLE = json.loads((ROOT / "events" / "conversation_initiation" / "known_caller.json").read_text())


def _event(method: str = METHOD, path: str = PATH, stage: str = "$default") -> dict[str, Any]:
    event = copy.deepcopy(SAMPLE)
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["stage"] = stage
    event["rawPath"] = path if stage == "$default" else f"/{stage}{path}"
    return event


def _raising(exc: Exception) -> Callable[[], Any]:
    def answer() -> Any:
        raise exc

    return answer


ANSWERS: dict[str, Callable[[], Any]] = {
    "ok": lambda: {"type": "conversation_initiation_client_data", "dynamic_variables": {"a": "1"}},
    "400": _raising(InvalidInput("body is not valid JSON")),
    "401": _raising(Unauthorized("missing or wrong webhook secret")),
    "413": _raising(PayloadTooLarge("body is larger than 65536 bytes")),
    "503": _raising(Unavailable("database did not answer in time")),
    "bug": _raising(RuntimeError("contains +16045550142")),
}
EVENTS: dict[str, dict[str, Any]] = {
    "the route": _event(),
    "GET on the route": _event(method="GET"),
    "another path": _event(path="/webhooks/elevenlabs/conversation-initiation/x"),
    "a trailing slash": _event(path=PATH + "/"),
    "a named stage": _event(stage="live"),
}


def _resolved(event: dict[str, Any], answer: Callable[[], Any]) -> dict[str, Any]:
    app = create_resolver()
    app.post(PATH)(answer)
    return app.resolve(event, None)


@pytest.mark.parametrize("answer", list(ANSWERS), ids=list(ANSWERS))
@pytest.mark.parametrize("event", list(EVENTS), ids=list(EVENTS))
def test_single_route_answers_as_the_resolver_does(event: str, answer: str) -> None:
    expected = _resolved(EVENTS[event], ANSWERS[answer])

    assert single_route(EVENTS[event], METHOD, PATH, ANSWERS[answer]) == expected


def test_single_route_status_codes_name_the_problem() -> None:
    statuses = {
        name: single_route(_event(), METHOD, PATH, answer)["statusCode"]
        for name, answer in ANSWERS.items()
    }
    not_found = single_route(_event(method="GET"), METHOD, PATH, ANSWERS["ok"])

    assert statuses == {"ok": 200, "400": 400, "401": 401, "413": 413, "503": 503, "bug": 500}
    assert json.loads(not_found["body"]) == {"message": "route not found"}
    bug = single_route(_event(), METHOD, PATH, ANSWERS["bug"])
    assert json.loads(bug["body"]) == {"message": "internal error"}  # the text never leaks
