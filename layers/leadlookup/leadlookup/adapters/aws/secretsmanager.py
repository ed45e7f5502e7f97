"""Secrets Manager ``GetSecretValue`` over the standard library, bounded by the caller's deadline.

Why not boto3: importing it and creating one client costs a cold start about half a second
(BENCHMARKS.md, cold starts), more than everything else the first call does. The request is a
single signed JSON POST (``leadlookup.adapters.aws.sigv4.sign_headers``), so this module
sends it with urllib. Values are cached per container like Powertools parameters do (``max_age``).

A read made inside :func:`deadline_scope` gets at most the time left until that deadline as its
socket timeout (secret reads count against ``INITIATION_DEADLINE_MS``, so that a cold
initiation still answers in time), and raises :class:`DeadlineExceeded` when Secrets Manager
does not answer in time.
"""

from __future__ import annotations

import base64
import contextvars
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from leadlookup.adapters.aws import iam, sigv4
from leadlookup.errors import ConfigError, DeadlineExceeded, Unavailable

SERVICE = "secretsmanager"
TARGET = "secretsmanager.GetSecretValue"
# How long a secret is reused before it is read again (Powertools' default is 5 s; secrets
# rotate rarely and every read costs a cold-start round trip).
MAX_AGE_S = 300.0
# Per attempt when no deadline applies (botocore's 60 s would outlast every caller here).
TIMEOUT_S = 2.0
ATTEMPTS = 2

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "secret_deadline", default=None
)


class Response(Protocol):
    """What ``urlopen`` returns that is read here."""

    def read(self) -> bytes: ...


Opener = Callable[[urllib.request.Request, float], Response]


class deadline_scope:  # lower case: it reads as the function it replaced
    """Within the block, secret reads end by ``deadline`` (a ``time.monotonic()`` value).

    A class rather than ``contextlib.contextmanager``: every initiation enters one, and a
    generator-based manager costs several times more per use.
    """

    __slots__ = ("_deadline", "_token")

    def __init__(self, deadline: float | None) -> None:
        self._deadline = deadline

    def __enter__(self) -> None:
        self._token = _deadline.set(self._deadline)

    def __exit__(self, *_exc: object) -> None:
        _deadline.reset(self._token)


def current_deadline() -> float | None:
    """The deadline set by the innermost :func:`deadline_scope`, if any."""
    return _deadline.get()


def _urlopen(request: urllib.request.Request, timeout: float) -> Response:
    # typeshed types urlopen's result as Any (it depends on the URL's scheme).
    response: Response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - https/http
    return response


def endpoint(env: Mapping[str, str]) -> str:
    """The service URL: ``AWS_ENDPOINT_URL_SECRETS_MANAGER``/``AWS_ENDPOINT_URL`` (as the AWS
    SDKs read them), else the regional endpoint."""
    for name in ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL"):
        value = (env.get(name) or "").strip()
        if value:
            return value.rstrip("/") + "/"
    return f"https://secretsmanager.{region(env)}.amazonaws.com/"


def region(env: Mapping[str, str]) -> str:
    """The region Lambda sets (``AWS_REGION``), else ``AWS_DEFAULT_REGION``."""
    return (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1").strip()


def env_credentials(env: Mapping[str, str]) -> sigv4.Credentials:
    """The function's role credentials: the environment's, or under SnapStart (which has
    none there) the container endpoint's, loaded and cached by
    :mod:`leadlookup.adapters.aws.iam`."""
    access_key = (env.get("AWS_ACCESS_KEY_ID") or "").strip()
    if access_key:
        return sigv4.Credentials(
            access_key,
            (env.get("AWS_SECRET_ACCESS_KEY") or "").strip(),
            (env.get("AWS_SESSION_TOKEN") or "").strip() or None,
        )
    if not (env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or "").strip():
        raise Unavailable("no AWS credentials (AWS_ACCESS_KEY_ID) to read secrets with")
    try:
        return iam.credentials(env)
    except ConfigError as exc:
        raise Unavailable(f"no AWS credentials to read secrets with: {exc}") from None


class SecretsClient:
    """``GetSecretValue`` with a per-container cache; thread-safe."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        opener: Opener = _urlopen,
        clock: Callable[[], float] = time.monotonic,
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        self._env = os.environ if env is None else env
        self._opener = opener
        self._clock = clock
        self._max_age_s = max_age_s
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.requests = 0  # round trips made (tests count them)

    def get(self, secret_id: str) -> str:
        """The secret's string (binary secrets decoded as UTF-8), cached for ``max_age_s``."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(secret_id)
        if cached is not None and now - cached[1] < self._max_age_s:
            return cached[0]
        value = self._fetch(secret_id)
        with self._lock:
            self._cache[secret_id] = (value, self._clock())
        return value

    def clear(self) -> None:
        """Forget every cached value (SnapStart restore, tests)."""
        with self._lock:
            self._cache.clear()

    def _timeout(self) -> float:
        deadline = current_deadline()
        if deadline is None:
            return TIMEOUT_S
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise DeadlineExceeded("no time left to read a secret")
        return min(TIMEOUT_S, remaining)

    def _fetch(self, secret_id: str) -> str:
        url = endpoint(self._env)
        body = json.dumps({"SecretId": secret_id}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET}
        for attempt in range(1, ATTEMPTS + 1):
            timeout = self._timeout()
            signed = sigv4.sign_headers(
                "POST",
                url,
                headers,
                body,
                service=SERVICE,
                region=region(self._env),
                credentials=env_credentials(self._env),
            )
            request = urllib.request.Request(  # noqa: S310 - the endpoint above
                url, data=body, headers={**headers, **signed}, method="POST"
            )
            self.requests += 1
            try:
                return _secret_string(json.loads(self._opener(request, timeout).read()))
            except urllib.error.HTTPError as exc:
                # 4xx: the secret is missing or not ours to read; asking again will not help.
                if exc.code < 500 or attempt == ATTEMPTS:
                    raise Unavailable(f"Secrets Manager refused: {_error_type(exc)}") from exc
            except TimeoutError as exc:
                raise DeadlineExceeded("Secrets Manager did not answer in time") from exc
            except (OSError, ValueError) as exc:
                if isinstance(getattr(exc, "reason", None), TimeoutError):
                    raise DeadlineExceeded("Secrets Manager did not answer in time") from exc
                if attempt == ATTEMPTS:
                    raise Unavailable("Secrets Manager is unreachable") from exc
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _secret_string(reply: Any) -> str:
    if not isinstance(reply, dict):
        raise Unavailable("Secrets Manager answered something other than a JSON object")
    if isinstance(reply.get("SecretString"), str):
        return str(reply["SecretString"])
    if isinstance(reply.get("SecretBinary"), str):
        return base64.b64decode(reply["SecretBinary"]).decode()
    raise Unavailable("the secret has no value")


def _error_type(exc: urllib.error.HTTPError) -> str:
    # Only the error's type: its message may quote the secret's name, never its value, but
    # callers log types anyway.
    try:
        reply = json.loads(exc.read() or b"{}")
    except ValueError:
        reply = {}
    kind = str(reply.get("__type") or f"HTTP {exc.code}") if isinstance(reply, dict) else ""
    return kind.rpartition("#")[2] or f"HTTP {exc.code}"


_client: SecretsClient | None = None
_client_lock = threading.Lock()


def client() -> SecretsClient:
    """This container's client, made on first use."""
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = SecretsClient()
    return _client


def reset() -> None:
    """Forget the container's client and its cached secrets (SnapStart restore, tests)."""
    global _client
    with _client_lock:
        _client = None
