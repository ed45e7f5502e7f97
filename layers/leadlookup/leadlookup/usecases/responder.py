"""The responder (outside the VPC, no database): agent answer or fixed text, one Twilio send.

Exactly once per job key: the agent call and the send run inside a Powertools idempotent
function keyed on the job's ``key`` (DynamoDB conditional writes). A second delivery while the
first is running finds the record in progress and fails, so the queue retries it later and it
then gets the stored outcome; a delivery after completion gets the stored outcome at once.
Either way the outcome is put on the outcome queue again (storing it is idempotent too).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol

from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from leadlookup.adapters.elevenlabs import AgentClient, AgentError
from leadlookup.adapters.idempotency import RECORD_TTL_SECONDS
from leadlookup.adapters.queue import Queue
from leadlookup.adapters.twilio import SmsSender
from leadlookup.domain.jobs import JobKind, ReplyJob, ReplyOutcome, SenderKind, decode, fit_sms
from leadlookup.domain.phones import mask_phone
from leadlookup.metrics import (
    SMS_REPLY_FAILED,
    SMS_REPLY_FALLBACK,
    SMS_REPLY_LATENCY,
    SMS_REPLY_NO_TEXT,
    SMS_REPLY_NOT_CONFIGURED,
    SMS_REPLY_SENT,
    SMS_REPLY_TRUNCATED,
)
from leadlookup.observability import logger

# Kept back from the reply deadline so the fallback and the send still fit after a slow agent.
SEND_RESERVE_S = 0.05
# The fallback reason of a text without words (the outbound row's params say why).
NO_TEXT_REASON = "no_text"


class ReplyMetrics(Protocol):
    """Counts and latencies of replies."""

    def count(self, name: str) -> None: ...

    def milliseconds(self, name: str, value: float) -> None: ...


class Responder:
    """Turns one reply job into one text (or none) and one outcome message."""

    def __init__(
        self,
        *,
        agent: AgentClient | None,
        sender: SmsSender | None,
        outcomes: Queue,
        store: BasePersistenceLayer,
        metrics: ReplyMetrics,
        deadline_ms: int,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.agent = agent
        self.sender = sender
        self.outcomes = outcomes
        self.metrics = metrics
        self.deadline_ms = deadline_ms
        self._clock = clock
        self._wall = wall_clock
        self.config = IdempotencyConfig(
            event_key_jmespath="key", expires_after_seconds=RECORD_TTL_SECONDS
        )
        # key_prefix keeps the record's key stable across function names and deployments.
        self._once = idempotent_function(
            data_keyword_argument="job",
            persistence_store=store,
            config=self.config,
            key_prefix="sms-reply",
        )(self._produce)
        self._warned = False

    @property
    def configured(self) -> bool:
        """Whether an agent and a sender are configured (else no reply is ever attempted)."""
        return self.agent is not None and self.sender is not None

    def handle_record(self, body: str, lambda_context: Any = None) -> ReplyOutcome | None:
        """One reply-queue record: reply once, queue the outcome (failures raise: redelivery)."""
        return self.handle(ReplyJob.from_json(decode(body)), lambda_context)

    def handle(self, job: ReplyJob, lambda_context: Any = None) -> ReplyOutcome | None:
        """Reply once to ``job`` and queue its outcome; None when replies are not configured."""
        if not self.configured:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "SMS replies are off: ELEVENLABS_AGENT_ID or TWILIO_ACCOUNT_SID is not set"
                )
            self.metrics.count(SMS_REPLY_NOT_CONFIGURED)
            return None
        if lambda_context is not None:
            # An in-progress record expires with this invocation, so a crash is retried.
            self.config.register_lambda_context(lambda_context)
            result = self._once(job=job.to_json())
        else:
            # In-process (local runs): no invocation deadline, so Powertools' warning that the
            # in-progress record cannot expire with it says nothing new.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Couldn't determine the remaining time")
                result = self._once(job=job.to_json())
        outcome = ReplyOutcome.from_json(result)
        # A standard queue: storing an outcome is idempotent, in any order.
        self.outcomes.send(outcome.to_json())
        return outcome

    def _produce(self, job: dict[str, Any]) -> dict[str, Any]:
        reply = ReplyJob.from_json(job)
        deadline = self._clock() + self.deadline_ms / 1000 - SEND_RESERVE_S
        body, kind, reason = reply.body, SenderKind.STAFF, None
        if reply.kind == JobKind.FOLLOW_UP:
            kind = SenderKind.FOLLOW_UP
        elif reply.kind == JobKind.AGENT and not reply.body.strip():
            # A photo alone: the agent reads words only, and a conversation opened with an
            # empty message gets a greeting or a guess. The job's fixed text asks for words.
            body, kind, reason = reply.fallback_text, SenderKind.FALLBACK, NO_TEXT_REASON
            self.metrics.count(SMS_REPLY_NO_TEXT)
        elif reply.kind == JobKind.AGENT:
            assert self.agent is not None
            kind = SenderKind.AGENT
            try:
                body = self.agent.reply(reply, deadline)
            except AgentError as exc:
                body, kind, reason = reply.fallback_text, SenderKind.FALLBACK, exc.reason
                self.metrics.count(SMS_REPLY_FALLBACK)
                logger.warning("agent failed; sending the fixed text", reason=exc.reason)
        assert self.sender is not None
        if kind != SenderKind.STAFF:
            # Twilio refuses a Body over 1,600 characters outright (21617): an agent's long
            # answer (or one of our own texts grown with a store's settings) goes out cut.
            # Staff texts are refused over it before they are queued, never cut.
            body, cut = fit_sms(body)
            if cut:
                self.metrics.count(SMS_REPLY_TRUNCATED)
                logger.warning("sms reply cut to fit", key=reply.key, chars=len(body))
        result = self.sender.send(
            reply.to_number,
            reply.from_number,
            body,
            messaging_service_sid=reply.messaging_service_sid,
        )
        if result.sent:
            self.metrics.count(SMS_REPLY_SENT)
            if reply.received_at is not None:
                latency = max(0.0, (self._wall() - reply.received_at) * 1000)
                self.metrics.milliseconds(SMS_REPLY_LATENCY, latency)
        else:
            self.metrics.count(SMS_REPLY_FAILED)
        logger.info(
            "sms reply sent" if result.sent else "sms reply not sent",
            key=reply.key,
            sender_kind=str(kind),
            status=result.status,
            attempts=result.attempts,
            error_code=result.error_code,
            to=mask_phone(reply.to_number),
        )
        return ReplyOutcome(
            key=reply.key,
            sender_kind=str(kind),
            organization_id=reply.organization_id,
            lead_id=reply.lead_id,
            to_number=reply.to_number,
            from_number=reply.from_number,
            body=body,
            twilio_sid=result.sid,
            status=result.status,
            error_code=result.error_code,
            error_message=result.error_message,
            fallback_reason=reason,
            in_reply_to=reply.in_reply_to,
            staff=reply.staff,
        ).to_json()
