"""Replies, the VPC's side: decide whether and how a text or a call is answered, queue the job.

Storage first: the inbound text is stored before :meth:`ReplyPipeline.after_inbound` runs.
The decision is taken again on every delivery of the inbound text (a job that could not be
queued is queued on the redelivery), and a text already answered is not answered again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from leadlookup.adapters.queue import Queue
from leadlookup.domain import followups
from leadlookup.domain.jobs import HISTORY_MESSAGES, JobKind, ReplyJob, agent_history, reply_key
from leadlookup.domain.models import InboundMessage, Lead, Organization
from leadlookup.domain.variables import build_variables
from leadlookup.observability import logger
from leadlookup.usecases.lookups import LookupService, StoredInbound

PAGE_DEFAULT, PAGE_MAX = 50, 200
# Twilio's Messaging Service SIDs (settings ``messaging_service_sid``).
_MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")


def fallback_text(org: Organization, variables: Mapping[str, str]) -> str:
    """The fixed text sent when the agent cannot answer: the store's phone and today's hours."""
    hours = variables.get("business_hours_today") or "Closed"
    today = "we're closed today" if hours == "Closed" else f"today's hours are {hours}"
    return (
        f"Thanks for texting {org.name}! We can't answer right now; {today}. "
        f"Call us at {org.phone_number}."
    )


def no_text_reply(org: Organization) -> str:
    """The fixed text for a text without words (a photo alone): the agent reads words only."""
    return (
        f"Thanks for texting {org.name}! We can't open photos or attachments here: please "
        f"tell us in words what you need, or call us at {org.phone_number}."
    )


def store_sender(org: Organization) -> tuple[str, str | None]:
    """The store's ``From`` in E.164 and its Messaging Service SID, if its settings name one.

    Twilio refuses a ``From`` that is not E.164 (21212), and stores entered before the
    numbers were normalized hold national formats such as ``(778) 652-8784``: the normalized
    digits are E.164 without the ``+``. A malformed ``messaging_service_sid`` would refuse
    every send, so it is ignored (logged) and the store's number is used.
    """
    sender = f"+{org.phone_number_normalized}"
    service = org.settings.get("messaging_service_sid")
    if service is None or service == "":
        return sender, None
    if isinstance(service, str) and _MESSAGING_SERVICE_SID.fullmatch(service.strip()):
        return sender, service.strip()
    logger.warning(
        "store setting messaging_service_sid is not a Messaging Service SID; sending From",
        organization_id=org.id,
    )
    return sender, None


class ReplyPipeline:
    """Reply decisions and outbound records over the lookup service and a job queue."""

    def __init__(
        self,
        service: LookupService,
        jobs: Queue,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.jobs = jobs
        self._now = now
        self._wall = wall_clock

    # -- inbound texts --------------------------------------------------------------------

    def after_inbound(self, stored: StoredInbound, message: InboundMessage) -> str:
        """Emit the reply job of a stored inbound text, or say why not; the decision."""
        org, lead = stored.organization, stored.lead
        message_sid, body = message.message_sid, message.body
        if lead is None:
            return "sender is not a phone number"
        if message.keyword:
            return "keyword"
        key = reply_key(message_sid)
        context = self.service.reply_context(lead.id, message_sid, key, HISTORY_MESSAGES)
        if context is None:
            return "lead is gone"
        if context["opted_out"]:
            return "opted out"
        if context["human_control"]:
            return "human control"
        if context["replied"]:
            return "already answered"
        history, recent = agent_history(list(context["history"] or []))
        variables = build_variables(
            org, lead, self._now(), channel="sms", call_id=message_sid, recent_messages=recent
        )
        sender, service = store_sender(org)
        job = ReplyJob(
            key=key,
            kind=JobKind.AGENT,
            organization_id=org.id,
            lead_id=lead.id,
            to_number=f"+{lead.phone_number_normalized}",
            from_number=sender,
            messaging_service_sid=service,
            body=body,
            # No words (a photo alone): the responder sends this text and asks no agent.
            fallback_text=fallback_text(org, variables) if body.strip() else no_text_reply(org),
            dynamic_variables=variables,
            history=history,
            in_reply_to=message_sid,
            received_at=self._wall(),
        )
        self.emit(job)
        return "reply queued" if body.strip() else "no words: fixed text queued"

    def emit(self, job: ReplyJob) -> None:
        """Queue a job for the responder (staff texts go through here too)."""
        # One FIFO group per customer: their texts are answered in order, one at a time.
        self.jobs.send(job.to_json(), deduplication_id=job.key, group_id=job.to_number)
        logger.info("reply job queued", key=job.key, kind=job.kind, lead_id=job.lead_id)

    # -- after a call ---------------------------------------------------------------------

    def after_call(
        self,
        lead: Lead,
        conversation_id: str,
        payload: dict[str, Any],
        org: Organization | None = None,
    ) -> str:
        """Queue the post-call follow-up text the organization enables, or say why not.

        At most one per lead per 30 minutes (an atomic claim on the lead's row), never to an
        opted-out number or a lead under human control. A redelivered report claims its own
        window again and queues the same job key, which the responder sends only once.
        ``org`` is the lead's organization when the caller has it (saves a lookup).
        """
        flags = followups.asked(payload)
        if not flags:
            return "nothing to follow up"
        if org is None or org.id != lead.organization_id:
            org = self.service.organization(lead.organization_id)
            if org is None:
                return "organization is gone"
        topics = [flag for flag in flags if flag in followups.enabled(org)]
        if not topics:
            return "nothing to follow up"
        key = f"follow_up:{conversation_id}"
        claimed = self.service.claim_automation(lead.id, key, followups.WINDOW_SECONDS)
        if claimed is None:
            return "rate limited, opted out or under human control"
        sender, service = store_sender(org)
        job = ReplyJob(
            key=key,
            kind=JobKind.FOLLOW_UP,
            organization_id=org.id,
            lead_id=lead.id,
            to_number=f"+{lead.phone_number_normalized}",
            from_number=sender,
            messaging_service_sid=service,
            body=followups.follow_up_text(org, topics),
            received_at=self._wall(),
        )
        self.emit(job)
        return "follow-up queued"
