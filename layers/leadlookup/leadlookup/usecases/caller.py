"""Outbound calls, outside the VPC (no database): ElevenLabs dials, the outcome goes back.

Exactly once per call: the request to ElevenLabs runs inside a Powertools idempotent function
keyed on the call's id (DynamoDB conditional writes), as the responder's sends do. A second
delivery while the first runs finds the record in progress and fails, so the queue retries it
later and then gets the stored outcome; a delivery after completion gets it at once. Either way
the outcome is put on the outcome queue again (storing it is idempotent and monotonic).

Every answer ElevenLabs gives, and its silence, is an outcome: ``dialing`` with its
conversation and Twilio's CallSid, or ``failed`` with the reason, so staff learn what became
of the call and the lead is free for the next one. Only a failure before anything was asked
(the API key could not be read) raises, and the queue retries.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from leadlookup.adapters.elevenlabs import CallError, Dialer
from leadlookup.adapters.idempotency import RECORD_TTL_SECONDS
from leadlookup.adapters.queue import Queue
from leadlookup.domain.calls import DIALING, FAILED, CallJob, CallOutcome
from leadlookup.domain.jobs import decode
from leadlookup.domain.phones import mask_phone
from leadlookup.metrics import OUTBOUND_CALL_FAILED, OUTBOUND_CALL_LATENCY, OUTBOUND_CALL_PLACED
from leadlookup.observability import logger
from leadlookup.usecases.responder import ReplyMetrics

NOT_CONFIGURED = "outbound calls are not configured here (ELEVENLABS_AGENT_ID is not set)"


class Caller:
    """Turns one call job into one request to ElevenLabs and one outcome message."""

    def __init__(
        self,
        *,
        dialer: Dialer | None,
        outcomes: Queue,
        store: BasePersistenceLayer,
        metrics: ReplyMetrics,  # counts and latencies, as the responder's
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.dialer = dialer
        self.outcomes = outcomes
        self.metrics = metrics
        self._wall = wall_clock
        self.config = IdempotencyConfig(
            event_key_jmespath="call_id", expires_after_seconds=RECORD_TTL_SECONDS
        )
        # key_prefix keeps the record's key stable across function names and deployments.
        self._once = idempotent_function(
            data_keyword_argument="job",
            persistence_store=store,
            config=self.config,
            key_prefix="outbound-call",
        )(self._place)

    def handle_record(self, body: str, lambda_context: Any = None) -> CallOutcome:
        """One call-queue record: place the call once, queue the outcome (failures raise)."""
        return self.handle(CallJob.from_json(decode(body)), lambda_context)

    def handle(self, job: CallJob, lambda_context: Any = None) -> CallOutcome:
        """Place ``job``'s call once and queue its outcome."""
        if lambda_context is not None:
            # An in-progress record expires with this invocation, so a crash is retried.
            self.config.register_lambda_context(lambda_context)
            result = self._once(job=job.to_json())
        else:
            # In-process (local runs): no invocation deadline to tie the record to.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Couldn't determine the remaining time")
                result = self._once(job=job.to_json())
        outcome = CallOutcome.from_json(result)
        self.outcomes.send(outcome.to_json())
        return outcome

    def _place(self, job: dict[str, Any]) -> dict[str, Any]:
        call = CallJob.from_json(job)
        if self.dialer is None:
            outcome = CallOutcome(call.call_id, FAILED, error=NOT_CONFIGURED)
        else:
            try:
                placed = self.dialer.call(
                    call.agent_phone_number_id, call.to_number, call.dynamic_variables
                )
                outcome = CallOutcome(
                    call.call_id, DIALING, placed.conversation_id, placed.call_sid
                )
            except CallError as exc:
                outcome = CallOutcome(call.call_id, FAILED, error=str(exc))
                logger.warning("outbound call not placed", call_id=call.call_id, reason=exc.reason)
        if outcome.status == DIALING:
            self.metrics.count(OUTBOUND_CALL_PLACED)
            if call.requested_at is not None:
                latency = max(0.0, (self._wall() - call.requested_at) * 1000)
                self.metrics.milliseconds(OUTBOUND_CALL_LATENCY, latency)
        else:
            self.metrics.count(OUTBOUND_CALL_FAILED)
        logger.info(
            "outbound call placed" if outcome.status == DIALING else "outbound call failed",
            call_id=call.call_id,
            conversation_id=outcome.conversation_id,
            call_sid=outcome.call_sid,
            to=mask_phone(call.to_number),
        )
        return outcome.to_json()
