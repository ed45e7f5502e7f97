"""The reply path through the real handlers and sample events: routes, responder, outcomes.

PostgreSQL and Redis are real, the agent and Twilio are the loopback stand-ins, SQS and
DynamoDB are moto.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pg8000.native
import pytest
from moto import mock_aws

from devkit.standins import AgentStandIn, TwilioStandIn
from leadlookup import container
from leadlookup.config import DEFAULT_ORGANIZATION_ID
from leadlookup.container import set_runtime
from tests.conftest import EVENTS, TEST_SECRETS
from tests.support.replies import TEST_SETTLE_MS

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]
LEAD_ID = "5e1f0000-0000-4000-8000-000000000001"
LEAD_PHONE = "+12365550199"
JOB_CUSTOMER = "+12505550112"


def sample(function_dir: str, name: str) -> dict[str, Any]:
    return json.loads((EVENTS / function_dir / f"{name}.json").read_text())


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


@pytest.fixture
def stand_ins(agent: AgentStandIn, twilio: TwilioStandIn) -> tuple[AgentStandIn, TwilioStandIn]:
    assert twilio.auth_token == TEST_SECRETS["TWILIO_AUTH_TOKEN"]
    return agent, twilio


@pytest.fixture
def reply_env(
    app_env: dict[str, str],
    stand_ins: tuple[AgentStandIn, TwilioStandIn],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    agent, twilio = stand_ins
    env = {
        "ELEVENLABS_AGENT_ID": agent.agent_id,
        "ELEVENLABS_WS_URL": agent.url,
        "ELEVENLABS_API_URL": agent.api_url,
        "ELEVENLABS_API_KEY": agent.api_key or "",
        "SMS_REPLY_SETTLE_MS": str(TEST_SETTLE_MS),
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_API_URL": twilio.url,
        "SMS_REPLY_DEADLINE_MS": "3000",
    }
    for name in ("REPLY_QUEUE_URL", "REPLY_OUTCOME_QUEUE_URL", "IDEMPOTENCY_TABLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    container.set_runtime(None)
    set_runtime(None)
    yield {**app_env, **env}
    container.set_runtime(None)


@pytest.fixture
def sample_lead(db: pg8000.native.Connection, reply_env: dict[str, str]) -> str:
    db.run(
        "DELETE FROM leads WHERE id = :id OR phone_number_normalized = :digits",
        id=LEAD_ID,
        digits=LEAD_PHONE[1:],
    )
    db.run(
        "INSERT INTO leads (id, organization_id, phone_number, phone_number_normalized) "
        "VALUES (:id, :org, :phone, :digits)",
        id=LEAD_ID,
        org=DEFAULT_ORGANIZATION_ID,
        phone=LEAD_PHONE,
        digits=LEAD_PHONE[1:],
    )
    return LEAD_ID


# -- routes ------------------------------------------------------------------------------------


def test_replies_routes_sample_events_take_over_text_and_list(
    sample_lead: str, invoke: Invoke, stand_ins: Any
) -> None:
    _, twilio = stand_ins

    patched = invoke("lead_update", sample("lead_update", "patch_human_control"))
    sent = invoke("lead_update", sample("lead_update", "messages_send"))
    again = invoke("lead_update", sample("lead_update", "messages_send"))
    listed = invoke("lead_update", sample("lead_update", "messages_list"))

    assert patched["statusCode"] == 200
    assert body_of(patched)["human_control"] is True
    assert patched["headers"]["ETag"] == '"2"'
    assert (sent["statusCode"], body_of(sent)["status"]) == (202, "queued")
    assert body_of(again) == body_of(sent)
    [text] = [m for m in twilio.sent if m["to"] == LEAD_PHONE]
    assert text["body"] == "Hi, this is Sam at BICI: your bike is ready for pickup."
    assert listed["statusCode"] == 200
    messages = body_of(listed)["messages"]
    assert [(m["direction"], m["sender_kind"]) for m in messages] == [
        ("outbound", "staff"),
        ("system", "system"),
    ]
    assert messages[0]["twilio_sid"] == text["sid"]
    assert body_of(listed)["next"] is None


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        ({"body": ""}, "application/json", 400, "field 'body' must be a non-empty string"),
        ({"body": "x" * 1601}, "application/json", 400, "longer than 1600 characters"),
        ({}, "application/json", 400, "field 'body' must be a non-empty string"),
        ({"body": "hi"}, "text/plain", 415, "Content-Type must be application/json"),
        ("[1]", "application/json", 400, "JSON object"),
    ],
)
def test_replies_send_route_refuses_bad_requests(
    sample_lead: str,
    invoke: Invoke,
    stand_ins: Any,
    body: Any,
    content_type: str,
    status: int,
    message: str,
) -> None:
    event = sample("lead_update", "messages_send")
    event["headers"]["content-type"] = content_type
    event["body"] = body if isinstance(body, str) else json.dumps(body)

    response = invoke("lead_update", event)

    assert response["statusCode"] == status
    assert message in body_of(response)["message"]
    assert stand_ins[1].requests == 0


def test_replies_send_route_answers_409_for_an_opted_out_lead_and_404_for_none(
    sample_lead: str, invoke: Invoke, db: pg8000.native.Connection, stand_ins: Any
) -> None:
    db.run("UPDATE leads SET opted_out_at = now() WHERE id = :id", id=sample_lead)
    missing = copy.deepcopy(sample("lead_update", "messages_send"))
    other = "5e1f0000-0000-4000-8000-00000000ffff"
    missing["pathParameters"] = {"lead_id": other}
    missing["rawPath"] = missing["requestContext"]["http"]["path"] = f"/leads/{other}/messages"

    opted_out = invoke("lead_update", sample("lead_update", "messages_send"))
    unknown = invoke("lead_update", missing)

    assert (opted_out["statusCode"], body_of(opted_out)) == (
        409,
        {"message": "lead opted out of texts"},
    )
    assert unknown["statusCode"] == 404
    assert stand_ins[1].requests == 0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": "0"}, "query parameter 'limit' must be 1 to 200"),
        ({"limit": "ten"}, "query parameter 'limit' must be a whole number"),
        ({"next": "not-a-cursor"}, "query parameter 'next' is not a cursor from this API"),
        ({"before": "x"}, "unknown query parameter 'before' (it takes limit, next)"),
    ],
)
def test_replies_list_route_refuses_bad_paging(
    sample_lead: str, invoke: Invoke, query: dict[str, str], message: str
) -> None:
    event = sample("lead_update", "messages_list")
    event["queryStringParameters"] = query

    response = invoke("lead_update", event)

    assert (response["statusCode"], body_of(response)) == (400, {"message": message})


def test_replies_patch_refuses_a_non_boolean_human_control(
    sample_lead: str, invoke: Invoke
) -> None:
    event = sample("lead_update", "patch_human_control")
    event["body"] = json.dumps({"human_control": "yes"})

    response = invoke("lead_update", event)

    assert response["statusCode"] == 400
    assert body_of(response) == {"message": "field 'human_control' must be true or false"}


# -- the queue-triggered functions -------------------------------------------------------------


def test_replies_responder_and_outcome_handlers_send_once_and_store_once(
    reply_env: dict[str, str],
    aws_env: None,
    invoke: Invoke,
    stand_ins: Any,
    db: pg8000.native.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, twilio = stand_ins
    job_event = sample("sms_responder", "sqs_job")
    key = json.loads(job_event["Records"][0]["body"])["key"]
    db.run("DELETE FROM messages WHERE external_id = :k", k=key)
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="outcomes")["QueueUrl"]
        monkeypatch.setenv("REPLY_OUTCOME_QUEUE_URL", url)
        container.set_runtime(None)

        first = invoke("sms_responder", job_event)
        redelivered = invoke("sms_responder", job_event)
        queued = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        outcome_event = sample("sms_outcome", "sqs_outcome")
        record = outcome_event["Records"][0]
        stored = []
        for message in queued:
            record["body"] = message["Body"]
            stored.append(invoke("sms_outcome", outcome_event))

    assert first == redelivered == {"batchItemFailures": []}
    [text] = [m for m in twilio.sent if m["to"] == JOB_CUSTOMER]
    assert text["body"].startswith("Hi there! You said: Do you rent e-bikes?")
    assert len(queued) == 2
    assert {json.loads(m["Body"])["twilio_sid"] for m in queued} == {text["sid"]}
    assert stored == [{"batchItemFailures": []}] * 2
    rows = db.run(
        "SELECT direction, sender_kind, twilio_sid FROM messages WHERE external_id = :k", k=key
    )
    assert rows == [["outbound", "agent", text["sid"]]]
    db.run("DELETE FROM messages WHERE external_id = :k", k=key)


def test_replies_responder_fails_a_malformed_job_for_the_dead_letter_queue(
    reply_env: dict[str, str], aws_env: None, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = sample("sms_responder", "sqs_job")
    event["Records"][0]["body"] = json.dumps({"key": "reply:x", "kind": "poem"})
    with mock_aws():
        url = boto3.client("sqs").create_queue(QueueName="outcomes")["QueueUrl"]
        monkeypatch.setenv("REPLY_OUTCOME_QUEUE_URL", url)
        container.set_runtime(None)

        response = invoke("sms_responder", event)

    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
