"""Post-call reports, the processor's side: store each call once, merge it into its lead.

The webhook (:mod:`leadlookup.api.webhooks`) verified the report and queued what processing
needs (:mod:`leadlookup.domain.call_report` read it), so a database outage loses nothing:
ElevenLabs retries only if told to, and then only on 5xx. The summary row is unique on
``conversation_id`` and the lead changes only when this delivery inserted it, so
redeliveries change nothing.

ElevenLabs reports every conversation, and every SMS reply opens one: only a report with a
phone line is a call. The others are stored but not counted, merged or followed up.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from leadlookup.domain.call_report import is_agent_name
from leadlookup.domain.models import (
    PHONE,
    Lead,
    Organization,
    PostCall,
)
from leadlookup.domain.phones import mask_phone
from leadlookup.errors import InvalidInput, LookupServiceError, NotFound
from leadlookup.observability import logger
from leadlookup.usecases.lookups import LookupService
from leadlookup.usecases.replies import ReplyPipeline


def process_message(service: LookupService, replies: ReplyPipeline, message: Any) -> bool:
    """Store one queued call (the processor and the in-process hand-off); whether it was new."""
    try:
        call = PostCall.from_json(message)
    except ValueError as exc:
        raise InvalidInput(f"queued post-call message: {exc}") from None
    return store_post_call(call, service, replies)


def process_record(
    service: LookupService, replies: ReplyPipeline, body: str, message_id: str | None = None
) -> bool:
    """Process one queue record's body; failures are logged, then raised.

    A malformed record raises :class:`InvalidInput` every time, so the queue's redrive policy
    moves it to the dead-letter queue; a dependency outage raises :class:`Unavailable` and
    the queue delivers the record again later.
    """
    try:
        message = json.loads(body)
    except (TypeError, ValueError, RecursionError):
        logger.error(
            "post-call record is not JSON; failing it until it is dead-lettered",
            message_id=message_id,
        )
        raise InvalidInput("queued message is not valid JSON") from None
    try:
        return process_message(service, replies, message)
    except InvalidInput as exc:
        logger.error(
            "post-call record was refused; failing it until it is dead-lettered",
            message_id=message_id,
            reason=str(exc),
        )
        raise
    except LookupServiceError as exc:
        logger.warning(
            "post-call not stored; the queue will deliver it again",
            message_id=message_id,
            error=type(exc).__name__,
            reason=str(exc),
        )
        raise


def store_post_call(call: PostCall, service: LookupService, replies: ReplyPipeline) -> bool:
    """Resolve the lead (never creating one) and record the call; whether it was new."""
    organization = service.get_organization_by_phone(call.agent_number)
    lead = _resolve_lead(call, service, organization)
    if call.customer_name and is_agent_name(call.customer_name, organization, call.agent_name):
        call = replace(call, customer_name=None)
    inserted = service.record_call_summary(
        call, lead.organization_id if lead else organization.id, lead
    )
    logger.info(
        "post-call summary recorded" if inserted else "post-call summary already recorded",
        conversation_id=call.conversation_id,
        lead_id=lead.id if lead else None,
        caller=mask_phone(call.external_number),
        channel=call.channel,
        callback_requested=call.callback_requested,
    )
    if lead is not None and call.channel != PHONE:
        # A text conversation's customer is already being answered by text.
        logger.info(
            "follow-up decision", conversation_id=call.conversation_id, decision="not a call"
        )
    elif lead is not None:
        # Stored first; then the follow-up text the store enables (on every delivery: the job
        # key is the conversation's, so a redelivery cannot text twice).
        decision = replies.after_call(lead, call.conversation_id, call.payload, organization)
        logger.info("follow-up decision", conversation_id=call.conversation_id, decision=decision)
    return inserted


def _resolve_lead(
    call: PostCall, service: LookupService, organization: Organization
) -> Lead | None:
    if call.lead_id is not None:
        try:
            return service.get_lead(call.lead_id)
        except NotFound:
            logger.info("post-call lead_id names no lead", lead_id=call.lead_id)
    if service.normalize(call.external_number) is None:
        return None
    return service.find_lead_by_phone(call.external_number, organization.id)
