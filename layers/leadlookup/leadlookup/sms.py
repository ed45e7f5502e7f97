"""Inbound SMS from Twilio, storage first (design section 3.2).

The webhook verifies ``X-Twilio-Signature`` and hands the received form fields to a queue
(:mod:`leadlookup.queue`: the FIFO queue ``INBOUND_SMS_QUEUE_URL``, or this module's processor
in-process when it is unset); the processor stores each message once, keyed by ``MessageSid``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from leadlookup.auth import verify_twilio_signature
from leadlookup.errors import (
    InvalidInput,
    LookupServiceError,
)
from leadlookup.http import raw_body
from leadlookup.models import InboundMessage
from leadlookup.observability import logger
from leadlookup.phones import mask_phone
from leadlookup.queue import fifo_id, queue_for
from leadlookup.service import LookupService

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
TWIML_CONTENT_TYPE = "text/xml"

# Twilio's default keywords (a whole body, trimmed, any case). Twilio itself stops delivering
# to a number that sent one of these, so the lead's state mirrors what Twilio enforces.
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
# With Advanced Opt-Out, Twilio classifies the message itself (custom keywords included).
_OPT_OUT_TYPES = {"STOP": "out", "START": "in", "HELP": None}

# The MessageSid is the FIFO deduplication id, so it must be one as it is: at most 128
# characters, letters, digits and punctuation (no spaces).
_MESSAGE_SID = re.compile(r"[\x21-\x7e]{1,128}")

FormPairs = list[tuple[str, str]]
Message = dict[str, Any]

# -- the request: form fields -----------------------------------------------------------------


def parse_form(raw: bytes) -> FormPairs:
    """``application/x-www-form-urlencoded`` pairs in order, blank values kept.

    Twilio sends UTF-8; undecodable bytes become U+FFFD, so such a body cannot match a
    signature instead of failing to parse.
    """
    return parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)


def form_fields(pairs: Iterable[tuple[str, str]]) -> Message:
    """Form pairs as a dict; a repeated name keeps every value, in order, as a list."""
    fields: Message = {}
    for name, value in pairs:
        if name not in fields:
            fields[name] = value
        elif isinstance(fields[name], list):
            fields[name].append(value)
        else:
            fields[name] = [fields[name], value]
    return fields


# -- the message ---------------------------------------------------------------------------


def first_value(message: Mapping[str, Any], name: str) -> str | None:
    """The (first) value of a form field, or None when it is absent."""
    value = message.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def validated_message(message: object) -> Message:
    """A queued message (Twilio's form fields), or :class:`InvalidInput` naming the problem."""
    if not isinstance(message, dict):
        raise InvalidInput("message must be a JSON object of form fields")
    for name, value in message.items():
        text = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        )
        if not text:
            raise InvalidInput(f"field {str(name)[:40]!r} must be text")
    sid = first_value(message, "MessageSid")
    if not sid:
        raise InvalidInput("field 'MessageSid' is required")
    if not _MESSAGE_SID.fullmatch(sid):
        raise InvalidInput("field 'MessageSid' is not a message id")
    return message


def message_group_id(to: str | None, sender: str | None) -> str:
    """``<To>:<From>``: one conversation is one FIFO group, so it is processed in order.

    Characters SQS refuses in a group id (spaces in alphanumeric sender ids) become ``_``;
    the group only orders delivery, so a rare merge of two groups is harmless.
    """
    return fifo_id(f"{to or ''}:{sender or ''}")


def opt_change(message: Mapping[str, Any]) -> str | None:
    """``"out"`` for an opt-out keyword, ``"in"`` for an opt-in one, else None."""
    classified = (first_value(message, "OptOutType") or "").strip().upper()
    if classified in _OPT_OUT_TYPES:
        return _OPT_OUT_TYPES[classified]
    keyword = (first_value(message, "Body") or "").strip().upper()
    if keyword in OPT_OUT_KEYWORDS:
        return "out"
    if keyword in OPT_IN_KEYWORDS:
        return "in"
    return None


def _parties(message: Mapping[str, Any]) -> dict[str, Any]:
    # Masked: logs never hold a full phone number.
    return {
        "sender": mask_phone(first_value(message, "From")),
        "to": mask_phone(first_value(message, "To")),
    }


# -- the processor -------------------------------------------------------------------------


def _storable(fields: Message) -> Message:
    """The fields without NUL characters, which PostgreSQL text and jsonb cannot hold.

    The signature was checked on the fields as received; what is stored drops only NULs, so
    such a message is kept (minus the NULs) instead of failing until the dead-letter queue.
    """

    def clean(value: Any) -> Any:
        if isinstance(value, list):
            return [clean(item) for item in value]
        return value.replace("\x00", "") if isinstance(value, str) else value

    return {clean(name): clean(value) for name, value in fields.items()}


def inbound_message(fields: Mapping[str, Any]) -> InboundMessage:
    """The message to store from a queued message's fields (validated, NULs dropped)."""
    stored = _storable(validated_message(dict(fields)))
    return InboundMessage(
        message_sid=str(first_value(stored, "MessageSid")),
        from_number=first_value(stored, "From"),
        to_number=first_value(stored, "To"),
        body=first_value(stored, "Body") or "",
        params=stored,
        opt_change=opt_change(stored),
    )


def process_message(service: LookupService, fields: Mapping[str, Any]) -> bool:
    """Store one inbound SMS once (lead found or created by ``From``); whether it was new."""
    message = inbound_message(fields)
    organization = service.get_organization_by_phone(message.to_number)
    # A short code or alphanumeric sender is nobody's lead: store the message without one.
    lead = None
    if service.normalize(message.from_number) is not None:
        lead = service.find_or_create_lead(message.from_number, organization.id)
    inserted = service.record_inbound_message(message, organization.id, lead)
    logger.info(
        "inbound sms stored" if inserted else "inbound sms already stored",
        message_sid=message.message_sid,
        lead_id=lead.id if lead else None,
        opt_change=message.opt_change,
        **_parties(message.params),
    )
    # Stored first; only then the reply (on every delivery: a job that could not be queued
    # is queued when the queue delivers this message again).
    from leadlookup.replies.wiring import pipeline_for

    decision = pipeline_for(service).after_inbound(
        organization, lead, message.message_sid, message.body, message.opt_change
    )
    logger.info("reply decision", message_sid=message.message_sid, decision=decision)
    return inserted


def process_record(service: LookupService, body: str, message_id: str | None = None) -> bool:
    """Process one queue record's body (JSON form fields); failures are logged, then raised.

    A malformed record raises :class:`InvalidInput` every time, so the queue's redrive
    policy moves it to the dead-letter queue; a dependency outage raises
    :class:`Unavailable` and the queue delivers the record again later.
    """
    try:
        message = json.loads(body)
    except (TypeError, ValueError, RecursionError):
        logger.error(
            "inbound sms record is not JSON; failing it until it is dead-lettered",
            message_id=message_id,
            body_chars=len(body) if isinstance(body, str) else None,
        )
        raise InvalidInput("queued message is not valid JSON") from None
    try:
        return process_message(service, message)
    except InvalidInput as exc:
        parties = _parties(message) if isinstance(message, dict) else {}
        logger.error(
            "inbound sms record was refused; failing it until it is dead-lettered",
            message_id=message_id,
            reason=str(exc),
            **parties,
        )
        raise
    except LookupServiceError as exc:
        logger.warning(
            "inbound sms not stored; the queue will deliver it again",
            message_id=message_id,
            error=type(exc).__name__,
            reason=str(exc),
        )
        raise


# -- the webhook ---------------------------------------------------------------------------


def receive(event: dict[str, Any], service: LookupService) -> str:
    """Check an inbound SMS webhook and hand it to the queue; its ``MessageSid``.

    413 over ``MAX_BODY_BYTES``, 403 on a missing or wrong signature, 400 without a
    ``MessageSid``, 503 when the queue cannot take it (Twilio retries, if told to, on 5xx).
    """
    settings = service.settings
    pairs = parse_form(raw_body(event, settings.max_body_bytes))
    verify_twilio_signature(event, pairs, settings)
    message = validated_message(form_fields(pairs))
    sid = str(first_value(message, "MessageSid"))
    queue = queue_for(settings.inbound_sms_queue_url, lambda body: process_message(service, body))
    queue.send(
        message,
        deduplication_id=sid,
        group_id=message_group_id(first_value(message, "To"), first_value(message, "From")),
    )
    # The sid only: masking the numbers needs phonenumbers, which the webhook's cold start
    # does without (design section 9); the processor logs the masked parties when it stores.
    logger.info("inbound sms accepted", message_sid=sid)
    return sid
