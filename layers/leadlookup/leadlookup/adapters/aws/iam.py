"""IAM authentication on the data path: the function's AWS credentials and the tokens made
from them (RDS Proxy and ElastiCache take a SigV4-presigned URL as the password).

All per-container IAM state lives in this module, and :func:`reset` drops every bit of it
(SnapStart restore hooks, tests): after a reset, the next token is made from freshly loaded
credentials, so nothing signed before a snapshot is presented after its restore.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from leadlookup.adapters.aws import sigv4
from leadlookup.errors import ConfigError, Unavailable

# Tokens are valid for 15 minutes; one is reused for at most 10, so a connection opened with
# it never presents a token in its last minutes (clock skew, slow handshakes).
TOKEN_REUSE_S = 600
# Credentials from the container endpoint are replaced this long before they expire.
CREDENTIALS_MARGIN_S = 300
CREDENTIALS_TIMEOUT_S = 1.0

WallClock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock signatures are dated by."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class LoadedCredentials:
    """Credentials and when they stop working (None: as long as the process lives)."""

    credentials: sigv4.Credentials
    expires_at: datetime | None


class _State:
    """The module's mutable state, in one object so that reset() is obviously complete."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded: LoadedCredentials | None = None
        # Bumped by reset(); token sources drop a token made in an older generation.
        self.generation = 0


_state = _State()


def reset() -> None:
    """Forget the loaded credentials and every cached token (all token sources)."""
    with _state.lock:
        _state.loaded = None
        _state.generation += 1


def region_from(env: Mapping[str, str]) -> str:
    """The region to sign for: ``AWS_REGION`` (Lambda sets it), else ``AWS_DEFAULT_REGION``."""
    region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip()
    if not region:
        raise ConfigError("AWS_REGION must be set for IAM authentication")
    return region


def credentials(env: Mapping[str, str], clock: WallClock | None = None) -> sigv4.Credentials:
    """This container's credentials, loaded once and reloaded before they expire."""
    return _loaded_credentials(env, clock or utc_now).credentials


def _loaded_credentials(env: Mapping[str, str], clock: WallClock) -> LoadedCredentials:
    with _state.lock:
        loaded = _state.loaded
        margin = timedelta(seconds=CREDENTIALS_MARGIN_S)
        if loaded is None or (
            loaded.expires_at is not None and clock() >= loaded.expires_at - margin
        ):
            loaded = _state.loaded = load_credentials(env)
        return loaded


def load_credentials(env: Mapping[str, str]) -> LoadedCredentials:
    """Credentials from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
    else from the container credentials endpoint (``AWS_CONTAINER_CREDENTIALS_FULL_URI``),
    which is how Lambda hands credentials to SnapStart functions."""
    access_key = (env.get("AWS_ACCESS_KEY_ID") or "").strip()
    secret_key = (env.get("AWS_SECRET_ACCESS_KEY") or "").strip()
    if access_key and secret_key:
        token = (env.get("AWS_SESSION_TOKEN") or "").strip() or None
        return LoadedCredentials(sigv4.Credentials(access_key, secret_key, token), None)
    uri = (env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or "").strip()
    if uri:
        return _container_credentials(uri, _authorization_token(env))
    raise ConfigError(
        "IAM authentication needs AWS credentials: AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or AWS_CONTAINER_CREDENTIALS_FULL_URI"
    )


def _authorization_token(env: Mapping[str, str]) -> str | None:
    token_file = (env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") or "").strip()
    if token_file:
        return Path(token_file).read_text().strip()
    return (env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN") or "").strip() or None


def _container_credentials(uri: str, authorization: str | None) -> LoadedCredentials:
    # Imported here: only SnapStart containers take this path, and every cold start pays
    # for what is imported at module level.
    import http.client

    parts = urlsplit(uri)
    host = parts.hostname or ""
    # As the SDKs do: plain HTTP only to this machine, never to the network.
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError("AWS_CONTAINER_CREDENTIALS_FULL_URI over http must be on loopback")
    if parts.scheme not in ("http", "https"):
        raise ConfigError("AWS_CONTAINER_CREDENTIALS_FULL_URI must be an http(s) URL")
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = connection_class(host, parts.port, timeout=CREDENTIALS_TIMEOUT_S)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    try:
        conn.request("GET", path, headers={"Authorization": authorization} if authorization else {})
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise Unavailable("the container credentials endpoint is unreachable") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise Unavailable(f"the container credentials endpoint answered {response.status}")
    try:
        data = json.loads(body)
        creds = sigv4.Credentials(
            str(data["AccessKeyId"]), str(data["SecretAccessKey"]), data.get("Token") or None
        )
        expiration = data.get("Expiration")
        expires_at = (
            datetime.fromisoformat(str(expiration).replace("Z", "+00:00")) if expiration else None
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise Unavailable("the container credentials endpoint sent no credentials") from exc
    return LoadedCredentials(creds, expires_at)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TokenSource:
    """Makes an auth token from the current credentials and reuses it for a while.

    Callable with no arguments (what a password callback wants). A token is replaced when it
    is ``reuse_s`` old, when its credentials are about to expire, and after :func:`reset`.
    """

    def __init__(
        self,
        make: Callable[[sigv4.Credentials, datetime], str],
        env: Mapping[str, str],
        clock: WallClock | None = None,
        reuse_s: float = TOKEN_REUSE_S,
    ) -> None:
        self._make = make
        self._env = env
        self._clock = clock
        self._reuse = timedelta(seconds=reuse_s)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._valid_until = datetime.min.replace(tzinfo=UTC)
        self._made_at = self._valid_until
        self._generation = -1
        self.made = 0  # how many tokens were made (tests count signatures)

    def __call__(self) -> str:
        """A token valid for at least the next few minutes."""
        with self._lock:
            # utc_now is looked up per call so that tests can freeze it.
            clock = self._clock or utc_now
            now = clock()
            if (
                self._token is None
                or self._generation != _state.generation
                or not self._made_at <= now < self._valid_until
            ):
                generation = _state.generation
                loaded = _loaded_credentials(self._env, clock)
                self._token = self._make(loaded.credentials, now)
                self._made_at = now
                self._valid_until = now + self._reuse
                if loaded.expires_at is not None:
                    self._valid_until = min(self._valid_until, loaded.expires_at)
                self._generation = generation
                self.made += 1
            return self._token


def rds_token_source(
    host: str, port: int, user: str, env: Mapping[str, str], clock: WallClock | None = None
) -> TokenSource:
    """Tokens for logging in to RDS (Proxy) as ``user`` at ``host:port``."""
    region = region_from(env)
    return TokenSource(
        lambda creds, now: sigv4.rds_auth_token(host, port, user, region, creds, now=now),
        env,
        clock,
    )


def elasticache_token_source(
    cache_name: str, user_id: str, env: Mapping[str, str], clock: WallClock | None = None
) -> TokenSource:
    """Tokens for connecting to the ElastiCache Serverless cache ``cache_name`` as ``user_id``."""
    region = region_from(env)
    return TokenSource(
        lambda creds, now: sigv4.elasticache_auth_token(
            cache_name, user_id, region, creds, now=now
        ),
        env,
        clock,
    )
