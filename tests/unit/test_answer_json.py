"""The initiation answer's JSON text: what ``json.dumps`` writes, whatever the values say."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadlookup.api.http import JsonText, json_response
from leadlookup.domain.models import Organization, default_organization_snapshot
from leadlookup.domain.variables import DYNAMIC_VARIABLE_KEYS
from leadlookup.usecases import initiation

STORE = Organization.from_json(default_organization_snapshot())
NOW = datetime(2026, 11, 25, 22, 5, tzinfo=UTC)


def _dumped(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), default=str)


def _body(values: list[str]) -> dict[str, Any]:
    return {
        "type": initiation.RESPONSE_TYPE,
        "dynamic_variables": dict(zip(DYNAMIC_VARIABLE_KEYS, values, strict=True)),
    }


@given(
    st.lists(
        st.text(alphabet=st.characters(codec=None)),  # any code point, lone surrogates too
        min_size=len(DYNAMIC_VARIABLE_KEYS),
        max_size=len(DYNAMIC_VARIABLE_KEYS),
    )
)
def test_answer_json_is_the_text_json_dumps_writes(values: list[str]) -> None:
    body = _body(values)

    text = initiation.answer_json(body)

    assert text == _dumped(body)
    assert json.loads(text) == body


def test_answer_json_of_a_built_answer_takes_the_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = initiation.answer(STORE, None, NOW, "CA0123")

    def whole_encoder(_value: Any) -> JsonText:
        raise AssertionError("the answer was encoded whole")

    monkeypatch.setattr(initiation, "json_text", whole_encoder)
    text = initiation.answer_json(body)

    assert text == _dumped(body)


@pytest.mark.parametrize(
    "change",
    [
        "override",  # a store's first-message override: a third member
        "reordered",  # names in another order
        "missing",  # a name left out
        "not_text",  # a value that is not a string
    ],
)
def test_answer_json_of_any_other_body_is_encoded_whole(change: str) -> None:
    body = initiation.answer(STORE, None, NOW, "CA0123")
    variables = body["dynamic_variables"]
    if change == "override":
        body["conversation_config_override"] = {"agent": {"first_message": "Hi 100%!"}}
    elif change == "reordered":
        body["dynamic_variables"] = dict(reversed(list(variables.items())))
    elif change == "missing":
        del variables["lead_id"]
    else:
        variables["interaction_count"] = 3

    text = initiation.answer_json(body)

    assert text == _dumped(body)
    assert json.loads(text) == body


def test_answer_json_is_sent_as_it_is() -> None:
    body = initiation.answer(STORE, None, NOW, "CA0123")

    response = json_response(200, initiation.answer_json(body))

    assert type(response.body) is str and response.body == _dumped(body)
