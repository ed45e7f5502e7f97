"""Delivery statuses are stored first too: while PostgreSQL is down Twilio still gets 200 for
every status callback (the update waits in the reply outcome queue, moto here), and once the
database is back the outcome processor applies each update once, in rank order, even when
SQS delivers a batch twice; a callback for a text never stored is dropped, not dead-lettered."""

from __future__ import annotations

import json
import uuid

import pytest
from moto import mock_aws

from devkit.proxy import TcpProxy
from devkit.sms_events import status_event
from leadlookup.config import DEFAULT_ORGANIZATION_ID
from leadlookup.metrics import SMS_DELIVERY_FAILED
from tests.support.faults import (
    STORE_NUMBER,
    TWIML,
    Figures,
    Invoke,
    create_standard_queue,
    db_connection,
    drain,
    new_phone,
    queued_count,
    reset_container,
    timed,
)

WEBHOOK = "sms_webhook"
PROCESSOR = "sms_outcome"
# Texts whose callbacks arrive before the outage, and during it.
HEALTHY = 2
DURING = 4


def _store_texts(database_url: str, count: int) -> list[str]:
    """Outbound texts Twilio accepted (status queued); their Twilio SIDs."""
    sids = [f"SM{uuid.uuid4().hex}" for _ in range(count)]
    with db_connection(database_url) as conn:
        for sid in sids:
            conn.run(
                "INSERT INTO messages (organization_id, external_id, direction, sender_kind,"
                " from_number, to_number, body, twilio_sid, status)"
                " VALUES (:org, :key, 'outbound', 'agent', :store, :to, 'We do!', :sid, 'queued')",
                org=DEFAULT_ORGANIZATION_ID,
                key=f"reply:faults:{sid}",
                store=STORE_NUMBER,
                to=new_phone(),
                sid=sid,
            )
    return sids


def _statuses(database_url: str, sids: list[str]) -> dict[str, tuple[str, int | None]]:
    with db_connection(database_url) as conn:
        rows = conn.run(
            "SELECT twilio_sid, status, error_code FROM messages WHERE twilio_sid = ANY(:s)",
            s=sids,
        )
    return {sid: (status, code) for sid, status, code in rows}


def _failed_counted(output: str) -> int:
    counted = 0
    for line in output.splitlines():
        if '"_aws"' in line and SMS_DELIVERY_FAILED in line:
            value = json.loads(line)[SMS_DELIVERY_FAILED]
            counted += int(sum(value) if isinstance(value, list) else value)
    return counted


def test_delivery_status_fault_database_down_callbacks_are_queued_then_stored_once(
    pg_proxy: TcpProxy,
    aws_env: None,
    invoke: Invoke,
    database_url: str,
    figures: Figures,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    figures.fault = "PostgreSQL down during delivery status callbacks (standard queue: moto)"
    sids = _store_texts(database_url, HEALTHY + DURING)
    failing = set(sids[HEALTHY::2])
    expected = {
        sid: ("undelivered", 30007) if sid in failing else ("delivered", None) for sid in sids
    }
    callbacks = [
        status_event(sid, *(("undelivered", 30007) if sid in failing else ("delivered",)))
        for sid in sids
    ]
    late_sent = status_event(sids[-1], "sent")  # overtaken by its own delivered
    stranger = status_event(f"SM{uuid.uuid4().hex}", "delivered")  # no such text
    with mock_aws():
        client, url, arn = create_standard_queue("outcomes")
        monkeypatch.setenv("REPLY_OUTCOME_QUEUE_URL", url)
        reset_container()
        for event in callbacks[:HEALTHY]:
            response, ms = timed(invoke, WEBHOOK, event)
            figures.record("healthy", ms, response.get("body") == TWIML, str(response)[:200])
        pg_proxy.set_mode("cut")

        # Twilio retries nothing on a 200: each update must be safe once it is acknowledged.
        for event in [*callbacks[HEALTHY:], callbacks[HEALTHY], late_sent, stranger]:
            response, ms = timed(invoke, WEBHOOK, event)
            ok = response["statusCode"] == 200 and response.get("body") == TWIML
            figures.record("fault", ms, ok, str(response)[:200])
        queued_before_recovery = queued_count(client, url)
        outage_batches = drain(client, url, arn, invoke, PROCESSOR, figures, max_batches=2)
        untouched = _statuses(database_url, sids)
        pg_proxy.set_mode("pass")
        batches = drain(client, url, arn, invoke, PROCESSOR, figures, max_batches=5, deliveries=2)
        left = queued_count(client, url)

    stored = _statuses(database_url, sids)
    counted = _failed_counted(capsys.readouterr().out)
    figures.rows_lost = sum(1 for sid in sids if stored.get(sid) != expected[sid])
    figures.rows_duplicated = counted - len(failing)
    figures.notes.update(
        callbacks=len(callbacks) + 3,
        queued_before_recovery=queued_before_recovery,
        records_failed_while_down=sum(b["failed"] for b in outage_batches),
        batches_after_recovery=len(batches),
        deliveries_per_batch=2,
        failures_counted=counted,
        queue_left=left,
    )

    assert figures.failures == 0, figures.failed
    assert queued_before_recovery == len(callbacks) + 3
    assert outage_batches and all(b["failed"] == b["records"] for b in outage_batches)
    assert set(untouched.values()) == {("queued", None)}
    assert stored == expected
    # Each failed text counted once, though its update was delivered twice and sent twice.
    assert counted == len(failing)
    assert left == 0
