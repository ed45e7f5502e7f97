"""Storage-first hand-offs: a webhook puts a verified message on a queue and answers at once.

One interface, two implementations: :class:`SqsQueue` (the queue URL is configured: AWS) and
:class:`InProcessQueue` (no URL: local runs and tests, where the processor runs in the
webhook's own request). Both carry the same JSON body, so a processor sees exactly what it
would see from SQS, and both refuse a body over SQS's message size limit.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from leadlookup.errors import PayloadTooLarge, Unavailable
from leadlookup.observability import logger

# SQS's limit on a message body (the queues set MaximumMessageSize to it explicitly).
MAX_MESSAGE_BYTES = 256 * 1024
# FIFO ids: at most 128 characters, letters, digits and punctuation (no spaces).
FIFO_ID_MAX = 128
_FIFO_ID_UNSAFE = re.compile(r"[^\x21-\x7e]")
# Hosts whose SQS endpoint botocore resolves itself (FIPS, dual-stack and VPC endpoint
# settings included); any other queue host (ElasticMQ, LocalStack) is used as the endpoint.
_AWS_QUEUE_HOST = re.compile(
    r"^(?:sqs\.(?P<a>[a-z0-9-]+)|(?P<b>[a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?$"
)
# Short timeouts and one retry: the webhooks' callers (Twilio 15 s, ElevenLabs) wait.
CONNECT_TIMEOUT_S = 1
READ_TIMEOUT_S = 2
# botocore's `max_attempts` counts retries after the first try; `total_max_attempts`
# counts the first try too: one try plus one retry, so a silent queue costs at most ~6 s.
TOTAL_ATTEMPTS = 2

Handler = Callable[[dict[str, Any]], Any]


class Queue(Protocol):
    """Where a webhook hands a verified message for processing."""

    def send(
        self,
        body: dict[str, Any],
        *,
        deduplication_id: str | None = None,
        group_id: str | None = None,
    ) -> None:
        """Accept ``body`` for processing, or raise :class:`Unavailable` (a 503)."""


def fifo_id(text: str) -> str:
    """``text`` made acceptable as a FIFO group or deduplication id.

    Characters SQS refuses become ``_`` and the id is cut at 128 characters; a group only
    orders delivery, so a rare merge of two groups is harmless.
    """
    return _FIFO_ID_UNSAFE.sub("_", text)[:FIFO_ID_MAX]


def encode(body: dict[str, Any]) -> str:
    """The message body as sent: compact JSON, refused when over :data:`MAX_MESSAGE_BYTES`."""
    # ASCII only: SQS refuses some code points (U+FFFE, U+FFFF) that escapes carry safely.
    encoded = json.dumps(body, separators=(",", ":"))
    if len(encoded) > MAX_MESSAGE_BYTES:
        raise PayloadTooLarge(f"message is larger than the queue's {MAX_MESSAGE_BYTES} bytes")
    return encoded


class InProcessQueue:
    """No queue configured: the processor runs now, on the body as SQS would deliver it."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def send(
        self,
        body: dict[str, Any],
        *,
        deduplication_id: str | None = None,
        group_id: str | None = None,
    ) -> None:
        """Process the message in this request; its errors reach the webhook's caller."""
        self.handler(json.loads(encode(body)))


def sqs_client(queue_url: str) -> Any:
    """A boto3 SQS client for the queue's region or endpoint: short timeouts, one retry."""
    # Imported here: boto3 comes with the Lambda runtime, and runs without a queue never need it.
    import boto3
    from botocore.config import Config

    from leadlookup.observability import trace_library

    trace_library("botocore")
    parts = urlsplit(queue_url)
    match = _AWS_QUEUE_HOST.match(parts.hostname or "")
    options: dict[str, Any] = {}
    if match:
        options["region_name"] = match.group("a") or match.group("b")
    else:
        options["endpoint_url"] = f"{parts.scheme}://{parts.netloc}"
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"total_max_attempts": TOTAL_ATTEMPTS, "mode": "standard"},
    )
    return boto3.client("sqs", config=config, **options)


class SqsQueue:
    """An SQS queue (standard or FIFO); the client is built on first use, then reused."""

    def __init__(self, queue_url: str, client_factory: Callable[[], Any] | None = None) -> None:
        self.queue_url = queue_url
        self._factory = client_factory or (lambda: sqs_client(queue_url))
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The SQS client, built on first use and reused by later invocations."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
        return self._client

    def send(
        self,
        body: dict[str, Any],
        *,
        deduplication_id: str | None = None,
        group_id: str | None = None,
    ) -> None:
        """``SendMessage`` (FIFO ids when given); any AWS or network error is a 503."""
        from botocore.exceptions import BotoCoreError, ClientError

        request: dict[str, Any] = {"QueueUrl": self.queue_url, "MessageBody": encode(body)}
        if deduplication_id is not None:
            request["MessageDeduplicationId"] = fifo_id(deduplication_id)
        if group_id is not None:
            request["MessageGroupId"] = fifo_id(group_id)
        try:
            self.client.send_message(**request)
        except (BotoCoreError, ClientError) as exc:
            code = None
            if isinstance(exc, ClientError):
                code = exc.response.get("Error", {}).get("Code")
            logger.warning(
                "message not queued",
                queue=self.queue_url.rsplit("/", 1)[-1],
                error=type(exc).__name__,
                code=code,
            )
            raise Unavailable("queue is unreachable") from exc


_sqs_queues: dict[str, SqsQueue] = {}
_sqs_lock = threading.Lock()


def forget_clients() -> None:
    """Drop every SQS queue's client (built again on next use)."""
    with _sqs_lock:
        _sqs_queues.clear()


def queue_for(url: str | None, handler: Handler) -> Queue:
    """The SQS queue at ``url`` (one client per queue and container), else in-process."""
    if not url:
        return InProcessQueue(handler)
    with _sqs_lock:
        queue = _sqs_queues.get(url)
        if queue is None:
            queue = _sqs_queues[url] = SqsQueue(url)
    return queue
