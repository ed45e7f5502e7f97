"""Sign the ElevenLabs post-call sample events with the documented test secret, and build the
post-call processor's sample batch from the signed one.

Signatures expire 30 minutes after they are made, so ``make events`` re-signs the samples
before a ``sam local invoke``; tests instead freeze the clock at each event's timestamp. The
batch holds what the webhook queues for the signed sample (so it follows every re-signing).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TEST_SECRET = "test-elevenlabs-secret"  # noqa: S105 - documented test secret, also in the README
SIGNED = Path("post_call_webhook") / "post_call_signed.json"
EXPIRED = Path("post_call_webhook") / "post_call_expired.json"
# The report the store's live agent sends: every collected value a string, classification
# "sales", hours and directions asked for.
LIVE_AGENT = Path("post_call_webhook") / "post_call_live_agent.json"
BATCH = Path("post_call_processor") / "sqs_batch.json"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:bici-lookups-post-call"
# The expired sample is signed this long before the valid one: far outside the 30-minute window.
EXPIRED_BY_SECONDS = 2 * 60 * 60


def sign_elevenlabs(body: str, secret: str, timestamp: int) -> str:
    """The ``ElevenLabs-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v0={digest}"


def signature_timestamp(event: dict[str, Any]) -> int:
    """The ``t`` of a sample event's signature header (what tests freeze the clock at)."""
    value = event["headers"]["elevenlabs-signature"]
    fields = dict(part.split("=", 1) for part in value.split(","))
    return int(fields["t"])


def sign_event(event: dict[str, Any], secret: str, timestamp: int) -> dict[str, Any]:
    """``event`` with body ``event_timestamp``, request time and signature at ``timestamp``."""
    body = json.loads(event["body"])
    body["event_timestamp"] = timestamp
    text = json.dumps(body, separators=(",", ":"))
    signed = dict(event)
    signed["body"] = text
    signed["headers"] = {
        **event["headers"],
        "content-length": str(len(text.encode())),
        "elevenlabs-signature": sign_elevenlabs(text, secret, timestamp),
    }
    moment = datetime.fromtimestamp(timestamp, UTC)
    signed["requestContext"] = {
        **event["requestContext"],
        "time": moment.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": timestamp * 1000,
    }
    return signed


def resign(events_dir: Path, now: int | None = None, secret: str = TEST_SECRET) -> list[Path]:
    """Re-sign the post-call samples: the valid ones at ``now``, the expired one 2 hours before."""
    timestamp = int(time.time()) if now is None else now
    written = []
    samples = (
        (SIGNED, timestamp),
        (EXPIRED, timestamp - EXPIRED_BY_SECONDS),
        (LIVE_AGENT, timestamp),
    )
    for relative, at in samples:
        path = events_dir / relative
        event = json.loads(path.read_text())
        path.write_text(json.dumps(sign_event(event, secret, at), indent=2) + "\n")
        written.append(path)
    written.append(write_batch(events_dir))
    return written


def queued_bodies(event: dict[str, Any]) -> list[str]:
    """The queue messages the webhook sends for the signed sample and for a second call of the
    same caller without ``lead_id`` (found by phone), as the layer encodes them."""
    from leadlookup.adapters.queue import encode
    from leadlookup.api.webhooks import parse_body, queued_message
    from leadlookup.domain.call_report import parse_post_call

    body = parse_body(event["body"].encode())
    second = copy.deepcopy(body)
    second["data"]["conversation_id"] = body["data"]["conversation_id"] + "_2"
    del second["data"]["conversation_initiation_client_data"]["dynamic_variables"]["lead_id"]
    calls = [parse_post_call(b) for b in (body, second)]
    return [encode(queued_message(call)) for call in calls if call is not None]


def write_batch(events_dir: Path) -> Path:
    """Write the post-call processor's sample SQS batch from the signed sample; its path."""
    event = json.loads((events_dir / SIGNED).read_text())
    sent_ms = signature_timestamp(event) * 1000 + 150
    records = []
    for n, body in enumerate(queued_bodies(event)):
        message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{QUEUE_ARN}/{n}"))
        records.append(
            {
                "messageId": message_id,
                "receiptHandle": f"AQEB{hashlib.sha256(message_id.encode()).hexdigest()}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": str(sent_ms + n),
                    "SenderId": "AROA2EXAMPLEEXAMPLE7:bici-lookups-LeadUpdateFunction-A1b2C3",
                    "ApproximateFirstReceiveTimestamp": str(sent_ms + n + 80),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": "us-east-1",
            }
        )
    path = events_dir / BATCH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"Records": records}, indent=2) + "\n")
    return path
