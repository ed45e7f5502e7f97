"""The composition root: what one Lambda container builds once and keeps between invocations.

Every client that holds a connection (PostgreSQL, Redis, SQS, the agent, Twilio) is built here
and only here, lazily, from :class:`~leadlookup.config.Settings`. A function builds only what
its first request needs, and imports only that: the modules behind the database, the cache
and the use cases are imported inside the builders, so a webhook (which needs the settings
and a queue) never loads them. Use cases receive what they need as arguments; nothing below
this module imports it.

Queues whose URL is unset (local runs, tests) are in-process hand-offs through the same
interface: an inbound text goes straight to the processor here, a reply job straight to a
responder, and its outcome straight back to the pipeline, so the same code runs either way.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from leadlookup.adapters.queue import Handler, Queue, queue_for
from leadlookup.config import Settings
from leadlookup.errors import ConfigError
from leadlookup.observability import emf, logger

if TYPE_CHECKING:
    from leadlookup.adapters.cache import ReadThroughCache
    from leadlookup.adapters.cache.base import CacheBackend
    from leadlookup.adapters.cache.readthrough import MetricSink
    from leadlookup.adapters.db import Database
    from leadlookup.usecases.lookups import LookupService
    from leadlookup.usecases.outcomes import Outcomes
    from leadlookup.usecases.replies import ReplyPipeline
    from leadlookup.usecases.responder import Responder
    from leadlookup.usecases.staff import Staff

API_KEY_NAME = "ELEVENLABS_API_KEY"
AUTH_TOKEN_NAME = "TWILIO_AUTH_TOKEN"  # noqa: S105 - the name of the secret, not its value


@dataclass
class Runtime:
    """Everything a warm container of a data function keeps between invocations."""

    settings: Settings
    db: Database
    cache: ReadThroughCache
    service: LookupService
    # The replies' use cases over this service, built on first use (tests may set their own).
    _replies: Replies | None = field(default=None, repr=False)

    def _built(self) -> Replies:
        if self._replies is None:
            self._replies = build_replies(self.service)
        return self._replies

    @property
    def replies(self) -> ReplyPipeline:
        """Reply decisions for inbound texts and calls."""
        return self._built().pipeline

    @property
    def outcomes(self) -> Outcomes:
        """Sent texts and delivery statuses, stored."""
        return self._built().outcomes

    @property
    def staff(self) -> Staff:
        """What staff do to a lead: PATCH, history, texts."""
        return self._built().staff

    def use_replies(self, replies: Replies) -> None:
        """Use these (tests wire replies with their own metrics sink)."""
        self._replies = replies

    def close(self) -> None:
        """Close the PostgreSQL connection and the Redis client (their next use reconnects)."""
        self.db.close()
        # The Redis backend (not a test's fake) holds a connection pool.
        reset = getattr(self.cache.backend, "reset", None)
        if reset is not None:
            reset()


def build_runtime(
    settings: Settings,
    metrics: MetricSink | None = None,
    backend: CacheBackend | None = None,
) -> Runtime:
    """Wire a runtime; ``backend`` overrides the Redis backend chosen by settings (tests)."""
    from leadlookup.adapters.cache import CircuitBreaker, ReadThroughCache
    from leadlookup.adapters.db import Database
    from leadlookup.adapters.repository import Repository
    from leadlookup.usecases.lookups import LookupService

    db = Database(settings)
    on_failure = None
    if backend is None and settings.cache_enabled:
        # Imported only here: a function that never uses the cache never loads redis-py.
        from leadlookup.adapters.cache.redis_backend import RedisBackend, build_client

        redis_backend = RedisBackend(
            lambda: build_client(settings), max_age_s=settings.redis_max_connection_age_s
        )
        backend, on_failure = redis_backend, redis_backend.reset
    cache = ReadThroughCache(
        backend,
        CircuitBreaker(settings.redis_breaker_cooldown_ms / 1000),
        metrics or emf,
        lease_ms=settings.cache_lease_ms,
        wait_ms=settings.cache_wait_ms,
        on_failure=on_failure,
    )
    return Runtime(settings, db, cache, LookupService(Repository(db), cache, settings))


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


def build_responder(settings: Settings, outcomes: Queue, metrics_sink: Any = None) -> Responder:
    """The responder of these settings (agent and sender only when both are configured)."""
    from leadlookup.adapters.elevenlabs import ElevenLabsAgent
    from leadlookup.adapters.idempotency import persistence_store
    from leadlookup.adapters.secrets import secret
    from leadlookup.adapters.twilio import TwilioSender
    from leadlookup.usecases.responder import Responder

    agent = sender = None
    if settings.elevenlabs_agent_id and settings.twilio_account_sid:
        agent = ElevenLabsAgent(
            settings.elevenlabs_ws_url,
            settings.elevenlabs_agent_id,
            lambda: secret(settings, API_KEY_NAME),
            api_url=settings.elevenlabs_api_url,
            settle_s=settings.sms_reply_settle_ms / 1000,
        )
        sender = TwilioSender(
            settings.twilio_api_url,
            settings.twilio_account_sid,
            lambda: secret(settings, AUTH_TOKEN_NAME),
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


@dataclass(frozen=True)
class Replies:
    """The three use cases of SMS replies, sharing one job queue."""

    pipeline: ReplyPipeline
    outcomes: Outcomes
    staff: Staff


def build_replies(service: LookupService, metrics_sink: Any = None) -> Replies:
    """Replies over ``service``: SQS queues where configured, in-process hand-offs elsewhere."""
    from leadlookup.domain.jobs import ReplyJob
    from leadlookup.usecases.outcomes import Outcomes
    from leadlookup.usecases.replies import ReplyPipeline
    from leadlookup.usecases.staff import Staff

    settings = service.settings
    outcomes = Outcomes(service, metrics=metrics_sink)
    jobs: Queue
    if settings.reply_queue_url:
        jobs = queue_for(settings.reply_queue_url, lambda body: None)
    else:
        # Without a reply queue the responder runs here, and so (without an outcome queue)
        # does the outcome's storage: the same interfaces as the queues, the same JSON bodies.
        sent = queue_for(
            settings.reply_outcome_queue_url, tolerant(outcomes.store_queued, "outcomes")
        )
        responder = build_responder(settings, sent, metrics_sink)
        jobs = queue_for(
            None, tolerant(lambda body: responder.handle(ReplyJob.from_json(body)), "replies")
        )
    pipeline = ReplyPipeline(service, jobs)
    return Replies(pipeline, outcomes, Staff(service, pipeline))


# -- this container ------------------------------------------------------------------------

_settings: Settings | None = None
_runtime: Runtime | None = None
_responder: Responder | None = None
_lock = threading.Lock()


def settings() -> Settings:
    """This container's settings, read from the environment on first use."""
    global _settings
    if _settings is None:
        with _lock:
            if _settings is None:
                _settings = Settings.from_env() if _runtime is None else _runtime.settings
    return _settings


def get_runtime() -> Runtime:
    """This container's runtime (database, cache, lookups), built on first use."""
    global _runtime
    if _runtime is None:
        current = settings()
        with _lock:
            if _runtime is None:
                _runtime = build_runtime(current)
    return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Replace (or with None, forget) this container's runtime, settings and responder.

    Tests and the local runner use it after changing the environment. Forgetting is a new
    container: the metrics re-read Powertools' variables and write ColdStart again.
    """
    global _runtime, _settings, _responder
    with _lock:
        if _runtime is not None and _runtime is not runtime:
            _runtime.close()
        _runtime = runtime
        _settings = runtime.settings if runtime is not None else None
        _responder = None
    if runtime is None:
        emf.reset()


def responder() -> Responder:
    """The responder function's responder, built once per container from the environment."""
    global _responder
    current = settings()
    with _lock:
        if _responder is None:
            if not current.reply_outcome_queue_url:
                raise ConfigError("REPLY_OUTCOME_QUEUE_URL is required by the responder")
            outcomes = queue_for(current.reply_outcome_queue_url, lambda body: None)
            _responder = build_responder(current, outcomes)
        return _responder


# -- in-process hand-offs for the webhooks (no queue URL: local runs and tests) -------------


def process_inbound_sms_here(body: dict[str, Any]) -> object:
    """The inbound SMS processor, in this process."""
    from leadlookup.usecases import inbound_sms

    runtime = get_runtime()
    return inbound_sms.process_message(runtime.service, runtime.replies, body)


def process_post_call_here(body: dict[str, Any]) -> object:
    """The post-call processor, in this process."""
    from leadlookup.usecases import postcall

    runtime = get_runtime()
    return postcall.process_message(runtime.service, runtime.replies, body)


def store_outcome_here(body: dict[str, Any]) -> object:
    """The outcome processor (a delivery status), in this process."""
    return get_runtime().outcomes.store_queued(body)
