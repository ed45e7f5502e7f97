"""Outcomes, the VPC's side of what the responder did: sent texts and their delivery statuses.

The responder (outside the VPC, no database) and the status webhook put what happened on the
outcome queue; this stores it on the outbound message, exactly once (the job key and the
Twilio SID are unique), and mirrors a 21610 refusal as the lead's opt-out.
"""

from __future__ import annotations

from typing import Protocol

from leadlookup.domain.delivery import (
    FAILED_STATUSES,
    STATUS_RANK,
    UNKNOWN_SID_RECEIVES,
    DeliveryUpdate,
    MessageNotYetStored,
    is_delivery_update,
    rank,
)
from leadlookup.domain.jobs import ReplyOutcome, decode
from leadlookup.domain.sms import TWILIO_UNSUBSCRIBED
from leadlookup.metrics import SMS_DELIVERY_FAILED
from leadlookup.observability import emf, logger
from leadlookup.usecases.lookups import LookupService


class Counter(Protocol):
    """Counts events (EMF in Lambda, a recording sink in tests)."""

    def count(self, name: str) -> None: ...


class Outcomes:
    """Stores reply outcomes and delivery statuses through the lookup service."""

    def __init__(self, service: LookupService, metrics: Counter | None = None) -> None:
        self.service = service
        self.metrics: Counter = metrics or emf

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
        inserted = self.service.record_outbound_message(
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
            staff_sub=(outcome.staff or {}).get("sub"),
            staff_email=(outcome.staff or {}).get("email"),
        )
        if outcome.error_code == TWILIO_UNSUBSCRIBED and outcome.lead_id:
            # Twilio blocks texts to a number that sent STOP; a STOP we never saw (another
            # keyword, another channel) is mirrored so no further reply is even attempted.
            self.service.mark_opted_out(outcome.lead_id)
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
        result = self.service.update_delivery_status(
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
            self.service.mark_opted_out(lead_id)
        logger.info(
            "delivery status stored" if changed else "delivery status unchanged",
            message_sid=update.message_sid,
            status=update.status,
            error_code=update.error_code,
        )
        return changed
