"""Fixtures' helpers for the reply path: stand-ins, settings and a wired pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from devkit.standins import AgentStandIn, TwilioStandIn
from leadlookup import container
from leadlookup.config import Settings
from leadlookup.container import Runtime
from leadlookup.usecases.replies import ReplyPipeline


class RecordingReplyMetrics:
    """Counts and latency samples in dicts."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.samples: dict[str, list[float]] = {}

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def milliseconds(self, name: str, value: float) -> None:
        self.samples.setdefault(name, []).append(value)


# The agent's quiet time that ends its turn, short in tests (the stand-in answers at once);
# the turn rules themselves never depend on it (tool delays in the tests are longer).
TEST_SETTLE_MS = 200


def reply_settings(
    settings: Settings, agent: AgentStandIn, twilio: TwilioStandIn, **overrides: Any
) -> Settings:
    """``settings`` pointed at the stand-ins, secrets given as plain values."""
    env = {
        **dict(settings.env),
        "ELEVENLABS_API_KEY": overrides.pop("api_key", agent.api_key) or "",
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
    }
    return dataclasses.replace(
        settings,
        elevenlabs_agent_id=agent.agent_id,
        elevenlabs_ws_url=agent.url,
        elevenlabs_api_url=agent.api_url,
        twilio_account_sid=twilio.account_sid,
        twilio_api_url=twilio.url,
        twilio_timeout_ms=overrides.pop("twilio_timeout_ms", 2000),
        sms_reply_settle_ms=overrides.pop("sms_reply_settle_ms", TEST_SETTLE_MS),
        env=env,
        **overrides,
    )


def wire(runtime: Runtime, metrics: RecordingReplyMetrics) -> ReplyPipeline:
    """An in-process pipeline for ``runtime``'s service, installed for the SMS processor."""
    replies = container.build_replies(runtime.service, metrics_sink=metrics)
    runtime.use_replies(replies)
    return replies.pipeline


@pytest.fixture(scope="session")
def agent_server() -> Iterator[AgentStandIn]:
    """One agent stand-in for the session (starting and stopping one costs ~0.5 s)."""
    stand_in = AgentStandIn().start()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="session")
def twilio_server() -> Iterator[TwilioStandIn]:
    """One Twilio stand-in for the session."""
    stand_in = TwilioStandIn().start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def agent(agent_server: AgentStandIn) -> AgentStandIn:
    """The agent stand-in, reset to normal for this test."""
    agent_server.reset()
    return agent_server


@pytest.fixture
def twilio(twilio_server: TwilioStandIn) -> TwilioStandIn:
    """The Twilio stand-in, reset for this test."""
    twilio_server.reset()
    return twilio_server


def exercise_reply_metrics(invoke: Any, monkeypatch: pytest.MonkeyPatch, sample_job: dict) -> None:
    """Every reply metric, emitted by the real responder handler against the stand-ins.

    A reply sent (and its latency), a fallback (agent silent past the deadline), a send that
    failed (Twilio 500 throughout), a text without words, a text cut to 1,600 characters and a
    job skipped for want of configuration.
    """
    import copy
    import json

    import boto3
    from moto import mock_aws

    agent, twilio = AgentStandIn().start(), TwilioStandIn().start()
    try:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "ELEVENLABS_AGENT_ID": agent.agent_id,
            "ELEVENLABS_WS_URL": agent.url,
            "ELEVENLABS_API_URL": agent.api_url,
            "ELEVENLABS_API_KEY": agent.api_key or "",
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_API_URL": twilio.url,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "SMS_REPLY_DEADLINE_MS": "300",
            "SMS_REPLY_SETTLE_MS": "50",
        }.items():
            monkeypatch.setenv(name, value)
        with mock_aws():
            sqs = boto3.client("sqs", region_name="us-east-1")
            monkeypatch.setenv(
                "REPLY_OUTCOME_QUEUE_URL", sqs.create_queue(QueueName="outcomes")["QueueUrl"]
            )
            container.set_runtime(None)

            def run(key: str, **fields: Any) -> None:
                event = copy.deepcopy(sample_job)
                job = json.loads(event["Records"][0]["body"])
                event["Records"][0]["body"] = json.dumps({**job, **fields, "key": key})
                invoke("sms_responder", event)

            run("metrics:sent")
            run("metrics:cut", kind="follow_up", body="Long text. " * 200)
            agent.mode = "silent"
            run("metrics:fallback")
            agent.mode = "normal"
            twilio.fail_next = [500, 500, 500]
            run("metrics:failed")
            run("metrics:no-text", body="")
            monkeypatch.delenv("ELEVENLABS_AGENT_ID")
            container.set_runtime(None)
            run("metrics:not-configured")
    finally:
        agent.stop()
        twilio.stop()
        container.set_runtime(None)


def exercise_delivery_metrics(
    invoke: Any, monkeypatch: pytest.MonkeyPatch, database_url: str, sample_outcome: dict
) -> None:
    """SmsDeliveryFailed, emitted by the real outcome handler: a text Twilio accepted (the
    sample outcome, stored first), then reported undelivered by its status callback."""
    import copy
    import json
    import uuid

    from leadlookup.container import set_runtime
    from leadlookup.domain.delivery import DeliveryUpdate

    monkeypatch.setenv("DATABASE_URL", database_url)
    set_runtime(None)
    container.set_runtime(None)
    sid = f"SM{uuid.uuid4().hex}"
    outcome_event = copy.deepcopy(sample_outcome)
    outcome = json.loads(outcome_event["Records"][0]["body"])
    outcome.update(key=f"reply:metrics:{sid}", twilio_sid=sid, lead_id=None)
    outcome_event["Records"][0]["body"] = json.dumps(outcome)
    status_event = copy.deepcopy(outcome_event)
    update = DeliveryUpdate(sid, "undelivered", 30007)
    status_event["Records"][0]["body"] = json.dumps(update.to_json())

    assert invoke("sms_outcome", outcome_event) == {"batchItemFailures": []}
    assert invoke("sms_outcome", status_event) == {"batchItemFailures": []}
    container.set_runtime(None)


@pytest.fixture
def reply_metrics() -> RecordingReplyMetrics:
    """Counts and latencies the replies emit, recorded for assertions."""
    return RecordingReplyMetrics()


@pytest.fixture
def wired(
    settings: Settings,
    agent: AgentStandIn,
    twilio: TwilioStandIn,
    make_runtime: Any,
    reply_metrics: RecordingReplyMetrics,
) -> Iterator[tuple[Runtime, ReplyPipeline]]:
    """A runtime whose replies reach the stand-ins in-process; (runtime, its pipeline)."""
    runtime = make_runtime(reply_settings(settings, agent, twilio, sms_reply_deadline_ms=3000))
    pipeline = wire(runtime, reply_metrics)
    yield runtime, pipeline
    container.set_runtime(None)
