"""A JSON body that cannot be parsed is a 400 naming the real cause, on every JSON route.

The two causes a sender cannot guess from "not valid JSON": a UTF-8 byte order mark in front
(JSON forbids it), and nesting deeper than the parser's recursion allows (a RecursionError,
which once answered "not valid JSON" too). Both go through one parse, ``api.http.parse_json``,
used by the initiation and lead bodies (``json_object``) and the post-call webhook
(``parse_body``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from devkit.postcall_events import sign_elevenlabs
from leadlookup.api.http import BOM_MESSAGE, MAX_JSON_DEPTH, TOO_DEEP_MESSAGE, parse_json
from leadlookup.errors import InvalidInput
from tests.support.faults import initiation_event, new_phone, patch_event, sample

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]

BOM = "\ufeff"
# Far deeper than json.loads can recurse (about 10,000 levels on CPython 3.13), still under
# MAX_BODY_BYTES (64 KiB).
TOO_DEEP_FOR_THE_PARSER = 25_000


def _nested(depth: int) -> str:
    return '{"a":' + "[" * depth + "]" * depth + "}"


def _initiation(body: str) -> tuple[str, dict[str, Any]]:
    event = initiation_event(new_phone())
    event["body"] = body
    return "conversation_initiation", event


def _lead_patch(body: str) -> tuple[str, dict[str, Any]]:
    return "lead_update", patch_event(str(uuid.uuid4()), body)


def _post_call(body: str) -> tuple[str, dict[str, Any]]:
    # Signed as ElevenLabs signs: over the raw body, BOM included.
    event = sample("post_call_webhook/post_call_signed")
    now = int(time.time())
    event["body"] = body
    event["headers"] = {
        **event["headers"],
        "content-length": str(len(body.encode())),
        "elevenlabs-signature": sign_elevenlabs(body, "test-elevenlabs-secret", now),
    }
    return "post_call_webhook", event


ROUTES = {"initiation": _initiation, "lead PATCH": _lead_patch, "post-call": _post_call}
VALID = {
    "initiation": json.dumps({"caller_id": "+16045550142", "called_number": "+17786528784"}),
    "lead PATCH": json.dumps({"notes": "x"}),
    "post-call": sample("post_call_webhook/post_call_signed")["body"],
}


def _rejection(response: dict[str, Any]) -> tuple[int, Any]:
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.parametrize("route", list(ROUTES))
def test_parse_errors_a_body_with_a_byte_order_mark_is_named_as_such(
    app_env: dict[str, str], invoke: Invoke, route: str
) -> None:
    function_dir, event = ROUTES[route](BOM + VALID[route])

    answer = invoke(function_dir, event)

    assert _rejection(answer) == (400, {"message": BOM_MESSAGE})


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, TOO_DEEP_FOR_THE_PARSER])
def test_parse_errors_a_body_nested_too_deep_is_named_as_such(
    app_env: dict[str, str], invoke: Invoke, route: str, depth: int
) -> None:
    function_dir, event = ROUTES[route](_nested(depth))

    answer = invoke(function_dir, event)

    assert _rejection(answer) == (400, {"message": TOO_DEEP_MESSAGE})


@pytest.mark.parametrize("route", list(ROUTES))
def test_parse_errors_other_broken_json_is_still_not_valid_json(
    app_env: dict[str, str], invoke: Invoke, route: str
) -> None:
    function_dir, event = ROUTES[route]('{"a": 1,}')

    answer = invoke(function_dir, event)

    assert _rejection(answer) == (400, {"message": "body is not valid JSON"})


def test_parse_json_names_each_cause() -> None:
    causes = {}
    for name, text in {
        "bom": BOM + "{}",
        "deep": "[" * TOO_DEEP_FOR_THE_PARSER + "]" * TOO_DEEP_FOR_THE_PARSER,
        "broken": "{",
        "bom inside a string is fine": '{"a": "\\ufeff"}',
    }.items():
        try:
            causes[name] = parse_json(text)
        except InvalidInput as exc:
            causes[name] = str(exc)

    assert causes == {
        "bom": BOM_MESSAGE,
        "deep": TOO_DEEP_MESSAGE,
        "broken": "body is not valid JSON",
        "bom inside a string is fine": {"a": BOM},
    }
