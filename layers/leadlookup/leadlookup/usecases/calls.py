"""Outbound calls, the VPC's side: staff ask for a call to a lead (``POST /leads/{id}/calls``).

The caller must staff the lead's store (404 otherwise: nothing written, nothing queued). The
lead must be callable and the store must have an agent number (409 naming why), and no other
call of the lead may be in progress (409: the database's unique index decides, so two requests
at once cannot both win). Then the call is stored (``queued``) with a note in the lead's
history, and its job goes to the call queue with this outbound call's dynamic variables, built
by :func:`leadlookup.domain.variables.build_variables` as for any call. Nothing in the VPC calls
the internet: the outbound-call function places the call (:mod:`leadlookup.usecases.caller`),
and its outcome comes back through the outcome queue (:mod:`leadlookup.usecases.outcomes`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from leadlookup.adapters.queue import Queue
from leadlookup.domain import calls
from leadlookup.domain.access import StaffMember
from leadlookup.domain.calls import CallJob
from leadlookup.domain.phones import callable_number, mask_phone
from leadlookup.domain.variables import build_variables
from leadlookup.errors import Conflict, LookupServiceError, NotFound
from leadlookup.observability import logger
from leadlookup.usecases.lookups import LookupService


class Calls:
    """Call requests over the lookup service and the call queue."""

    def __init__(
        self,
        service: LookupService,
        jobs: Queue,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        wall_clock: Callable[[], float] = time.time,
        stale_after_s: int = calls.STALE_AFTER_SECONDS,
    ) -> None:
        self.service = service
        self.jobs = jobs
        self._now = now
        self._wall = wall_clock
        self.stale_after_s = stale_after_s

    def request(self, member: StaffMember, lead_id: object, key: str | None) -> tuple[str, str]:
        """Ask for a call to the lead; (call id, its status). The same key, the same call.

        400 for a malformed lead id or ``Idempotency-Key``; 404 for a lead that does not exist
        or that ``member`` does not see; 409 when no call may be placed now; 503 when the job
        could not be queued (then nothing is kept, and a retry starts afresh).
        """
        key = calls.call_key(key)
        lead = self.service.get_lead(lead_id)
        member.require(lead.organization_id)
        org = self.service.organization(lead.organization_id)
        if org is None:
            raise NotFound("lead not found")
        refusal = calls.refusal(lead, org)
        actor = member.actor()
        call_id = str(uuid.uuid4())
        requested_key = calls.note_key(call_id, "requested")
        result = self.service.request_outbound_call(
            call_id,
            lead.id,
            lead.organization_id,
            key,
            actor=actor,
            refusal=refusal,
            stale_seconds=self.stale_after_s,
            note_key=requested_key,
            note=calls.requested_note(actor),
            note_params=calls.note_params(call_id),
        )
        outcome = result["outcome"]
        if outcome == "existing":
            logger.info("call already requested with this key", call_id=result["id"])
            return str(result["id"]), str(result["status"])
        if outcome == "refused":
            raise Conflict(str(refusal))
        if outcome == "in_progress":
            raise Conflict(calls.in_progress_message(str(result["id"])))
        if outcome == "opted_out":
            raise Conflict("lead opted out: no calls or texts are sent to it")
        if outcome != "created":
            raise NotFound("lead not found")  # erased since it was read
        to_number = callable_number(lead.phone_number_normalized)
        phone_id = calls.agent_phone_number_id(org)
        assert to_number is not None and phone_id is not None  # refusal() checked both
        job = CallJob(
            call_id=call_id,
            organization_id=org.id,
            lead_id=lead.id,
            to_number=to_number,
            agent_phone_number_id=phone_id,
            dynamic_variables=build_variables(
                org, lead, self._now(), channel="voice", call_id=call_id, outbound=True
            ),
            requested_at=self._wall(),
        )
        try:
            self.jobs.send(job.to_json())
        except LookupServiceError:
            self._cancel(call_id, lead.organization_id, requested_key)
            raise
        logger.info("call queued", call_id=call_id, to=mask_phone(to_number))
        return call_id, calls.QUEUED

    def _cancel(self, call_id: str, organization_id: str, requested_key: str) -> None:
        # The request failed: keeping the call would block the lead's calls until it expires.
        try:
            self.service.cancel_outbound_call(call_id, organization_id, requested_key)
        except LookupServiceError as exc:
            logger.warning(
                "call not queued and not cancelled; it expires", call_id=call_id, error=str(exc)
            )
