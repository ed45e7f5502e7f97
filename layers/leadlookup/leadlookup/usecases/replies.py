"""The VPC side of replies: decide, emit jobs, store outcomes, human control, history.

Storage first: the inbound text is stored before :meth:`ReplyPipeline.after_inbound` runs.
The decision is taken again on every delivery of the inbound text (a job that could not be
queued is queued on the redelivery), and a text already answered is not answered again.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from leadlookup.adapters.queue import Queue
from leadlookup.domain import followups, optout
from leadlookup.domain.delivery import (
    FAILED_STATUSES,
    STATUS_RANK,
    UNKNOWN_SID_RECEIVES,
    DeliveryUpdate,
    MessageNotYetStored,
    is_delivery_update,
    rank,
)
from leadlookup.domain.jobs import (
    HISTORY_MESSAGES,
    MAX_SMS_CHARS,
    JobKind,
    ReplyJob,
    ReplyOutcome,
    compact_history,
    decode,
    history_text,
    reply_key,
)
from leadlookup.domain.models import Lead, Organization
from leadlookup.domain.optout import TWILIO_UNSUBSCRIBED
from leadlookup.domain.phones import mask_phone
from leadlookup.domain.variables import build_variables
from leadlookup.errors import Conflict, InvalidInput, NotFound
from leadlookup.metrics import SMS_DELIVERY_FAILED
from leadlookup.observability import emf, logger
from leadlookup.usecases.lookups import LookupService

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


class Counter(Protocol):
    """Counts events (EMF in Lambda, a recording sink in tests)."""

    def count(self, name: str) -> None: ...


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


def _cursor(row: dict[str, Any]) -> str:
    created = row["created_at"]
    text = created.isoformat() if isinstance(created, datetime) else str(created)
    return base64.urlsafe_b64encode(f"{text}|{row['id']}".encode()).decode().rstrip("=")


def _parse_cursor(raw: str | None) -> tuple[str, str] | None:
    if not raw:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        created, row_id = text.split("|", 1)
        datetime.fromisoformat(created)
        return created, str(uuid.UUID(row_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("query parameter 'before' is not a cursor from this API") from None


def _message_json(row: dict[str, Any]) -> dict[str, Any]:
    created = row["created_at"]
    return {
        "id": str(row["id"]),
        "direction": row["direction"],
        "sender_kind": row["sender_kind"],
        "body": row["body"],
        "from_number": row["from_number"],
        "to_number": row["to_number"],
        "twilio_sid": row["twilio_sid"],
        "status": row["status"],
        "error_code": row["error_code"],
        "status_updated_at": _iso(row["status_updated_at"]),
        "external_id": row["external_id"],
        "created_at": created.isoformat() if isinstance(created, datetime) else created,
    }


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class ReplyPipeline:
    """Reply decisions and outbound records over the lookup service and a job queue."""

    def __init__(
        self,
        service: LookupService,
        jobs: Queue,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        wall_clock: Callable[[], float] = time.time,
        metrics: Counter | None = None,
    ) -> None:
        self.service = service
        self.jobs = jobs
        self._now = now
        self._wall = wall_clock
        self.metrics: Counter = metrics or emf

    # -- inbound texts --------------------------------------------------------------------

    def after_inbound(
        self,
        org: Organization,
        lead: Lead | None,
        message_sid: str,
        body: str,
        opt_change: str | None,
    ) -> str:
        """Emit the reply job of a stored inbound text, or say why not; the decision."""
        if lead is None:
            return "sender is not a phone number"
        if optout.is_keyword(body, opt_change):
            return "keyword"
        key = reply_key(message_sid)
        context = self.service.repo.reply_context(lead.id, message_sid, key, HISTORY_MESSAGES)
        if context is None:
            return "lead is gone"
        if context["opted_out"]:
            return "opted out"
        if context["human_control"]:
            return "human control"
        if context["replied"]:
            return "already answered"
        history = compact_history(list(context["history"] or []))
        variables = build_variables(
            org,
            lead,
            self._now(),
            channel="sms",
            call_id=message_sid,
            recent_messages=history_text(history),
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
        self._emit(job)
        return "reply queued" if body.strip() else "no words: fixed text queued"

    def _emit(self, job: ReplyJob) -> None:
        # One FIFO group per customer: their texts are answered in order, one at a time.
        self.jobs.send(job.to_json(), deduplication_id=job.key, group_id=job.to_number)
        logger.info("reply job queued", key=job.key, kind=job.kind, to=mask_phone(job.to_number))

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
            org = self.service.repo.organization(lead.organization_id)
            if org is None:
                return "organization is gone"
        topics = [flag for flag in flags if flag in followups.enabled(org)]
        if not topics:
            return "nothing to follow up"
        key = f"follow_up:{conversation_id}"
        claimed = self.service.repo.claim_automation(lead.id, key, followups.WINDOW_SECONDS)
        if claimed is None:
            return "rate limited, opted out or under human control"
        self.service.lead_written(claimed)
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
        self._emit(job)
        return "follow-up queued"

    # -- outcomes -------------------------------------------------------------------------

    def store_record(self, body: str, receive_count: int | None = None) -> bool:
        """One outcome-queue record (``receive_count``: its ApproximateReceiveCount), once."""
        return self.store_queued(decode(body), receive_count)

    def store_queued(self, body: object, receive_count: int | None = None) -> bool:
        """An outcome queue message: a delivery status (``kind``), else a reply outcome."""
        if is_delivery_update(body):
            return self.store_delivery_json(body, receive_count)
        return self.store_outcome_json(body)

    def store_outcome_json(self, body: object) -> bool:
        """:meth:`store_outcome` of an outcome queue message's body."""
        return self.store_outcome(ReplyOutcome.from_json(body))

    def store_outcome(self, outcome: ReplyOutcome) -> bool:
        """Store what the responder did as an outbound message, once; whether it was new."""
        inserted, lead = self.service.repo.insert_outbound_message(
            organization_id=outcome.organization_id,
            lead_id=outcome.lead_id,
            external_id=outcome.key,
            sender_kind=outcome.sender_kind,
            from_number=outcome.from_number,
            to_number=outcome.to_number,
            body=outcome.body,
            params=outcome.params(),
            twilio_sid=outcome.twilio_sid,
            status=outcome.status,
            error_code=outcome.error_code,
        )
        if lead is not None:
            # The cached lead's conversation_context shows the last outbound text.
            self.service.lead_written(lead)
        if outcome.error_code == TWILIO_UNSUBSCRIBED and outcome.lead_id:
            # Twilio blocks texts to a number that sent STOP; a STOP we never saw (another
            # keyword, another channel) is mirrored so no further reply is even attempted.
            marked = self.service.repo.mark_opted_out(outcome.lead_id)
            if marked is not None:
                self.service.lead_written(marked)
        logger.info(
            "reply outcome stored" if inserted else "reply outcome already stored",
            key=outcome.key,
            status=outcome.status,
            error_code=outcome.error_code,
        )
        return inserted

    def store_delivery_json(self, body: object, receive_count: int | None = None) -> bool:
        """:meth:`store_delivery` of an outcome queue message's body."""
        return self.store_delivery(DeliveryUpdate.from_json(body), receive_count)

    def store_delivery(self, update: DeliveryUpdate, receive_count: int | None = None) -> bool:
        """Store a status callback on the outbound text it names; whether the status changed.

        Monotonic and idempotent (the repository applies only a higher-ranked status); a
        text that failed is counted once, on the change. A SID not stored yet raises
        :class:`MessageNotYetStored` while its queue record is young (``receive_count``
        below ``UNKNOWN_SID_RECEIVES``), so the queue delivers it again after the outcome;
        then, or without a queue (``receive_count`` None), it is dropped. The lead's cached
        state holds no delivery status, so nothing is written through unless the update
        mirrors an opt-out.
        """
        if rank(update.status) == 0:
            logger.info("delivery status not tracked", message_sid=update.message_sid)
            return False
        result = self.service.repo.update_delivery_status(
            update.message_sid, update.status, update.error_code, STATUS_RANK
        )
        if result is None:
            if receive_count is not None and receive_count < UNKNOWN_SID_RECEIVES:
                logger.info(
                    "delivery status for a text not stored yet; the queue will retry it",
                    message_sid=update.message_sid,
                    receive_count=receive_count,
                )
                raise MessageNotYetStored(f"no outbound text has Twilio SID {update.message_sid}")
            logger.info(
                "delivery status for an unknown text dropped",
                message_sid=update.message_sid,
                status=update.status,
            )
            return False
        changed, lead_id = result
        if changed and update.status in FAILED_STATUSES:
            self.metrics.count(SMS_DELIVERY_FAILED)
            logger.warning(
                "sms not delivered",
                message_sid=update.message_sid,
                status=update.status,
                error_code=update.error_code,
            )
        if changed and update.error_code == TWILIO_UNSUBSCRIBED and lead_id:
            # As for a send refused with 21610: the lead stops getting replies.
            marked = self.service.repo.mark_opted_out(lead_id)
            if marked is not None:
                self.service.lead_written(marked)
        logger.info(
            "delivery status stored" if changed else "delivery status unchanged",
            message_sid=update.message_sid,
            status=update.status,
            error_code=update.error_code,
        )
        return changed

    # -- staff ----------------------------------------------------------------------------

    def _lead_and_org(self, lead_id: object) -> tuple[Lead, Organization]:
        lead = self.service.get_lead(lead_id)
        org = self.service.repo.organization(lead.organization_id)
        if org is None:
            raise NotFound("lead's organization not found")
        return lead, org

    def send_staff_text(self, lead_id: object, body: object, key: str | None = None) -> str:
        """Queue a staff member's text to the lead; its job key.

        400 on an empty or over-long body, 404 for an unknown lead, 409 when it opted out.
        ``key`` (the client's ``Idempotency-Key``) makes a retried request send once.
        """
        if not isinstance(body, str) or not body.strip():
            raise InvalidInput("field 'body' must be a non-empty string")
        if len(body) > MAX_SMS_CHARS:
            raise InvalidInput(f"field 'body' is longer than {MAX_SMS_CHARS} characters")
        if key is not None and (not key.strip() or len(key) > 100):
            raise InvalidInput("header 'Idempotency-Key' must be 1 to 100 characters")
        lead, org = self._lead_and_org(lead_id)
        if lead.opted_out_at is not None:
            raise Conflict("lead opted out of texts")
        sender, service = store_sender(org)
        job = ReplyJob(
            key=f"staff:{lead.id}:{key.strip() if key else uuid.uuid4()}",
            kind=JobKind.STAFF,
            organization_id=org.id,
            lead_id=lead.id,
            to_number=f"+{lead.phone_number_normalized}",
            from_number=sender,
            messaging_service_sid=service,
            body=body,
            received_at=self._wall(),
        )
        self._emit(job)
        return job.key

    def patch_lead(self, lead_id: object, body: Any, if_match: int | None) -> Lead:
        """PATCH /leads/{id}: every field, ``human_control`` included, in one commit."""
        return self.service.update_lead(lead_id, body, if_match)

    def messages(
        self, lead_id: object, limit: object = None, before: str | None = None
    ) -> dict[str, Any]:
        """GET /leads/{id}/messages: newest first, ``limit`` per page, ``next`` cursor."""
        lead = self.service.get_lead(lead_id)
        try:
            size = PAGE_DEFAULT if limit in (None, "") else int(str(limit))
        except ValueError:
            raise InvalidInput("query parameter 'limit' must be a whole number") from None
        if not 1 <= size <= PAGE_MAX:
            raise InvalidInput(f"query parameter 'limit' must be 1 to {PAGE_MAX}")
        rows = self.service.repo.messages_page(lead.id, size + 1, _parse_cursor(before))
        page = rows[:size]
        return {
            "messages": [_message_json(row) for row in page],
            "next": _cursor(page[-1]) if len(rows) > size else None,
        }
