"""CloudFormation custom resource that runs the migrations on every deploy that changes them."""

from __future__ import annotations

import ipaddress
import json
import os
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from leadlookup.errors import LookupServiceError, Unavailable
from leadlookup.observability import logger

PHYSICAL_RESOURCE_ID = "bici-lookups-schema"
RESPONSE_TIMEOUT_S = 10
# Keep this much of the invocation for answering CloudFormation after the last attempt.
_ANSWER_RESERVE_MS = 15_000


def response_url_allowed(url: str, allow_loopback: bool = False) -> bool:
    """Whether ``url`` may receive the answer: CloudFormation's pre-signed URLs are https on an
    ``amazonaws.com`` host (S3). Anything else in an event is a forgery or a mistake, and
    answering it would send the stack's details wherever the event pointed. Local runs and
    tests stand in for CloudFormation on loopback when ``allow_loopback`` is set."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        return True
    if not allow_loopback or parts.scheme not in ("http", "https"):
        return False
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    allow_loopback: bool | None = None,
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
    url = event.get("ResponseURL")
    if url:
        if allow_loopback is None:
            allow_loopback = os.environ.get("ALLOW_LOOPBACK_RESPONSE_URL", "").lower() == "true"
        if response_url_allowed(str(url), allow_loopback):
            send(str(url), answer)
        else:
            logger.error("custom resource ResponseURL refused: not https on amazonaws.com")
    return answer
