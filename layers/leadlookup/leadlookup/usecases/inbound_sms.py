"""Inbound SMS, the processor's side: store each text once, then decide the reply.

The webhook (:mod:`leadlookup.api.webhooks`) verified the text and queued Twilio's form
fields; here they are stored once, keyed by ``MessageSid`` (delivery is at least once), the
lead found or created by ``From``, and only then is the reply decided.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from leadlookup.domain.sms import inbound_message, parties
from leadlookup.errors import InvalidInput, LookupServiceError
from leadlookup.observability import logger
from leadlookup.usecases.lookups import LookupService
from leadlookup.usecases.replies import ReplyPipeline


def process_message(
    service: LookupService, replies: ReplyPipeline, fields: Mapping[str, Any]
) -> bool:
    """Store one inbound SMS once (lead found or created by ``From``); whether it was new."""
    message = inbound_message(fields)
    stored = service.store_inbound(message)
    # Stored first; only then the reply (on every delivery: a job that could not be queued
    # is queued when the queue delivers this message again).
    decision = replies.after_inbound(stored, message)
    # The lead's id, not its number: the database says who it is, logs never need to.
    logger.info(
        "inbound sms stored" if stored.inserted else "inbound sms already stored",
        message_sid=message.message_sid,
        lead_id=stored.lead.id if stored.lead else None,
        opt_change=message.opt_change,
        decision=decision,
    )
    return stored.inserted


def process_record(
    service: LookupService, replies: ReplyPipeline, body: str, message_id: str | None = None
) -> bool:
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
        return process_message(service, replies, message)
    except InvalidInput as exc:
        who = parties(message) if isinstance(message, dict) else {}
        logger.error(
            "inbound sms record was refused; failing it until it is dead-lettered",
            message_id=message_id,
            reason=str(exc),
            **who,
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
