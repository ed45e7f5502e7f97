"""The function's AWS credentials: the environment's, or Lambda's container endpoint's.

A function normally gets its role's credentials as ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and ``AWS_SESSION_TOKEN``. Under SnapStart those would be frozen
into the snapshot and expire long before a restore, so Lambda instead gives such functions a
local endpoint (``AWS_CONTAINER_CREDENTIALS_FULL_URI``, with the token to present in
``AWS_CONTAINER_AUTHORIZATION_TOKEN``), which the AWS SDKs read through their container
credential provider. This module does the same for the standard-library SigV4 signing here.
Endpoint credentials are cached per container until shortly before they expire;
:func:`reset` forgets them (SnapStart: before the snapshot).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from leadlookup import sigv4
from leadlookup.errors import DeadlineExceeded, Unavailable

# Fetched again this long before they expire (botocore refreshes 15 to 10 minutes early; the
# endpoint's credentials live for hours).
REFRESH_BEFORE_S = 600.0
TIMEOUT_S = 1.0


class Response(Protocol):
    """What ``urlopen`` returns that is read here."""

    def read(self) -> bytes: ...


Opener = Callable[[urllib.request.Request, float], Response]


def _urlopen(request: urllib.request.Request, timeout: float) -> Response:
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - Lambda's own URI


_cached: tuple[sigv4.Credentials, float] | None = None
_lock = threading.Lock()


def lambda_credentials(
    env: Mapping[str, str],
    timeout_s: float = TIMEOUT_S,
    opener: Opener = _urlopen,
    clock: Callable[[], float] = time.time,
) -> sigv4.Credentials:
    """The role credentials: the environment's if set, else the container endpoint's."""
    global _cached
    access_key = (env.get("AWS_ACCESS_KEY_ID") or "").strip()
    if access_key:
        return sigv4.Credentials(
            access_key,
            (env.get("AWS_SECRET_ACCESS_KEY") or "").strip(),
            (env.get("AWS_SESSION_TOKEN") or "").strip() or None,
        )
    uri = (env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or "").strip()
    if not uri:
        raise Unavailable("no AWS credentials (AWS_ACCESS_KEY_ID or a container endpoint)")
    with _lock:
        cached = _cached
    if cached is not None and clock() < cached[1] - REFRESH_BEFORE_S:
        return cached[0]
    credentials, expires = _fetch(uri, _authorization(env), timeout_s, opener)
    with _lock:
        _cached = (credentials, expires)
    return credentials


def reset() -> None:
    """Forget the endpoint's credentials (read again on next use)."""
    global _cached
    with _lock:
        _cached = None


def _authorization(env: Mapping[str, str]) -> str | None:
    token = (env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN") or "").strip()
    path = (env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") or "").strip()
    if not token and path:
        try:
            with open(path, encoding="utf-8") as file:
                token = file.read().strip()
        except OSError as exc:
            raise Unavailable("the container credentials token file is unreadable") from exc
    return token or None


def _fetch(
    uri: str, authorization: str | None, timeout_s: float, opener: Opener
) -> tuple[sigv4.Credentials, float]:
    headers = {"Accept": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(uri, headers=headers)  # noqa: S310 - Lambda's own URI
    try:
        reply: Any = json.loads(opener(request, timeout_s).read())
    except TimeoutError as exc:
        raise DeadlineExceeded("the container credentials endpoint did not answer") from exc
    except (OSError, ValueError) as exc:
        if isinstance(getattr(exc, "reason", None), TimeoutError):
            raise DeadlineExceeded("the container credentials endpoint did not answer") from exc
        raise Unavailable("the container credentials endpoint failed") from exc
    try:
        credentials = sigv4.Credentials(
            str(reply["AccessKeyId"]), str(reply["SecretAccessKey"]), str(reply["Token"])
        )
        expires = datetime.fromisoformat(str(reply["Expiration"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError) as exc:
        raise Unavailable("the container credentials endpoint answered no credentials") from exc
    return credentials, expires.timestamp()
