"""Per-container wiring of replies: queues from settings, or in-process hand-offs without them.

With ``REPLY_QUEUE_URL`` unset (local runs, tests) a job goes straight to an in-process
responder, and with ``REPLY_OUTCOME_QUEUE_URL`` unset its outcome straight back to the
pipeline: the same interfaces as the queues, so the same code runs either way.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from leadlookup.observability import emf, logger
from leadlookup.queue import Handler, Queue, queue_for
from leadlookup.replies.agent import ElevenLabsAgent
from leadlookup.replies.idempotency import persistence_store
from leadlookup.replies.jobs import ReplyJob
from leadlookup.replies.pipeline import ReplyPipeline
from leadlookup.replies.responder import Responder
from leadlookup.replies.twilio import TwilioSender
from leadlookup.service import LookupService
from leadlookup.settings import Settings

API_KEY_NAME = "ELEVENLABS_API_KEY"
AUTH_TOKEN_NAME = "TWILIO_AUTH_TOKEN"  # noqa: S105 - the name of the secret, not its value


def tolerant(handler: Handler, name: str) -> Handler:
    """An in-process consumer whose failure is logged, not raised to the caller.

    What the caller stored before handing off is already safe, and in one process there is
    no queue to deliver the message again: a failed local reply is logged and given up.
    """

    def consume(body: dict[str, Any]) -> None:
        try:
            handler(body)
        except Exception as exc:
            logger.error("in-process consumer failed", queue=name, error=type(exc).__name__)

    return consume


def build_responder(
    settings: Settings,
    outcomes: Queue,
    metrics_sink: Any = None,
) -> Responder:
    """The responder of these settings (agent and sender only when both are configured)."""
    agent = sender = None
    if settings.elevenlabs_agent_id and settings.twilio_account_sid:
        agent = ElevenLabsAgent(
            settings.elevenlabs_ws_url,
            settings.elevenlabs_agent_id,
            lambda: settings.secret(API_KEY_NAME),
            api_url=settings.elevenlabs_api_url,
            settle_s=settings.sms_reply_settle_ms / 1000,
        )
        sender = TwilioSender(
            settings.twilio_api_url,
            settings.twilio_account_sid,
            lambda: settings.secret(AUTH_TOKEN_NAME),
            timeout_s=settings.twilio_timeout_ms / 1000,
            status_callback=settings.twilio_status_callback_url,
        )
    return Responder(
        agent=agent,
        sender=sender,
        outcomes=outcomes,
        store=persistence_store(settings.idempotency_table),
        metrics=metrics_sink or emf,
        deadline_ms=settings.sms_reply_deadline_ms,
    )


def build_pipeline(service: LookupService, metrics_sink: Any = None) -> ReplyPipeline:
    """The pipeline over ``service``: SQS queues where configured, in-process elsewhere."""
    settings = service.settings
    holder: list[ReplyPipeline] = []
    # Without a reply queue the responder runs here, and so (without an outcome queue) does
    # the outcome's storage: the same interfaces as the queues, the same JSON bodies.
    outcomes = queue_for(
        settings.reply_outcome_queue_url,
        tolerant(lambda body: holder[0].store_queued(body), "outcomes"),
    )
    jobs: Queue
    if settings.reply_queue_url:
        jobs = queue_for(settings.reply_queue_url, lambda body: None)
    else:
        responder = build_responder(settings, outcomes, metrics_sink)
        jobs = queue_for(
            None, tolerant(lambda body: responder.handle(ReplyJob.from_json(body)), "replies")
        )
    pipeline = ReplyPipeline(service, jobs, metrics=metrics_sink)
    holder.append(pipeline)
    return pipeline


_pipelines: dict[int, tuple[LookupService, ReplyPipeline]] = {}
_responder: Responder | None = None
_lock = threading.Lock()


def pipeline_for(service: LookupService) -> ReplyPipeline:
    """This container's pipeline for ``service`` (built once per service object)."""
    with _lock:
        entry = _pipelines.get(id(service))
        if entry is None or entry[0] is not service:
            entry = _pipelines[id(service)] = (service, build_pipeline(service))
        return entry[1]


def install(service: LookupService, pipeline: ReplyPipeline) -> None:
    """Use ``pipeline`` for ``service`` (tests and the local runner wire their own)."""
    with _lock:
        _pipelines[id(service)] = (service, pipeline)


def reset() -> None:
    """Forget every pipeline and the responder (tests, the runner after a settings change)."""
    global _responder
    with _lock:
        _pipelines.clear()
        _responder = None


def decode(body: str) -> Any:
    """A queue record's JSON body."""
    from leadlookup.errors import InvalidInput

    try:
        return json.loads(body)
    except (TypeError, ValueError, RecursionError):
        raise InvalidInput("queued message is not valid JSON") from None


# -- the queue-triggered functions ---------------------------------------------------------


def responder_from_env() -> Responder:
    """The responder function's responder, built once per container from the environment."""
    global _responder
    with _lock:
        if _responder is None:
            settings = Settings.from_env()
            if not settings.reply_outcome_queue_url:
                from leadlookup.settings import ConfigError

                raise ConfigError("REPLY_OUTCOME_QUEUE_URL is required by the responder")
            outcomes = queue_for(settings.reply_outcome_queue_url, lambda body: None)
            _responder = build_responder(settings, outcomes)
        return _responder


def respond_record(responder: Responder, body: str, lambda_context: Any = None) -> None:
    """One reply-queue record: reply once, queue the outcome (failures raise: redelivery)."""
    responder.handle(ReplyJob.from_json(decode(body)), lambda_context)


def store_queued(
    service: LookupService, body: dict[str, Any], receive_count: int | None = None
) -> bool:
    """One outcome-queue message: a reply outcome, or a delivery status (its ``kind``)."""
    return pipeline_for(service).store_queued(body, receive_count)


def store_outcome_record(
    service: LookupService, body: str, receive_count: int | None = None
) -> bool:
    """One outcome-queue record (``receive_count``: its ApproximateReceiveCount), stored once."""
    return store_queued(service, decode(body), receive_count)
