"""Outbound calls: POST /leads/{lead_id}/calls through the real handler, the caller against the
ElevenLabs stand-in, the outcome stored, the post-call report ending the call.

PostgreSQL and Redis are real; the agent is the loopback stand-in. Without queue URLs the job
goes to the caller in-process and its outcome straight to storage, as under ``make run``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pg8000.native
import pytest
from moto import mock_aws

from devkit import lambda_env
from devkit.runner import LocalApi
from devkit.standins import STANDIN_PHONE_NUMBER_ID, AgentStandIn
from leadlookup import container
from leadlookup.config import DEFAULT_ORGANIZATION_ID
from leadlookup.container import get_runtime
from leadlookup.domain import calls
from leadlookup.domain.access import StaffMember
from leadlookup.domain.calls import CallOutcome
from leadlookup.domain.models import PHONE, PostCall
from leadlookup.domain.variables import DYNAMIC_VARIABLE_KEYS
from leadlookup.errors import Conflict
from leadlookup.usecases import postcall
from leadlookup.usecases.caller import NOT_CONFIGURED
from leadlookup.usecases.calls import Calls
from tests.conftest import EVENTS, ROOT
from tests.support.faults import new_phone
from tests.support.moto_server import CREDENTIALS, REGION, moto_server
from tests.support.redis_servers import free_port
from tests.support.staff import as_member, claims_of

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]
FUNCTION = "lead_update"


@dataclass(frozen=True)
class Stores:
    """Two stores (A and B), each with one lead; A's lead has a name and a call behind it."""

    a: str
    b: str
    a_lead: str
    a_phone: str
    b_lead: str


@pytest.fixture
def call_env(
    app_env: dict[str, str], agent: AgentStandIn, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    env = {
        "ELEVENLABS_AGENT_ID": agent.agent_id,
        "ELEVENLABS_API_URL": agent.api_url,
        "ELEVENLABS_API_KEY": agent.api_key or "",
        "OUTBOUND_CALL_TIMEOUT_MS": "2000",
    }
    for name in (
        "OUTBOUND_CALL_QUEUE_URL",
        "REPLY_QUEUE_URL",
        "REPLY_OUTCOME_QUEUE_URL",
        "IDEMPOTENCY_TABLE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    container.set_runtime(None)
    yield {**app_env, **env}
    container.set_runtime(None)


def _store(db: pg8000.native.Connection, **settings: Any) -> str:
    org = str(uuid.uuid4())
    phone = new_phone()
    db.run(
        "INSERT INTO organizations (id, name, phone_number, phone_number_normalized, settings) "
        "VALUES (:id, :name, :phone, :digits, CAST(:settings AS jsonb))",
        id=org,
        name=f"Store {org[:4]}",
        phone=phone,
        digits=phone[1:],
        settings=json.dumps({"timezone": "America/Vancouver", **settings}),
    )
    return org


def _lead(db: pg8000.native.Connection, org: str, phone: str | None = None, **fields: Any) -> str:
    phone = phone or new_phone()
    lead = str(uuid.uuid4())
    db.run(
        "INSERT INTO leads (id, organization_id, phone_number, phone_number_normalized, "
        "customer_name, last_summary, interaction_count) "
        "VALUES (:id, :org, :phone, :digits, :name, :summary, :count)",
        id=lead,
        org=org,
        phone=phone,
        digits=phone.lstrip("+"),
        name=fields.get("customer_name"),
        summary=fields.get("last_summary"),
        count=fields.get("interaction_count", 0),
    )
    return lead


@pytest.fixture
def stores(db: pg8000.native.Connection, call_env: dict[str, str]) -> Stores:
    a = _store(db, agent_phone_number_id=STANDIN_PHONE_NUMBER_ID)
    b = _store(db, agent_phone_number_id=STANDIN_PHONE_NUMBER_ID)
    a_phone = new_phone()
    a_lead = _lead(
        db,
        a,
        a_phone,
        customer_name="Ada",
        last_summary="Asked about gravel bikes under $2,000.",
        interaction_count=1,
    )
    return Stores(a, b, a_lead, a_phone, _lead(db, b))


def store_group(organization_id: str) -> str:
    return f"org-{organization_id}"


def _event(
    method: str,
    path: str,
    route: str,
    lead_id: str,
    groups: list[str] | None,
    headers: dict[str, str] | None = None,
    sub: str = "staff-ana-0001",
    email: str = "ana@example.com",
) -> dict[str, Any]:
    """A staff request to ``path`` as API Gateway passes it (None: no authorizer block)."""
    event = {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", **(headers or {})},
        "requestContext": {
            "http": {"method": method, "path": path, "sourceIp": "203.0.113.24"},
            "stage": "$default",
            "requestId": "calls-test",
        },
        "pathParameters": {"lead_id": lead_id},
        "isBase64Encoded": False,
    }
    claims = None if groups is None else claims_of(sub=sub, email=email, groups=groups)
    return as_member(event, claims)


def _call(
    invoke: Invoke,
    lead_id: str,
    groups: list[str] | None,
    key: str | None = None,
    **who: Any,
) -> dict[str, Any]:
    event = _event(
        "POST",
        f"/leads/{lead_id}/calls",
        "POST /leads/{lead_id}/calls",
        lead_id,
        groups,
        {"idempotency-key": key} if key is not None else None,
        **who,
    )
    return invoke(FUNCTION, event)


def _body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def _calls(db: pg8000.native.Connection, lead_id: str) -> list[dict[str, Any]]:
    rows = db.run(
        "SELECT id::text, status, idempotency_key, staff_sub, staff_email, conversation_id, "
        "call_sid, error FROM outbound_calls WHERE lead_id = :lead ORDER BY created_at",
        lead=lead_id,
    )
    names = [c["name"] for c in db.columns]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _notes(db: pg8000.native.Connection, lead_id: str) -> list[tuple[str, str, Any]]:
    return [
        (row[0], row[1], row[2])
        for row in db.run(
            "SELECT body, sender_kind, params FROM messages WHERE lead_id = :lead "
            "AND direction = 'system' ORDER BY created_at, external_id",
            lead=lead_id,
        )
    ]


def _member(org: str, sub: str = "staff-ana-0001") -> StaffMember:
    return StaffMember.from_groups(sub, [store_group(org)], email="ana@example.com")


# -- the call -------------------------------------------------------------------------------


def test_call_is_queued_then_placed_with_every_dynamic_variable(
    stores: Stores, invoke: Invoke, agent: AgentStandIn, db: pg8000.native.Connection
) -> None:
    response = _call(invoke, stores.a_lead, [store_group(stores.a)], key="press-1")

    assert response["statusCode"] == 202, response
    body = _body(response)
    assert body == {"call_id": body["call_id"], "status": "queued"}
    (request,) = agent.outbound_calls
    assert request["status"] == 200
    assert request["api_key"] == agent.api_key
    sent = request["body"]
    assert (sent["agent_id"], sent["agent_phone_number_id"], sent["to_number"]) == (
        agent.agent_id,
        STANDIN_PHONE_NUMBER_ID,
        stores.a_phone,
    )
    variables = sent["conversation_initiation_client_data"]["dynamic_variables"]
    assert tuple(variables) == DYNAMIC_VARIABLE_KEYS
    assert all(isinstance(value, str) for value in variables.values())
    assert variables["is_outbound"] == "true"
    assert variables["call_type"] == "outbound_followup"
    assert variables["channel"] == "voice"
    assert (variables["lead_id"], variables["organization_id"]) == (stores.a_lead, stores.a)
    assert (variables["customer_name"], variables["customer_phone"]) == ("Ada", stores.a_phone)
    assert "gravel bikes" in variables["previous_summary"]
    (call,) = _calls(db, stores.a_lead)
    assert call["id"] == body["call_id"]
    # The outcome came back in-process: dialing, with ElevenLabs' and Twilio's ids.
    assert call["status"] == "dialing"
    assert call["conversation_id"] == request["answer"]["conversation_id"]
    assert call["call_sid"] == request["answer"]["callSid"]
    assert (call["idempotency_key"], call["staff_sub"], call["staff_email"]) == (
        "press-1",
        "staff-ana-0001",
        "ana@example.com",
    )
    (note,) = _notes(db, stores.a_lead)
    assert note[:2] == ("Call requested by ana@example.com", "system")
    assert note[2] == {"call_id": call["id"]}


def test_call_to_another_stores_lead_is_404_and_writes_and_sends_nothing(
    stores: Stores, invoke: Invoke, agent: AgentStandIn, db: pg8000.native.Connection
) -> None:
    response = _call(invoke, stores.a_lead, [store_group(stores.b)], key="press-1")

    assert (response["statusCode"], _body(response)) == (404, {"message": "lead not found"})
    assert _calls(db, stores.a_lead) == []
    assert _notes(db, stores.a_lead) == []
    assert agent.outbound_calls == []


def test_owner_may_call_any_stores_lead(
    stores: Stores, invoke: Invoke, agent: AgentStandIn, db: pg8000.native.Connection
) -> None:
    for lead in (stores.a_lead, stores.b_lead):
        response = _call(invoke, lead, ["owners"], sub="owner-olga", email="olga@example.com")

        assert response["statusCode"] == 202, response
        assert [c["staff_email"] for c in _calls(db, lead)] == ["olga@example.com"]
    assert len(agent.outbound_calls) == 2


def test_call_without_claims_is_401_and_without_a_store_403(
    stores: Stores, invoke: Invoke, agent: AgentStandIn, db: pg8000.native.Connection
) -> None:
    assert _call(invoke, stores.a_lead, None)["statusCode"] == 401
    storeless = _call(invoke, stores.a_lead, ["some-other-group"])
    assert storeless["statusCode"] == 403
    assert "message" in _body(storeless)
    assert _calls(db, stores.a_lead) == []
    assert agent.outbound_calls == []


@pytest.mark.parametrize(
    ("lead_id", "key", "status", "message"),
    [
        ("not-a-uuid", None, 400, "lead id must be a UUID"),
        (str(uuid.uuid4()), None, 404, "lead not found"),
        (None, "", 400, "header 'Idempotency-Key' must be 1 to 100 characters"),
        (None, "k" * 101, 400, "header 'Idempotency-Key' must be 1 to 100 characters"),
    ],
)
def test_call_bad_inputs_name_the_problem(
    lead_id: str | None,
    key: str | None,
    status: int,
    message: str,
    stores: Stores,
    invoke: Invoke,
    agent: AgentStandIn,
) -> None:
    response = _call(invoke, lead_id or stores.a_lead, [store_group(stores.a)], key=key)

    assert (response["statusCode"], _body(response)) == (status, {"message": message})
    assert agent.outbound_calls == []


def test_call_to_an_opted_out_lead_is_409(
    stores: Stores, invoke: Invoke, agent: AgentStandIn, db: pg8000.native.Connection
) -> None:
    db.run("UPDATE leads SET opted_out_at = now() WHERE id = :id", id=stores.a_lead)

    response = _call(invoke, stores.a_lead, [store_group(stores.a)])

    assert response["statusCode"] == 409
    assert _body(response) == {"message": "lead opted out: no calls or texts are sent to it"}
    assert _calls(db, stores.a_lead) == [] and _notes(db, stores.a_lead) == []
    assert agent.outbound_calls == []


def test_call_to_a_number_that_is_no_mobile_or_landline_is_409(
    stores: Stores, invoke: Invoke, agent: AgentStandIn, db: pg8000.native.Connection
) -> None:
    # A toll-free number: valid, but no customer's phone.
    lead = _lead(db, stores.a, f"+1800555{uuid.uuid4().int % 10_000:04d}")

    response = _call(invoke, lead, [store_group(stores.a)])

    assert response["statusCode"] == 409
    assert "no callable phone number" in _body(response)["message"]
    assert _calls(db, lead) == []
    assert agent.outbound_calls == []


def test_call_for_a_store_without_an_agent_number_is_409(
    invoke: Invoke, agent: AgentStandIn, db: pg8000.native.Connection, call_env: dict[str, str]
) -> None:
    org = _store(db)
    lead = _lead(db, org)

    response = _call(invoke, lead, [store_group(org)])

    assert response["statusCode"] == 409
    assert "'agent_phone_number_id'" in _body(response)["message"]
    assert _calls(db, lead) == []
    assert agent.outbound_calls == []


def test_a_second_call_while_one_is_in_progress_is_409(
    stores: Stores, invoke: Invoke, agent: AgentStandIn, db: pg8000.native.Connection
) -> None:
    first = _body(_call(invoke, stores.a_lead, [store_group(stores.a)], key="press-1"))

    second = _call(invoke, stores.a_lead, [store_group(stores.a)], key="press-2")

    assert second["statusCode"] == 409
    assert _body(second) == {
        "message": f"a call to this lead is already in progress (call {first['call_id']})"
    }
    assert [c["id"] for c in _calls(db, stores.a_lead)] == [first["call_id"]]
    assert len(agent.outbound_calls) == 1


def test_the_same_idempotency_key_answers_the_same_call_and_calls_once(
    stores: Stores, invoke: Invoke, agent: AgentStandIn, db: pg8000.native.Connection
) -> None:
    first = _call(invoke, stores.a_lead, [store_group(stores.a)], key="press-1")
    again = _call(invoke, stores.a_lead, [store_group(stores.a)], key="press-1")

    assert (first["statusCode"], again["statusCode"]) == (202, 202)
    assert _body(again)["call_id"] == _body(first)["call_id"]
    # The repeat tells where the call is now.
    assert _body(again)["status"] == "dialing"
    assert len(_calls(db, stores.a_lead)) == 1
    assert len(_notes(db, stores.a_lead)) == 1
    assert len(agent.outbound_calls) == 1


def test_two_requests_at_once_place_one_call(
    stores: Stores,
    settings: Any,
    make_runtime: Callable[..., Any],
    agent: AgentStandIn,
    db: pg8000.native.Connection,
) -> None:
    # Two containers (two connections), racing: the unique index lets one insert.
    runtimes = [make_runtime(get_runtime().settings) for _ in range(2)]
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def press(runtime: Any, key: str) -> None:
        barrier.wait()
        try:
            results.append(runtime.calls.request(_member(stores.a), stores.a_lead, key))
        except Conflict as exc:
            results.append(exc)

    threads = [
        threading.Thread(target=press, args=(runtime, f"press-{n}"))
        for n, runtime in enumerate(runtimes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    placed = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert (len(placed), len(refused)) == (1, 1)
    assert "already in progress" in str(refused[0])
    assert len(_calls(db, stores.a_lead)) == 1
    assert len(agent.outbound_calls) == 1


def test_a_stale_call_no_longer_blocks_the_next(
    stores: Stores, invoke: Invoke, agent: AgentStandIn, db: pg8000.native.Connection
) -> None:
    old = _body(_call(invoke, stores.a_lead, [store_group(stores.a)], key="press-1"))
    db.run(
        "UPDATE outbound_calls SET created_at = now() - make_interval(secs => :age) WHERE id = :id",
        id=old["call_id"],
        age=calls.STALE_AFTER_SECONDS + 60,
    )

    new = _call(invoke, stores.a_lead, [store_group(stores.a)], key="press-2")

    assert new["statusCode"] == 202, new
    assert [(c["id"], c["status"]) for c in _calls(db, stores.a_lead)] == [
        (old["call_id"], "expired"),
        (_body(new)["call_id"], "dialing"),
    ]


def test_a_call_younger_than_the_stale_age_still_blocks(
    stores: Stores, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    old = _body(_call(invoke, stores.a_lead, [store_group(stores.a)], key="press-1"))
    db.run(
        "UPDATE outbound_calls SET created_at = now() - make_interval(secs => :age) WHERE id = :id",
        id=old["call_id"],
        age=calls.STALE_AFTER_SECONDS - 60,
    )

    assert _call(invoke, stores.a_lead, [store_group(stores.a)])["statusCode"] == 409


# -- what ElevenLabs answered ---------------------------------------------------------------


def test_elevenlabs_not_answering_in_time_is_a_failed_call_with_its_note(
    stores: Stores,
    invoke: Invoke,
    agent: AgentStandIn,
    db: pg8000.native.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTBOUND_CALL_TIMEOUT_MS", "200")
    container.set_runtime(None)
    agent.call_delay_s = 1.0

    response = _call(invoke, stores.a_lead, [store_group(stores.a)])

    assert response["statusCode"] == 202
    (call,) = _calls(db, stores.a_lead)
    assert call["status"] == "failed"
    assert call["error"] == "ElevenLabs did not answer in time; the call may have been placed"
    assert [note[0] for note in _notes(db, stores.a_lead)] == [
        "Call requested by ana@example.com",
        f"Call could not be placed: {call['error']}",
    ]
    # A failed call is over: staff may call again.
    agent.call_delay_s = 0.0
    assert _call(invoke, stores.a_lead, [store_group(stores.a)])["statusCode"] == 202


@pytest.mark.parametrize(
    ("arrange", "error"),
    [
        (
            lambda agent: agent.phone_numbers.clear(),
            "ElevenLabs answered HTTP 404: phone number not found",
        ),
        (
            lambda agent: setattr(agent, "call_mode", "unplaced"),
            "ElevenLabs could not place the call: Failed to initiate call: "
            "Twilio could not reach the number",
        ),
        (
            lambda agent: setattr(agent, "api_key", "another-key"),
            "ElevenLabs refused the API key (HTTP 401)",
        ),
        (
            lambda agent: setattr(agent, "required_variables", ("loyalty_tier",)),
            "ElevenLabs refused the call: body.conversation_initiation_client_data."
            "dynamic_variables: Missing required dynamic variables: loyalty_tier",
        ),
    ],
)
def test_elevenlabs_refusals_are_failed_calls_naming_why(
    arrange: Callable[[AgentStandIn], None],
    error: str,
    stores: Stores,
    invoke: Invoke,
    agent: AgentStandIn,
    db: pg8000.native.Connection,
) -> None:
    arrange(agent)

    assert _call(invoke, stores.a_lead, [store_group(stores.a)])["statusCode"] == 202

    (call,) = _calls(db, stores.a_lead)
    assert (call["status"], call["error"]) == ("failed", error)


def test_a_call_that_cannot_be_queued_is_503_and_leaves_nothing(
    stores: Stores,
    invoke: Invoke,
    agent: AgentStandIn,
    db: pg8000.native.Connection,
    monkeypatch: pytest.MonkeyPatch,
    aws_env: None,
) -> None:
    monkeypatch.setenv(
        "OUTBOUND_CALL_QUEUE_URL", f"http://127.0.0.1:{free_port()}/123456789012/calls"
    )
    container.set_runtime(None)

    response = _call(invoke, stores.a_lead, [store_group(stores.a)], key="press-1")

    assert (response["statusCode"], _body(response)) == (503, {"message": "queue is unreachable"})
    assert _calls(db, stores.a_lead) == [] and _notes(db, stores.a_lead) == []
    # The retry, with the same key, starts afresh.
    monkeypatch.delenv("OUTBOUND_CALL_QUEUE_URL")
    container.set_runtime(None)
    assert _call(invoke, stores.a_lead, [store_group(stores.a)], key="press-1")["statusCode"] == 202
    assert len(agent.outbound_calls) == 1


# -- outcomes and reports -------------------------------------------------------------------


def _requested(stores: Stores, db: pg8000.native.Connection) -> str:
    """A call stored as queued (its job not run), the way the route stores it."""
    runtime = get_runtime()
    result = runtime.service.request_outbound_call(
        str(uuid.uuid4()),
        stores.a_lead,
        stores.a,
        f"key-{uuid.uuid4()}",
        actor={"sub": "staff-ana-0001", "email": "ana@example.com"},
        refusal=None,
        stale_seconds=calls.STALE_AFTER_SECONDS,
        note_key=f"note-{uuid.uuid4()}",
        note="Call requested by ana@example.com",
        note_params={},
    )
    assert result["outcome"] == "created"
    return str(result["id"])


def _status(db: pg8000.native.Connection, call_id: str) -> tuple[str, str | None]:
    row = db.run("SELECT status, conversation_id FROM outbound_calls WHERE id = :id", id=call_id)[0]
    return row[0], row[1]


def _report(conversation_id: str, lead_id: str) -> None:
    runtime = get_runtime()
    call = PostCall(
        conversation_id=conversation_id,
        payload={},
        lead_id=lead_id,
        summary="Talked about the gravel bike.",
        channel=PHONE,
        reached=True,
    )
    postcall.store_post_call(call, runtime.service, runtime.replies)


def test_an_outcome_delivered_twice_is_stored_once(
    stores: Stores, db: pg8000.native.Connection
) -> None:
    call_id = _requested(stores, db)
    outcomes = get_runtime().outcomes
    failed = CallOutcome(call_id, calls.FAILED, error="ElevenLabs answered HTTP 500").to_json()

    assert outcomes.store_queued(failed) is True
    assert outcomes.store_queued(failed) is False

    assert _status(db, call_id) == ("failed", None)
    assert [n[0] for n in _notes(db, stores.a_lead)].count(
        "Call could not be placed: ElevenLabs answered HTTP 500"
    ) == 1


def test_outcomes_only_move_a_call_forward(stores: Stores, db: pg8000.native.Connection) -> None:
    call_id = _requested(stores, db)
    outcomes = get_runtime().outcomes
    dialing = CallOutcome(call_id, calls.DIALING, "conv_forward", "CA1").to_json()

    assert outcomes.store_queued(dialing) is True
    _report("conv_forward", stores.a_lead)
    assert _status(db, call_id) == ("completed", "conv_forward")
    # A late failure or a repeated dialing changes nothing.
    assert outcomes.store_queued(CallOutcome(call_id, calls.FAILED, error="x").to_json()) is False
    assert outcomes.store_queued(dialing) is False
    assert _status(db, call_id) == ("completed", "conv_forward")


def test_the_post_call_report_completes_the_call_and_frees_the_lead(
    stores: Stores, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    first = _body(_call(invoke, stores.a_lead, [store_group(stores.a)], key="press-1"))
    (call,) = _calls(db, stores.a_lead)
    assert _call(invoke, stores.a_lead, [store_group(stores.a)])["statusCode"] == 409

    _report(call["conversation_id"], stores.a_lead)

    assert _status(db, first["call_id"]) == ("completed", call["conversation_id"])
    assert _call(invoke, stores.a_lead, [store_group(stores.a)])["statusCode"] == 202


def test_a_report_that_overtook_the_outcome_completes_the_call(
    stores: Stores, db: pg8000.native.Connection
) -> None:
    call_id = _requested(stores, db)
    _report("conv_overtaken", stores.a_lead)

    dialing = CallOutcome(call_id, calls.DIALING, "conv_overtaken", "CA2").to_json()
    assert get_runtime().outcomes.store_queued(dialing) is True

    assert _status(db, call_id) == ("completed", "conv_overtaken")


def test_a_late_outcome_of_an_expired_call_lets_its_report_complete_it(
    stores: Stores, db: pg8000.native.Connection
) -> None:
    call_id = _requested(stores, db)
    db.run("UPDATE outbound_calls SET status = 'expired' WHERE id = :id", id=call_id)
    outcomes = get_runtime().outcomes

    outcomes.store_queued(CallOutcome(call_id, calls.DIALING, "conv_late", "CA3").to_json())
    assert _status(db, call_id) == ("expired", "conv_late")
    _report("conv_late", stores.a_lead)

    assert _status(db, call_id) == ("completed", "conv_late")


def test_the_outcome_of_an_unknown_call_is_dropped(call_env: dict[str, str]) -> None:
    outcome = CallOutcome(str(uuid.uuid4()), calls.DIALING, "conv_nobody", "CA4").to_json()

    assert get_runtime().outcomes.store_queued(outcome) is False


def test_erasing_a_lead_erases_its_calls(
    stores: Stores, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    _call(invoke, stores.a_lead, [store_group(stores.a)])
    path = f"/leads/{stores.a_lead}"
    erase = _event(
        "DELETE", path, "DELETE /leads/{lead_id}", stores.a_lead, [store_group(stores.a)]
    )

    assert invoke(FUNCTION, erase)["statusCode"] == 204
    assert _calls(db, stores.a_lead) == []


# -- the timeline ---------------------------------------------------------------------------


def _timeline(invoke: Invoke, stores: Stores) -> list[dict[str, Any]]:
    event = _event(
        "GET",
        f"/leads/{stores.a_lead}/timeline",
        "GET /leads/{lead_id}/timeline",
        stores.a_lead,
        [store_group(stores.a)],
    )
    response = invoke(FUNCTION, event)
    assert response["statusCode"] == 200, response
    items: list[dict[str, Any]] = _body(response)["items"]
    return items


def test_the_timeline_shows_who_asked_for_the_call_then_the_call_they_placed(
    stores: Stores, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    _call(invoke, stores.a_lead, [store_group(stores.a)])
    (call,) = _calls(db, stores.a_lead)
    ana = {"sub": "staff-ana-0001", "email": "ana@example.com"}

    (requested,) = _timeline(invoke, stores)
    assert (requested["kind"], requested["text"], requested["staff"]) == (
        "note",
        "Call requested by ana@example.com",
        ana,
    )

    _report(call["conversation_id"], stores.a_lead)

    placed, note = _timeline(invoke, stores)
    assert note == requested
    assert placed["kind"] == "call"
    assert (placed["direction"], placed["channel"], placed["staff"]) == ("outbound", PHONE, ana)
    assert placed["conversation_id"] == call["conversation_id"]
    assert placed["summary"] == "Talked about the gravel bike."


def test_a_report_that_overtook_the_outcome_is_signed_with_who_placed_the_call(
    stores: Stores, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    call_id = _requested(stores, db)
    _report("conv_signed_late", stores.a_lead)

    get_runtime().outcomes.store_queued(
        CallOutcome(call_id, calls.DIALING, "conv_signed_late", "CA5").to_json()
    )

    (placed,) = [item for item in _timeline(invoke, stores) if item["kind"] == "call"]
    assert (placed["direction"], placed["staff"]) == (
        "outbound",
        {"sub": "staff-ana-0001", "email": "ana@example.com"},
    )


def test_a_failed_call_shows_as_a_note_saying_why(
    stores: Stores, invoke: Invoke, agent: AgentStandIn
) -> None:
    agent.call_mode = "error"

    _call(invoke, stores.a_lead, [store_group(stores.a)])

    failed, requested = _timeline(invoke, stores)
    assert requested["text"] == "Call requested by ana@example.com"
    assert (failed["kind"], failed["text"], failed["staff"]) == (
        "note",
        "Call could not be placed: ElevenLabs answered HTTP 500: internal error",
        None,
    )


# -- cost -----------------------------------------------------------------------------------


class _RecordingQueue:
    """The call queue, kept in a list (the caller is another function)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, body: dict[str, Any], **_: Any) -> None:
        self.sent.append(body)


def test_a_call_request_costs_three_database_round_trips_and_its_outcome_one(
    stores: Stores,
    counted: Any,
    pg_proxy: Any,
    redis_proxy: Any,
    db: pg8000.native.Connection,
) -> None:
    jobs = _RecordingQueue()
    requests = Calls(counted.service, jobs)
    member = _member(stores.a)
    # Connected to both, as a warm container is.
    counted.service.get_lead(stores.b_lead)
    counted.service.store_changed(stores.b)
    pg_proxy.reset_counters()
    redis_proxy.reset_counters()

    call_id, status = requests.request(member, stores.a_lead, "press-1")

    # The lead, its store, and the request itself (the key, expiry, insert and note in one
    # function); the store's change counters are bumped in one Redis round trip.
    assert (pg_proxy.round_trips, redis_proxy.round_trips) == (3, 1)
    assert status == "queued" and [job["call_id"] for job in jobs.sent] == [call_id]
    pg_proxy.reset_counters()
    redis_proxy.reset_counters()

    outcome = CallOutcome(call_id, calls.DIALING, "conv_cost", "CA6").to_json()
    assert counted.outcomes.store_queued(outcome) is True

    assert (pg_proxy.round_trips, redis_proxy.round_trips) == (1, 1)
    assert _status(db, call_id) == ("dialing", "conv_cost")


# -- make run --------------------------------------------------------------------------------


@pytest.fixture
def served(call_env: dict[str, str]) -> Iterator[LocalApi]:
    """`make run`'s runner for the staff API, its local sign-in, the agent stand-in."""
    api = LocalApi(
        {"LeadUpdateFunction": lambda_env.functions()["LeadUpdateFunction"]},
        "127.0.0.1",
        0,
        log=io.StringIO(),
    )
    api.start()
    try:
        yield api
    finally:
        api.stop()


def _http(api: LocalApi, method: str, path: str, token: str, key: str) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        api.url + path,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_a_local_call_goes_from_the_signed_in_owner_to_the_stand_in_and_back(
    served: LocalApi, stores: Stores, agent: AgentStandIn, db: pg8000.native.Connection
) -> None:
    olga, ben = served.auth.mint("olga"), served.auth.mint("ben")

    refused = _http(served, "POST", f"/leads/{stores.a_lead}/calls", ben, "press-1")
    status, body = _http(served, "POST", f"/leads/{stores.a_lead}/calls", olga, "press-1")

    assert refused == (404, {"message": "lead not found"})
    assert (status, body["status"]) == (202, "queued")
    (request,) = agent.outbound_calls
    assert request["status"] == 200
    (call,) = _calls(db, stores.a_lead)
    assert (call["id"], call["status"], call["staff_email"]) == (
        body["call_id"],
        "dialing",
        "olga@example.com",
    )
    assert any(
        f"POST /leads/{stores.a_lead}/calls 202" in line
        for line in served.log.getvalue().splitlines()
    )  # type: ignore[attr-defined]


def test_make_run_gives_the_sample_stores_the_stand_ins_number(
    db: pg8000.native.Connection, call_env: dict[str, str]
) -> None:
    from devkit.cli import enable_local_calls, seed_local_stores
    from devkit.local_auth import STORE_B

    err = io.StringIO()
    seed_local_stores(err)
    before = db.run(
        "SELECT settings FROM organizations WHERE id = :id", id=DEFAULT_ORGANIZATION_ID
    )[0][0]
    try:
        enable_local_calls(err)

        settings = dict(
            db.run(
                "SELECT id::text, settings -> 'agent_phone_number_id' FROM organizations "
                "WHERE id IN (:a, :b)",
                a=DEFAULT_ORGANIZATION_ID,
                b=STORE_B["id"],
            )
        )
        assert settings == {
            DEFAULT_ORGANIZATION_ID: STANDIN_PHONE_NUMBER_ID,
            STORE_B["id"]: STANDIN_PHONE_NUMBER_ID,
        }
        assert "outbound calls: the sample stores call" in err.getvalue()
    finally:
        # Other tests know the default store without one.
        db.run(
            "UPDATE organizations SET settings = CAST(:s AS jsonb) WHERE id = :id",
            s=json.dumps(before),
            id=DEFAULT_ORGANIZATION_ID,
        )
        db.run("DELETE FROM organizations WHERE id = :id", id=STORE_B["id"])


# -- the sample events through the real handlers ----------------------------------------------

SAMPLE_LEAD = "5e1f0000-0000-4000-8000-000000000001"


def _sample(function_dir: str, name: str) -> dict[str, Any]:
    return json.loads((EVENTS / function_dir / f"{name}.json").read_text())


@pytest.fixture
def calling_store(db: pg8000.native.Connection, call_env: dict[str, str]) -> Iterator[None]:
    """The seeded store, with the stand-in's number to call from (as `make run` gives it)."""
    before = db.run(
        "SELECT settings FROM organizations WHERE id = :id", id=DEFAULT_ORGANIZATION_ID
    )[0][0]
    db.run(
        "UPDATE organizations SET settings = settings || CAST(:s AS jsonb) WHERE id = :id",
        s=json.dumps({calls.AGENT_PHONE_SETTING: STANDIN_PHONE_NUMBER_ID}),
        id=DEFAULT_ORGANIZATION_ID,
    )
    yield
    db.run(
        "UPDATE organizations SET settings = CAST(:s AS jsonb) WHERE id = :id",
        s=json.dumps(before),
        id=DEFAULT_ORGANIZATION_ID,
    )


def test_the_sample_call_request_is_placed(
    lead: str,
    calling_store: None,
    invoke: Invoke,
    agent: AgentStandIn,
    db: pg8000.native.Connection,
) -> None:
    response = invoke(FUNCTION, _sample("lead_update", "calls_post"))

    assert response["statusCode"] == 202, response
    (call,) = _calls(db, SAMPLE_LEAD)
    assert (call["id"], call["status"]) == (_body(response)["call_id"], "dialing")
    assert (call["idempotency_key"], call["staff_email"]) == ("call-ticket-4821", "ana@example.com")
    assert [r["body"]["to_number"] for r in agent.outbound_calls] == ["+12365550199"]


def test_the_sample_call_request_for_a_store_without_an_agent_number_is_409(
    lead: str,
    call_env: dict[str, str],
    invoke: Invoke,
    agent: AgentStandIn,
    db: pg8000.native.Connection,
) -> None:
    # The sample's store is the shared default one: another test may have given it a number.
    db.run(
        "UPDATE organizations SET settings = settings - 'agent_phone_number_id' WHERE id = :id",
        id=DEFAULT_ORGANIZATION_ID,
    )
    response = invoke(FUNCTION, _sample("lead_update", "calls_post"))

    assert response["statusCode"] == 409
    assert "'agent_phone_number_id'" in _body(response)["message"]
    assert agent.outbound_calls == []


def test_the_caller_places_a_job_once_and_reports_it_each_time(
    call_env: dict[str, str],
    aws_env: None,
    invoke: Invoke,
    agent: AgentStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = _sample("outbound_call", "sqs_job")
    job = json.loads(event["Records"][0]["body"])
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="outcomes")["QueueUrl"]
        monkeypatch.setenv("REPLY_OUTCOME_QUEUE_URL", url)
        container.set_runtime(None)

        first = invoke("outbound_call", event)
        redelivered = invoke("outbound_call", event)
        queued = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]

    assert first == redelivered == {"batchItemFailures": []}
    (request,) = agent.outbound_calls
    assert (
        request["body"]["conversation_initiation_client_data"]["dynamic_variables"]
        == (job["dynamic_variables"])
    )
    outcomes = [json.loads(m["Body"]) for m in queued]
    assert len(outcomes) == 2
    assert {json.dumps(o, sort_keys=True) for o in outcomes} == {
        json.dumps(
            CallOutcome(
                job["call_id"],
                calls.DIALING,
                request["answer"]["conversation_id"],
                request["answer"]["callSid"],
            ).to_json(),
            sort_keys=True,
        )
    }


def test_the_caller_fails_a_malformed_job_for_the_dead_letter_queue(
    call_env: dict[str, str],
    aws_env: None,
    invoke: Invoke,
    agent: AgentStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = _sample("outbound_call", "sqs_job")
    event["Records"][0]["body"] = json.dumps({"call_id": "x"})
    with mock_aws():
        url = boto3.client("sqs").create_queue(QueueName="outcomes")["QueueUrl"]
        monkeypatch.setenv("REPLY_OUTCOME_QUEUE_URL", url)
        container.set_runtime(None)

        response = invoke("outbound_call", event)

    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert agent.outbound_calls == []


def test_the_caller_without_an_agent_reports_the_call_failed(
    call_env: dict[str, str],
    aws_env: None,
    invoke: Invoke,
    agent: AgentStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ELEVENLABS_AGENT_ID")
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="outcomes")["QueueUrl"]
        monkeypatch.setenv("REPLY_OUTCOME_QUEUE_URL", url)
        container.set_runtime(None)

        assert invoke("outbound_call", _sample("outbound_call", "sqs_job")) == {
            "batchItemFailures": []
        }
        (queued,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]

    outcome = json.loads(queued["Body"])
    assert (outcome["status"], outcome["error"]) == ("failed", NOT_CONFIGURED)
    assert agent.outbound_calls == []


def test_the_outcome_handler_stores_the_sample_call_outcome_once(
    lead: str, call_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    event = _sample("sms_outcome", "sqs_call_outcome")
    outcome = json.loads(event["Records"][0]["body"])
    result = get_runtime().service.request_outbound_call(
        outcome["call_id"],
        SAMPLE_LEAD,
        DEFAULT_ORGANIZATION_ID,
        "call-ticket-4821",
        actor={"sub": "a1a1a1a1-0000-4000-8000-000000000001", "email": "ana@example.com"},
        refusal=None,
        stale_seconds=calls.STALE_AFTER_SECONDS,
        note_key=calls.note_key(outcome["call_id"], "requested"),
        note="Call requested by ana@example.com",
        note_params=calls.note_params(outcome["call_id"]),
    )
    assert result["outcome"] == "created"

    answers = [invoke("sms_outcome", event), invoke("sms_outcome", event)]

    assert answers == [{"batchItemFailures": []}] * 2
    (call,) = _calls(db, SAMPLE_LEAD)
    assert (call["status"], call["conversation_id"], call["call_sid"]) == (
        "dialing",
        outcome["conversation_id"],
        outcome["call_sid"],
    )


# The caller runs outside the VPC: deployed, it never loads the data layer.
CHILD = """
import json, sys
from devkit import lambda_env
spec = lambda_env.function_for_code("outbound_call")
module = lambda_env.load_module(spec)
event = json.loads(open(sys.argv[1]).read())
answer = module.lambda_handler(event, lambda_env.LambdaContext(spec))
print(json.dumps({"answer": answer, "modules": sorted(sys.modules)}))
"""


def test_the_caller_loads_no_database_cache_or_staff_module(agent: AgentStandIn) -> None:
    with moto_server() as endpoint:
        sqs = boto3.client(
            "sqs",
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        url = sqs.create_queue(QueueName="outcomes")["QueueUrl"]
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "leadlookup"), str(ROOT)]),
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": REGION,
            **CREDENTIALS,
            "REPLY_OUTCOME_QUEUE_URL": url,
            "ELEVENLABS_AGENT_ID": agent.agent_id,
            "ELEVENLABS_API_URL": agent.api_url,
            "ELEVENLABS_API_KEY": agent.api_key or "",
            "POWERTOOLS_TRACE_DISABLED": "1",
        }
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(EVENTS / "outbound_call" / "sqs_job.json")],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    forbidden = [
        m
        for m in result["modules"]
        if m.startswith(
            (
                "leadlookup.adapters.db",
                "leadlookup.adapters.repository",
                "leadlookup.adapters.cache",
                "leadlookup.usecases.lookups",
                "leadlookup.usecases.staff",
                "pg8000",
                "redis",
            )
        )
    ]
    assert result["answer"] == {"batchItemFailures": []}
    assert [json.loads(m["Body"])["status"] for m in received] == ["dialing"]
    assert forbidden == []
    assert "leadlookup.usecases.caller" in result["modules"]


# -- the stand-in checks the documented fields ---------------------------------------------


def _standin_post(agent: AgentStandIn, body: Any, key: str | None = "") -> tuple[int, Any]:
    import http.client

    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["xi-api-key"] = key or (agent.api_key or "")
    connection = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        connection.request("POST", "/v1/convai/twilio/outbound-call", data, headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _valid_call(agent: AgentStandIn) -> dict[str, Any]:
    variables = dict.fromkeys(DYNAMIC_VARIABLE_KEYS, "")
    variables["is_outbound"] = "true"
    return {
        "agent_id": agent.agent_id,
        "agent_phone_number_id": STANDIN_PHONE_NUMBER_ID,
        "to_number": "+16045550142",
        "conversation_initiation_client_data": {"dynamic_variables": variables},
    }


def test_standin_places_a_documented_request_and_answers_like_elevenlabs(
    agent: AgentStandIn,
) -> None:
    status, answer = _standin_post(agent, _valid_call(agent))

    assert status == 200
    assert set(answer) == {"success", "message", "conversation_id", "callSid"}
    assert answer["success"] is True
    assert answer["conversation_id"].startswith("conv_")
    assert answer["callSid"].startswith("CA")


@pytest.mark.parametrize(
    ("change", "status", "detail"),
    [
        (lambda b: b.pop("agent_id"), 422, ["body", "agent_id"]),
        (lambda b: b.pop("agent_phone_number_id"), 422, ["body", "agent_phone_number_id"]),
        (lambda b: b.update(to_number="604-555-0142"), 422, ["body", "to_number"]),
        (
            lambda b: b["conversation_initiation_client_data"].update(dynamic_variables=[]),
            422,
            ["body", "conversation_initiation_client_data", "dynamic_variables"],
        ),
        (
            lambda b: b["conversation_initiation_client_data"]["dynamic_variables"].pop("lead_id"),
            422,
            ["body", "conversation_initiation_client_data", "dynamic_variables"],
        ),
        (
            lambda b: b["conversation_initiation_client_data"]["dynamic_variables"].update(
                is_outbound="false"
            ),
            422,
            ["body", "conversation_initiation_client_data", "dynamic_variables", "is_outbound"],
        ),
        (
            lambda b: b["conversation_initiation_client_data"]["dynamic_variables"].update(
                lead_id={"nested": True}
            ),
            422,
            ["body", "conversation_initiation_client_data", "dynamic_variables", "lead_id"],
        ),
        (lambda b: b.update(agent_id="agent_other"), 404, None),
        (lambda b: b.update(agent_phone_number_id="phnum_other"), 404, None),
    ],
)
def test_standin_refuses_what_elevenlabs_refuses(
    change: Callable[[dict[str, Any]], Any],
    status: int,
    detail: list[str] | None,
    agent: AgentStandIn,
) -> None:
    body = _valid_call(agent)
    change(body)

    answered, answer = _standin_post(agent, body)

    assert answered == status
    if detail is not None:
        (problem,) = answer["detail"]
        assert problem["loc"] == detail and problem["msg"]
    assert [r["status"] for r in agent.outbound_calls] == [status]


def test_standin_refuses_a_missing_or_wrong_key_and_a_body_that_is_not_json(
    agent: AgentStandIn,
) -> None:
    assert _standin_post(agent, _valid_call(agent), key=None)[0] == 401
    assert _standin_post(agent, _valid_call(agent), key="wrong")[0] == 401
    status, answer = _standin_post(agent, b"{not json")
    assert (status, answer["detail"][0]["type"]) == (422, "json_invalid")
    # The same port still serves the conversations' REST call and the WebSocket.
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5)
    connection.request(
        "GET",
        f"/v1/convai/conversation/get-signed-url?agent_id={agent.agent_id}",
        headers={"xi-api-key": agent.api_key or ""},
    )
    assert connection.getresponse().status == 200
    connection.close()
