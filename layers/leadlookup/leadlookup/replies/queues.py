"""Where jobs and outcomes go: an SQS queue, or (no URL: local runs, tests) a function call."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, Protocol

from leadlookup.errors import Unavailable
from leadlookup.observability import logger


class JsonQueue(Protocol):
    """Accepts one JSON message; ``key`` deduplicates and ``group`` orders (FIFO queues)."""

    def send(self, body: dict[str, Any], *, key: str, group: str) -> None:
        """Accept the message, or raise :class:`Unavailable`."""


class CallQueue:
    """The in-process hand-off: the consumer runs now, in the caller's request.

    A consumer failure is logged, not raised: what the caller stored before handing off is
    already safe, and there is no queue here to deliver the message again.
    """

    def __init__(self, consumer: Callable[[dict[str, Any]], object], name: str) -> None:
        self.consumer = consumer
        self.name = name

    def send(self, body: dict[str, Any], *, key: str, group: str) -> None:
        """Run the consumer on the message."""
        try:
            self.consumer(json.loads(json.dumps(body)))  # the same JSON round trip as SQS
        except Exception as exc:
            logger.error(
                "in-process consumer failed", queue=self.name, key=key, error=type(exc).__name__
            )


class SqsJsonQueue:
    """An SQS queue; a ``.fifo`` URL gets ``MessageDeduplicationId`` and ``MessageGroupId``."""

    def __init__(self, queue_url: str, client_factory: Callable[[], Any] | None = None) -> None:
        self.queue_url = queue_url
        self.fifo = queue_url.endswith(".fifo")
        self._factory = client_factory
        self._client: Any = None
        self._lock = threading.Lock()

    def _sqs(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    if self._factory is not None:
                        self._client = self._factory()
                    else:
                        from leadlookup.sms import sqs_client

                        self._client = sqs_client(self.queue_url)
        return self._client

    def send(self, body: dict[str, Any], *, key: str, group: str) -> None:
        """``SendMessage``; any AWS or network error is :class:`Unavailable`."""
        from botocore.exceptions import BotoCoreError, ClientError

        options: dict[str, Any] = {}
        if self.fifo:
            options = {"MessageDeduplicationId": key[:128], "MessageGroupId": group[:128]}
        try:
            self._sqs().send_message(
                QueueUrl=self.queue_url,
                MessageBody=json.dumps(body, separators=(",", ":")),
                **options,
            )
        except (BotoCoreError, ClientError) as exc:
            logger.warning("message not queued", queue=self.queue_url, error=type(exc).__name__)
            raise Unavailable("queue is unreachable") from exc
