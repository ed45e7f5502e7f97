"""CloudFormation custom resource that runs the migrations on every deploy that changes them."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from leadlookup.errors import LookupServiceError, Unavailable
from leadlookup.observability import logger

PHYSICAL_RESOURCE_ID = "bici-lookups-schema"
RESPONSE_TIMEOUT_S = 10
# Keep this much of the invocation for answering CloudFormation after the last attempt.
_ANSWER_RESERVE_MS = 15_000


def send_response(url: str, body: dict[str, Any]) -> None:
    """PUT the answer to CloudFormation's pre-signed S3 URL (empty content type, as signed)."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL is CloudFormation's https S3 URL
        url, data=data, method="PUT", headers={"content-type": "", "content-length": str(len(data))}
    )
    with urllib.request.urlopen(request, timeout=RESPONSE_TIMEOUT_S) as reply:  # noqa: S310
        reply.read()


def migrate_with_retry(
    migrate: Callable[[], list[str]],
    remaining_ms: Callable[[], int],
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Run ``migrate``, retrying with backoff while the database (RDS Proxy) comes up.

    Only :class:`Unavailable` is retried: a migration whose SQL fails fails the same way
    every time, so it fails the deploy at once.
    """
    delay = 1.0
    while True:
        try:
            return migrate()
        except Unavailable:
            if remaining_ms() - delay * 1000 < _ANSWER_RESERVE_MS:
                raise
            logger.info("database not reachable yet; retrying", delay_s=delay)
            sleep(delay)
            delay = min(delay * 2, 20.0)


def handle(
    event: dict[str, Any],
    remaining_ms: Callable[[], int],
    migrate: Callable[[], list[str]],
    send: Callable[[str, dict[str, Any]], None] = send_response,
) -> dict[str, Any]:
    """Answer a custom-resource event: migrate on Create/Update, always SUCCESS on Delete."""
    answer: dict[str, Any] = {
        "Status": "SUCCESS",
        "PhysicalResourceId": event.get("PhysicalResourceId") or PHYSICAL_RESOURCE_ID,
        "StackId": event.get("StackId"),
        "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
        "Data": {},
    }
    if event.get("RequestType") != "Delete":
        try:
            applied = migrate_with_retry(migrate, remaining_ms)
            answer["Data"] = {"Applied": ",".join(applied) or "none"}
        except Exception as exc:
            # The layer's own messages name the migration and the SQLSTATE; anything else gets
            # only its type, because database and driver messages can quote row contents.
            cause = str(exc) if isinstance(exc, LookupServiceError) else type(exc).__name__
            logger.error("migration failed", error_type=type(exc).__name__, cause=cause)
            answer["Status"] = "FAILED"
            answer["Reason"] = f"{cause} ({type(exc).__name__}); see the function's logs"
    if event.get("ResponseURL"):
        send(event["ResponseURL"], answer)
    return answer
