"""Delivery status of outbound texts: Twilio's status callbacks, verified, queued, stored.

Every send names ``StatusCallback`` (``POST /webhooks/twilio/status`` of this stack). At each
change of the message's status Twilio posts a form there, signed like an inbound SMS
(``X-Twilio-Signature`` over the URL and every field): ``MessageSid``, ``MessageStatus``
(queued, sent, delivered, undelivered, failed, read...), ``ErrorCode`` when it failed
(30003-30008 unreachable or filtered, 30034 unregistered sender, 21610 opted out),
``AccountSid``, ``From``, ``To`` and more that Twilio adds without notice.

Storage first, like inbound SMS: the webhook (outside the VPC, no database) verifies and puts
the update on the reply outcome queue; the outcome function (in the VPC) stores it on the
outbound row with that Twilio SID. Callbacks come in any order and more than once, so a
status only moves up :data:`STATUS_RANK`: a late ``sent`` never overwrites ``delivered``, a
redelivery changes nothing, and ``failed``/``undelivered``/``canceled`` are final.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from leadlookup.errors import InvalidInput, LookupServiceError

# The one ranking of a message's statuses (Twilio's, plus none). A stored status changes
# only to one ranked higher; the failures share the top rank, so nothing replaces them.
STATUS_RANK: Mapping[str, int] = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 2,
    "sending": 3,
    "sent": 4,
    "delivered": 5,
    "read": 6,
    "undelivered": 7,
    "failed": 7,
    "canceled": 7,
}
# Texts Twilio accepted but could not deliver: counted and alarmed.
FAILED_STATUSES = frozenset({"undelivered", "failed"})
# The outcome queue's message kind of a delivery update (a reply outcome has no kind).
KIND = "delivery_status"
# A callback can overtake its own send's outcome (both travel through queues): a callback for
# a SID not stored yet is retried through the queue's redelivery (each a visibility timeout
# later) until its record has been received this many times, then dropped. Below the
# queue's maxReceiveCount (5), so it never reaches the dead-letter queue for this.
UNKNOWN_SID_RECEIVES = 3

_MESSAGE_SID = re.compile(r"[\x21-\x7e]{1,128}")
_STATUS = re.compile(r"[a-z_]{1,32}")
_ERROR_CODE = re.compile(r"[0-9]{1,9}")


class MessageNotYetStored(LookupServiceError):
    """A status for a Twilio SID whose send outcome is not stored yet: retry it later."""


def rank(status: str | None) -> int:
    """The status's place in :data:`STATUS_RANK` (0 for none or one Twilio may add later)."""
    return STATUS_RANK.get(status or "", 0)


@dataclass(frozen=True)
class DeliveryUpdate:
    """One status callback, as the outcome queue carries it."""

    message_sid: str
    status: str
    error_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the outcome queue's message body, with its ``kind``)."""
        return {
            "kind": KIND,
            "message_sid": self.message_sid,
            "status": self.status,
            "error_code": self.error_code,
        }

    @classmethod
    def from_json(cls, data: object) -> DeliveryUpdate:
        """An update from a queue message; :class:`InvalidInput` when it is not one."""
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise InvalidInput("delivery update must be a JSON object of kind 'delivery_status'")
        sid, status, code = data.get("message_sid"), data.get("status"), data.get("error_code")
        if not isinstance(sid, str) or not _MESSAGE_SID.fullmatch(sid):
            raise InvalidInput("delivery update field 'message_sid' is not a message id")
        if not isinstance(status, str) or not _STATUS.fullmatch(status):
            raise InvalidInput("delivery update field 'status' is not a message status")
        if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
            raise InvalidInput("delivery update field 'error_code' must be a number")
        return cls(sid, status, code)


def is_delivery_update(body: object) -> bool:
    """Whether an outcome queue message is a delivery update (else a reply outcome)."""
    return isinstance(body, dict) and body.get("kind") == KIND


def _field(fields: Mapping[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def parse_update(pairs: list[tuple[str, str]]) -> DeliveryUpdate:
    """The update a status callback's form fields report; 400 naming the field that is wrong."""
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    sid = _field(fields, "MessageSid")
    if not sid:
        raise InvalidInput("field 'MessageSid' is required")
    if not _MESSAGE_SID.fullmatch(sid):
        raise InvalidInput("field 'MessageSid' is not a message id")
    status = (_field(fields, "MessageStatus") or "").strip().lower()
    if not status:
        raise InvalidInput("field 'MessageStatus' is required")
    if not _STATUS.fullmatch(status):
        raise InvalidInput("field 'MessageStatus' is not a message status")
    code_text = (_field(fields, "ErrorCode") or "").strip()
    if code_text and not _ERROR_CODE.fullmatch(code_text):
        raise InvalidInput("field 'ErrorCode' must be a number")
    return DeliveryUpdate(sid, status, int(code_text) if code_text else None)
