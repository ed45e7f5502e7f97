"""API Gateway and SQS events for the bench, built from the sample events under ``events/``."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

from devkit.lambda_env import ROOT
from devkit.sms_events import event_params, webhook_event

EVENTS = ROOT / "events"
STORE_PHONE = "+17786528784"  # the seeded default organization's number


def _load(events_dir: Path, relative: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((events_dir / relative).read_text())
    return data


def message_sid() -> str:
    """A fresh Twilio ``MessageSid`` (SM + 32 hex digits)."""
    return "SM" + uuid.uuid4().hex


class EventFactory:
    """Fresh copies of the sample events with the caller, message or lead of the moment."""

    def __init__(self, events_dir: Path = EVENTS) -> None:
        self._initiation = _load(events_dir, "conversation_initiation/known_caller.json")
        self._sms_pairs = event_params(_load(events_dir, "sms_webhook/signed.json"))
        self._record = _load(events_dir, "sms_processor/sqs_batch.json")["Records"][0]
        self._patch = _load(events_dir, "lead_update/patch_valid.json")
        self._get = _load(events_dir, "lead_update/get.json")
        self._list = _load(events_dir, "lead_update/list.json")

    def initiation(self, caller: str | None, called: str = STORE_PHONE) -> dict[str, Any]:
        """A conversation-initiation webhook from ``caller`` to ``called``."""
        event = copy.deepcopy(self._initiation)
        request = json.loads(event["body"])
        request["called_number"] = called
        if caller is None:
            request.pop("caller_id", None)
        else:
            request["caller_id"] = caller
        request["call_sid"] = "CA" + uuid.uuid4().hex
        event["body"] = json.dumps(request)
        event["headers"]["content-length"] = str(len(event["body"]))
        return event

    def sms_fields(self, sender: str, body: str = "Do you rent e-bikes?") -> dict[str, str]:
        """Twilio's inbound-SMS form fields (as in the sample) for a new message from ``sender``."""
        sid = message_sid()
        fields = dict(self._sms_pairs)
        fields.update(
            {"From": sender, "To": STORE_PHONE, "Body": body},
            MessageSid=sid,
            SmsSid=sid,
            SmsMessageSid=sid,
        )
        return fields

    def sms_webhook(self, sender: str) -> dict[str, Any]:
        """A signed Twilio SMS webhook (signed with the documented test auth token)."""
        return webhook_event(list(self.sms_fields(sender).items()))

    def sqs_batch(self, senders: list[str]) -> dict[str, Any]:
        """An SQS FIFO batch as the processor receives it: one record per sender."""
        records = []
        for sender in senders:
            fields = self.sms_fields(sender)
            record = copy.deepcopy(self._record)
            record["messageId"] = str(uuid.uuid4())
            record["body"] = json.dumps(fields, separators=(",", ":"))
            record["attributes"]["MessageGroupId"] = f"{fields['To']}:{sender}"
            record["attributes"]["MessageDeduplicationId"] = fields["MessageSid"]
            records.append(record)
        return {"Records": records}

    def patch(self, lead_id: str) -> dict[str, Any]:
        """The sample merge-patch of a lead, without ``If-Match`` (last writer wins)."""
        event = self._for_lead(self._patch, lead_id)
        event["headers"].pop("if-match", None)
        return event

    def get_lead(self, lead_id: str) -> dict[str, Any]:
        """``GET /leads/{lead_id}``."""
        return self._for_lead(self._get, lead_id)

    def inbox(
        self, organization_id: str, limit: int = 50, if_none_match: str | None = None
    ) -> dict[str, Any]:
        """``GET /leads?limit=`` by a staff member of ``organization_id`` (its first page)."""
        event = copy.deepcopy(self._list)
        event["rawQueryString"] = f"limit={limit}"
        event["queryStringParameters"] = {"limit": str(limit)}
        claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
        claims["cognito:groups"] = f"[org-{organization_id}]"
        if if_none_match is not None:
            event["headers"]["if-none-match"] = if_none_match
        return event

    @staticmethod
    def _for_lead(template: dict[str, Any], lead_id: str) -> dict[str, Any]:
        event = copy.deepcopy(template)
        path = f"/leads/{lead_id}"
        event["rawPath"] = path
        event["requestContext"]["http"]["path"] = path
        event["pathParameters"] = {"lead_id": lead_id}
        return event
