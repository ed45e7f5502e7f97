"""Sign the ElevenLabs post-call sample events with the documented test secret.

Signatures expire 30 minutes after they are made, so ``make events`` re-signs the samples
before a ``sam local invoke``; tests instead freeze the clock at each event's timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TEST_SECRET = "test-elevenlabs-secret"  # noqa: S105 - documented test secret, also in the README
SIGNED = Path("lead_update") / "post_call_signed.json"
EXPIRED = Path("lead_update") / "post_call_expired.json"
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
    """Re-sign the post-call samples: the signed one at ``now``, the expired one 2 hours earlier."""
    timestamp = int(time.time()) if now is None else now
    written = []
    for relative, at in ((SIGNED, timestamp), (EXPIRED, timestamp - EXPIRED_BY_SECONDS)):
        path = events_dir / relative
        event = json.loads(path.read_text())
        path.write_text(json.dumps(sign_event(event, secret, at), indent=2) + "\n")
        written.append(path)
    return written
