"""The post-call webhook is storage first: while PostgreSQL is down ElevenLabs still gets 200
for every report (the report waits in the post-call queue, moto here), and once the database
is back the processor stores each call exactly once, even when SQS delivers it twice. Audio
and initiation-failure events are acknowledged and dropped at any size, outage or not."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto import mock_aws

from devkit.postcall_events import sign_event
from devkit.proxy import TcpProxy
from leadlookup.config import DEFAULT_ORGANIZATION_ID
from tests.support.db import scalar
from tests.support.faults import (
    Figures,
    Invoke,
    create_standard_queue,
    drain,
    insert_lead,
    lead_row,
    new_phone,
    post_call_event,
    queued_count,
    reset_container,
    sample,
    table_state,
    timed,
)

WEBHOOK = "post_call_webhook"
PROCESSOR = "post_call_processor"
REPORTS = 12
# Delivered before the outage: the webhook's latency with the database up.
HEALTHY = 3
AUDIO_MIB = 6
COUNT_SUMMARIES = "SELECT count(*) FROM call_summaries WHERE conversation_id = :c"


def _body(response: dict[str, Any]) -> Any:
    try:
        return json.loads(response.get("body") or "")
    except ValueError:
        return None


def _dropped_event(kind: str, size: int, at: int) -> dict[str, Any]:
    body = {
        "type": kind,
        "event_timestamp": at,
        "data": {"agent_id": "agent_faults", "conversation_id": kind, "full_audio": "U" * size},
    }
    event = sample("post_call_webhook/post_call_signed")
    event["body"] = json.dumps(body)
    return sign_event(event, "test-elevenlabs-secret", at)


def test_post_call_fault_database_down_reports_are_queued_then_stored_once(
    pg_proxy: TcpProxy,
    aws_env: None,
    invoke: Invoke,
    database_url: str,
    figures: Figures,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    figures.fault = "PostgreSQL down during post-call reports (standard queue: moto)"
    org = DEFAULT_ORGANIZATION_ID
    leads = [insert_lead(database_url, new_phone(), org) for _ in range(HEALTHY + REPORTS)]
    reports = [post_call_event(lead) for lead in leads]
    conversations = [conversation for _, conversation in reports]
    at = int(json.loads(reports[0][0]["body"])["event_timestamp"])
    dropped = [
        _dropped_event("post_call_audio", AUDIO_MIB * 1024 * 1024, at),
        _dropped_event("call_initiation_failure", 1024, at),
    ]
    with mock_aws():
        client, url, arn = create_standard_queue()
        monkeypatch.setenv("POST_CALL_QUEUE_URL", url)
        reset_container()
        for event, _ in reports[:HEALTHY]:
            response, ms = timed(invoke, WEBHOOK, event)
            ok = response["statusCode"] == 200 and _body(response) == {"status": "ok"}
            figures.record("healthy", ms, ok, str(response)[:200])
        pg_proxy.set_mode("cut")

        # ElevenLabs delivers each report once (its retries are off by default).
        for event, _ in reports[HEALTHY:]:
            response, ms = timed(invoke, WEBHOOK, event)
            ok = response["statusCode"] == 200 and _body(response) == {"status": "ok"}
            figures.record("fault", ms, ok, str(response)[:200])
        for event in dropped:
            response, ms = timed(invoke, WEBHOOK, event)
            ok = response["statusCode"] == 200 and _body(response) == {"status": "ignored"}
            figures.record("fault", ms, ok, str(response)[:200])
        queued_before_recovery = queued_count(client, url)
        outage_batches = drain(client, url, arn, invoke, PROCESSOR, figures, max_batches=2)
        pg_proxy.set_mode("pass")
        before_recovery = table_state(database_url)
        batches = drain(client, url, arn, invoke, PROCESSOR, figures, max_batches=5, deliveries=2)
        after_recovery = table_state(database_url)
        left = queued_count(client, url)

    summaries = {c: int(scalar(database_url, COUNT_SUMMARIES, c=c)) for c in conversations}
    increments = [(lead_row(database_url, lead) or {}).get("interaction_count") for lead in leads]
    figures.rows_lost = sum(1 for n in summaries.values() if n == 0)
    figures.rows_duplicated = sum(n - 1 for n in summaries.values() if n > 1)
    figures.notes.update(
        reports=REPORTS,
        audio_mib=AUDIO_MIB,
        healthy_reports=HEALTHY,
        queued_before_recovery=queued_before_recovery,
        records_failed_while_down=sum(b["failed"] for b in outage_batches),
        batches_after_recovery=len(batches),
        deliveries_per_batch=2,
        summaries_stored=sum(summaries.values()),
        increments=sum(n or 0 for n in increments),
        queue_left=left,
    )

    assert figures.failures == 0, figures.failed
    # Every report waited in the queue; the audio and failure events were not queued.
    assert queued_before_recovery == HEALTHY + REPORTS
    assert outage_batches and all(b["failed"] == b["records"] for b in outage_batches)
    assert after_recovery["call_summaries"] - before_recovery["call_summaries"] == len(leads)
    assert summaries == {c: 1 for c in conversations}
    assert increments == [1] * len(leads)
    assert left == 0
