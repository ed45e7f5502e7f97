"""Helpers of the outbound-call tests shared with the dashboard's EMF check."""

from __future__ import annotations

from typing import Any

import pytest

from devkit.standins import AgentStandIn
from leadlookup import container


def exercise_call_metrics(
    invoke: Any, monkeypatch: pytest.MonkeyPatch, sample_job: dict[str, Any]
) -> None:
    """Every outbound-call metric, emitted by the real caller handler against the stand-in: a
    call placed (and its latency) and one ElevenLabs refused."""
    import copy
    import json

    import boto3
    from moto import mock_aws

    agent = AgentStandIn().start()
    try:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "ELEVENLABS_AGENT_ID": agent.agent_id,
            "ELEVENLABS_API_URL": agent.api_url,
            "ELEVENLABS_API_KEY": agent.api_key or "",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("IDEMPOTENCY_TABLE", raising=False)
        with mock_aws():
            sqs = boto3.client("sqs", region_name="us-east-1")
            monkeypatch.setenv(
                "REPLY_OUTCOME_QUEUE_URL", sqs.create_queue(QueueName="outcomes")["QueueUrl"]
            )
            container.set_runtime(None)

            def run(call_id: str) -> None:
                event = copy.deepcopy(sample_job)
                job = json.loads(event["Records"][0]["body"])
                event["Records"][0]["body"] = json.dumps({**job, "call_id": call_id})
                invoke("outbound_call", event)

            run("c0a11000-0000-4000-8000-0000000000e1")
            agent.call_mode = "error"
            run("c0a11000-0000-4000-8000-0000000000e2")
    finally:
        agent.stop()
        container.set_runtime(None)
