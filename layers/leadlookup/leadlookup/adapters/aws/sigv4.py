"""AWS Signature Version 4 with the standard library only: presigned URLs and signed headers.

Why not botocore: importing its signer costs a cold start about a quarter of a second, and the
tokens needed on the data path (RDS IAM auth, ElastiCache IAM auth) and a Secrets Manager call
are a few HMACs. The output is tested byte for byte against botocore's
``generate_db_auth_token``, ``SigV4QueryAuth`` and ``SigV4Auth`` (tests/unit/test_sigv4.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
# The lifetime AWS gives both IAM auth tokens (and the longest RDS accepts).
AUTH_TOKEN_EXPIRES_S = 900
_SAFE = "-_.~"
# Headers botocore leaves out of the signature (proxies and tracing may change them).
_UNSIGNED_HEADERS = frozenset(
    {
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Credentials:
    """An access key pair, with the session token of temporary credentials (Lambda's)."""

    access_key: str
    secret_key: str = ""
    token: str | None = None

    def __repr__(self) -> str:
        # Never print the secret half (tracebacks and logs show reprs).
        return f"Credentials(access_key={self.access_key!r}, token={self.token is not None})"


def _encode(value: str) -> str:
    return quote(value.encode("utf-8"), safe=_SAFE)


def _timestamp(now: datetime | None) -> str:
    moment = datetime.now(UTC) if now is None else now.astimezone(UTC)
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _canonical_path(path: str) -> str:
    # RFC 3986 dot-segment removal plus collapsed slashes, as AWS services expect.
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    lead = "/" if path.startswith("/") else ""
    trail = "/" if path.endswith("/") and segments else ""
    return quote(lead + "/".join(segments) + trail, safe="/~")


def _signing_key(secret_key: str, day: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def _signature(
    canonical_request: str, timestamp: str, region: str, service: str, credentials: Credentials
) -> str:
    scope = f"{timestamp[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        (
            ALGORITHM,
            timestamp,
            scope,
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        )
    )
    key = _signing_key(credentials.secret_key, timestamp[:8], region, service)
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def presign_url(
    url: str,
    params: Iterable[tuple[str, str]],
    *,
    service: str,
    region: str,
    credentials: Credentials,
    expires_s: int = AUTH_TOKEN_EXPIRES_S,
    method: str = "GET",
    now: datetime | None = None,
) -> str:
    """``url`` (scheme, host, path; no query) with ``params`` and a SigV4 query signature.

    The query keeps the order botocore writes: the operation's ``params``, then the
    ``X-Amz-*`` parameters, then ``X-Amz-Signature``. Only ``host`` is signed.
    """
    timestamp = _timestamp(now)
    scope = f"{credentials.access_key}/{timestamp[:8]}/{region}/{service}/aws4_request"
    auth: list[tuple[str, str]] = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", scope),
        ("X-Amz-Date", timestamp),
        ("X-Amz-Expires", str(expires_s)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    if credentials.token is not None:
        auth.append(("X-Amz-Security-Token", credentials.token))
    # One value per name, the operation's parameters first (botocore merges them into a dict).
    merged = dict(params)
    pairs = [(_encode(k), _encode(v)) for k, v in (*merged.items(), *auth)]
    query = "&".join(f"{k}={v}" for k, v in pairs)
    parts = urlsplit(url)
    canonical_request = "\n".join(
        (
            method.upper(),
            _canonical_path(parts.path),
            "&".join(f"{k}={v}" for k, v in sorted(pairs)),
            f"host:{_host(url)}\n",
            "host",
            hashlib.sha256(b"").hexdigest(),
        )
    )
    signature = _signature(canonical_request, timestamp, region, service, credentials)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return f"{base}?{query}&X-Amz-Signature={signature}"


def rds_auth_token(
    host: str,
    port: int,
    user: str,
    region: str,
    credentials: Credentials,
    now: datetime | None = None,
) -> str:
    """The RDS (and RDS Proxy) IAM auth token: botocore's ``generate_db_auth_token``."""
    url = presign_url(
        f"https://{host}:{port}/",
        [("Action", "connect"), ("DBUser", user)],
        service="rds-db",
        region=region,
        credentials=credentials,
        now=now,
    )
    return url.removeprefix("https://")


def elasticache_auth_token(
    cache_name: str,
    user_id: str,
    region: str,
    credentials: Credentials,
    now: datetime | None = None,
    *,
    serverless: bool = True,
) -> str:
    """The ElastiCache IAM auth token: a presigned ``connect`` for ``user_id`` on the cache.

    The host is the cache's name (not its endpoint), and the token is the URL without its
    scheme, as AWS's ElastiCache IAM authentication guide describes.
    """
    params = [("Action", "connect"), ("User", user_id)]
    if serverless:
        params.append(("ResourceType", "ServerlessCache"))
    url = presign_url(
        f"https://{cache_name}/",
        params,
        service="elasticache",
        region=region,
        credentials=credentials,
        now=now,
    )
    return url.removeprefix("https://")


def sign_headers(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    service: str,
    region: str,
    credentials: Credentials,
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers that sign a request (``X-Amz-Date``, security token, ``Authorization``).

    ``headers`` are the request's own (e.g. ``Content-Type``, ``X-Amz-Target``); the result is
    to be sent with them. ``Host`` is signed as the URL names it. A query string in ``url`` must
    already be percent-encoded (it is signed as written, as botocore does).
    """
    timestamp = _timestamp(now)
    added = {"X-Amz-Date": timestamp}
    if credentials.token:
        added["X-Amz-Security-Token"] = credentials.token
    signed: dict[str, list[str]] = {}
    for name, value in (*headers.items(), *added.items()):
        lname = name.lower()
        if lname not in _UNSIGNED_HEADERS and lname not in ("authorization", "x-amz-date"):
            signed.setdefault(lname, []).append(" ".join(str(value).split()))
    signed["x-amz-date"] = [timestamp]
    signed.setdefault("host", [_host(url)])
    names = sorted(signed)
    signed_names = ";".join(names)
    parts = urlsplit(url)
    query_pairs = sorted(pair.partition("=")[::2] for pair in parts.query.split("&") if parts.query)
    payload = hashlib.sha256(body).hexdigest()
    canonical_request = "\n".join(
        (
            method.upper(),
            _canonical_path(parts.path),
            "&".join(f"{k}={v}" for k, v in query_pairs),
            "".join(f"{n}:{','.join(signed[n])}\n" for n in names),
            signed_names,
            payload,
        )
    )
    signature = _signature(canonical_request, timestamp, region, service, credentials)
    scope = f"{credentials.access_key}/{timestamp[:8]}/{region}/{service}/aws4_request"
    added["Authorization"] = (
        f"{ALGORITHM} Credential={scope}, SignedHeaders={signed_names}, Signature={signature}"
    )
    return added
