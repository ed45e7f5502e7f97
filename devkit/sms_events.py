"""Sample Twilio webhook events: building, signing, and re-signing them for `make events`.

The events are API Gateway HTTP API (payload 2.0) requests as Twilio's POST arrives: the form
body base64-encoded, headers lower-cased. Inbound SMS (``events/sms_webhook``) go to
``/webhooks/twilio/sms``, the delivery statuses of our sends (``events/twilio_status``, for
the same function) to ``/webhooks/twilio/status``. They are signed with the test auth token
documented in the README; each folder's ``forged.json`` is signed with another token so it
stays wrong.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from leadlookup.api.auth import TWILIO_SIGNATURE_HEADER, twilio_request_url, twilio_signature
from leadlookup.api.webhooks import parse_form

TEST_AUTH_TOKEN = "test-twilio-auth-token"  # noqa: S105 - the documented test secret
FORGED_AUTH_TOKEN = "not-the-twilio-auth-token"  # noqa: S105 - signs forged.json wrongly
SIGNED_EVENTS = ("signed.json", "short_code.json", "stop.json")
FORGED_EVENTS = ("forged.json",)
EVENTS_SUBDIR = "sms_webhook"
STATUS_SIGNED_EVENTS = ("delivered.json", "undelivered.json")
STATUS_EVENTS_SUBDIR = "twilio_status"

DOMAIN = "abc123xyz.execute-api.us-east-1.amazonaws.com"
ROUTE_PATH = "/webhooks/twilio/sms"
STATUS_PATH = "/webhooks/twilio/status"
# The outbound text the sample status events report on: the one events/sms_outcome stores.
SAMPLE_STATUS_SID = "SM9f8e7d6c5b4a39281706f5e4d3c2b1a0"
TWILIO_USER_AGENT = "TwilioProxy/1.1"
TWILIO_SOURCE_IP = "54.244.51.3"


def sign_twilio(
    url: str, params: Mapping[str, Any] | Iterable[tuple[str, str]], token: str = TEST_AUTH_TOKEN
) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a POST of ``params`` to ``url``."""
    return twilio_signature(url, params, token)


def event_params(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The form pairs of a webhook event (base64 undone, blank values kept)."""
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    return parse_form(raw)


def set_params(event: dict[str, Any], pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Replace an event's form body (base64, as HTTP API delivers it) and its content-length."""
    raw = urlencode(list(pairs)).encode()
    event["body"] = base64.b64encode(raw).decode()
    event["isBase64Encoded"] = True
    headers = event.setdefault("headers", {})
    headers["content-length"] = str(len(raw))
    # Twilio sends one idempotency token per request; derived from the body, it stays stable.
    headers["i-twilio-idempotency-token"] = str(uuid.uuid5(uuid.NAMESPACE_URL, raw.decode()))
    return event


def sign_event(
    event: dict[str, Any], token: str = TEST_AUTH_TOKEN, public_base_url: str | None = None
) -> dict[str, Any]:
    """Set the event's ``x-twilio-signature`` for its own URL and form fields."""
    url = twilio_request_url(event, public_base_url)
    event.setdefault("headers", {})[TWILIO_SIGNATURE_HEADER.lower()] = sign_twilio(
        url, event_params(event), token
    )
    return event


def webhook_event(
    pairs: Iterable[tuple[str, str]],
    *,
    token: str | None = TEST_AUTH_TOKEN,
    raw_query: str = "",
    stage: str = "$default",
    domain: str = DOMAIN,
    request_id: str = "C9kPFj1bIAMEVQA=",
    time_epoch: int = 1795631400000,
    route_path: str = ROUTE_PATH,
) -> dict[str, Any]:
    """A Twilio POST (inbound SMS, or ``route_path`` STATUS_PATH for a delivery status) as
    HTTP API hands it over; signed unless ``token`` is None."""
    raw_path = route_path if stage == "$default" else f"/{stage}{route_path}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"POST {route_path}",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": {
            "accept": "*/*",
            "cache-control": "max-age=259200",
            "content-type": "application/x-www-form-urlencoded",
            "host": domain,
            "user-agent": TWILIO_USER_AGENT,
            "x-amzn-trace-id": "Root=1-6745a1b2-7c1e2d3f4a5b6c7d8e9f0a1b",
            "x-forwarded-for": TWILIO_SOURCE_IP,
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            "x-home-region": "us1",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": domain.split(".")[0],
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": "POST",
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": TWILIO_SOURCE_IP,
                "userAgent": TWILIO_USER_AGENT,
            },
            "requestId": request_id,
            "routeKey": f"POST {route_path}",
            "stage": stage,
            "time": "25/Nov/2026:18:30:00 +0000",
            "timeEpoch": time_epoch,
        },
        "body": "",
        "isBase64Encoded": True,
    }
    set_params(event, pairs)
    if token is not None:
        sign_event(event, token)
    return event


def status_fields(
    message_sid: str,
    status: str,
    error_code: int | None = None,
    to: str = "+12505550112",
    sender: str = "+17786528784",
) -> list[tuple[str, str]]:
    """The form fields of a status callback, as Twilio posts them for an SMS."""
    fields = [
        ("SmsSid", message_sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", to),
        ("MessageSid", message_sid),
        ("AccountSid", "AC5e1f0c9b7d3a4e6f8a2b1c0d9e8f7a6b"),
        ("From", sender),
        ("ApiVersion", "2010-04-01"),
    ]
    if error_code is not None:
        fields.append(("ErrorCode", str(error_code)))
    if status == "delivered":
        fields.append(("RawDlrDoneDate", "2611251830"))
    return fields


def status_event(
    message_sid: str,
    status: str,
    error_code: int | None = None,
    *,
    token: str | None = TEST_AUTH_TOKEN,
    **options: Any,
) -> dict[str, Any]:
    """A signed status callback for ``message_sid`` (``options``: :func:`webhook_event`'s)."""
    pairs = status_fields(message_sid, status, error_code)
    return webhook_event(pairs, token=token, route_path=STATUS_PATH, **options)


def resign(events_dir: Path, token: str = TEST_AUTH_TOKEN) -> list[Path]:
    """Re-sign the signed events under ``events_dir/sms_webhook`` and ``twilio_status``.

    The files signed, in that order. Each ``forged.json`` is re-signed with a token that is
    not the test one, so it stays a well-formed but wrong signature whatever its body.
    """
    signed: list[Path] = []
    batches = (
        (EVENTS_SUBDIR, SIGNED_EVENTS, token),
        (EVENTS_SUBDIR, FORGED_EVENTS, FORGED_AUTH_TOKEN),
        (STATUS_EVENTS_SUBDIR, STATUS_SIGNED_EVENTS, token),
        (STATUS_EVENTS_SUBDIR, FORGED_EVENTS, FORGED_AUTH_TOKEN),
    )
    for subdir, names, signing_token in batches:
        for name in names:
            path = Path(events_dir) / subdir / name
            if not path.exists():
                continue
            event = json.loads(path.read_text())
            sign_event(event, signing_token)
            text = json.dumps(event, indent=2) + "\n"
            if path.read_text() != text:
                path.write_text(text)
            signed.append(path)
    return signed
