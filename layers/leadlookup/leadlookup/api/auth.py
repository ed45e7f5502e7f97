"""Webhook authentication, every scheme in one place (docs/DEPLOY.md, "Filling the secrets").

- the initiation webhook's header secret (constant-time equality; 401),
- Twilio's ``X-Twilio-Signature``: base64(HMAC-SHA1(auth token, URL + sorted fields)), the URL
  rebuilt as Twilio called it (403),
- ElevenLabs' ``ElevenLabs-Signature: t=<unix>,v0=<hex>`` with
  ``v0 = HMAC-SHA256(secret, f"{t}.{raw body}")``, accepted for 30 minutes after it was signed
  (ElevenLabs' own SDK tolerance) and up to 5 minutes early for clock skew (401).

Each reads its secret through :func:`configured_secret` and fails closed when it is missing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import ParseResult, urlparse

from leadlookup.adapters.secrets import secret
from leadlookup.api.http import header, raw_body
from leadlookup.config import Settings
from leadlookup.errors import Forbidden, Unauthorized
from leadlookup.observability import logger

INITIATION_SECRET_NAME = "INITIATION_WEBHOOK_SECRET"  # noqa: S105 - the variable's name
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
TWILIO_AUTH_TOKEN_NAME = "TWILIO_AUTH_TOKEN"  # noqa: S105 - the name of the secret, not its value
ELEVENLABS_SIGNATURE_HEADER = "ElevenLabs-Signature"
ELEVENLABS_SECRET_NAME = "ELEVENLABS_WEBHOOK_SECRET"  # noqa: S105 - the variable's name
ELEVENLABS_MAX_AGE_SECONDS = 30 * 60
ELEVENLABS_MAX_FUTURE_SECONDS = 5 * 60

_ELEVENLABS_HEX = re.compile(r"[0-9a-fA-F]+")
_ELEVENLABS_TIMESTAMP = re.compile(r"[0-9]{1,12}")

UNSIGNED_WARNING = (
    "ALLOW_UNSIGNED_WEBHOOKS is on: webhook secrets and signatures are not checked"
    " (local demos only; never on a deployed stack)"
)

_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message)


def _unsigned(settings: Settings) -> bool:
    """Whether checks are off; the first webhook that skips one says so (once per container)."""
    if not settings.allow_unsigned_webhooks:
        return False
    _warn_once("unsigned", UNSIGNED_WARNING)
    return True


def configured_secret(settings: Settings, name: str) -> str | None:
    """The secret ``name`` (plain or ``_ARN``), or None when it is not configured.

    The one failure policy of every scheme: a missing secret fails closed (the scheme's 401 or
    403) and is logged once per container; a secret that cannot be read raises what
    :meth:`Settings.secret` raises (:class:`Unavailable`: 503, so the sender retries), logged
    once where it is answered.
    """
    value = secret(settings, name)
    if value is None and name not in _warned:
        _warned.add(name)
        logger.error("webhook secret is not configured; rejecting requests", secret_name=name)
    return value


def same_secret(provided: str | None, expected: str) -> bool:
    """Constant-time equality of two secrets (any text, not only ASCII)."""
    if provided is None:
        return False
    return hmac.compare_digest(provided.encode(), expected.encode())


def require_header_secret(
    settings: Settings, secret_name: str, header_name: str, provided: str | None
) -> None:
    """401 unless ``provided`` (the value of header ``header_name``) equals secret ``name``."""
    if _unsigned(settings):
        return
    expected = configured_secret(settings, secret_name)
    if expected is None:
        raise Unauthorized("webhook secret is not configured")
    if provided is None:
        raise Unauthorized(f"missing {header_name} header")
    if not same_secret(provided, expected):
        raise Unauthorized(f"invalid {header_name} header")


# -- Twilio ------------------------------------------------------------------------------------


def _grouped(params: Mapping[str, Any] | Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    items: Iterable[tuple[str, Any]]
    if isinstance(params, Mapping):
        items = (
            (name, value)
            for name, values in params.items()
            for value in (values if isinstance(values, list | tuple) else [values])
        )
    else:
        items = params
    grouped: dict[str, list[str]] = {}
    for name, value in items:
        grouped.setdefault(str(name), []).append(str(value))
    return grouped


def twilio_signature(
    url: str, params: Mapping[str, Any] | Iterable[tuple[str, str]], token: str
) -> str:
    """base64(HMAC-SHA1(token, url + name + value ...)) as Twilio's ``RequestValidator`` does.

    Names are sorted; a repeated name contributes each distinct value, sorted (the
    validator's ``sorted(set(values))``).
    """
    grouped = _grouped(params)
    data = [url]
    for name in sorted(grouped):
        data.extend(name + value for value in sorted(set(grouped[name])))
    mac = hmac.new(token.encode("utf-8"), "".join(data).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _geturl_without_port(uri: ParseResult) -> str:
    if not uri.port:
        return uri.geturl()
    return uri._replace(netloc=uri.netloc.split(":")[0]).geturl()


def _geturl_with_port(uri: ParseResult) -> str:
    if uri.port:
        return uri.geturl()
    port = 443 if uri.scheme == "https" else 80
    return uri._replace(netloc=f"{uri.netloc}:{port}").geturl()


def twilio_signature_urls(url: str) -> list[str]:
    """The URL forms a signature is checked against: without and with the port.

    Twilio signs with or without the default port depending on the product, so its
    ``RequestValidator`` accepts both; these are its ``remove_port`` and ``add_port``.
    """
    uri = urlparse(url)
    try:
        return [_geturl_without_port(uri), _geturl_with_port(uri)]
    except ValueError:  # a port that is not a number: only the URL as given can match
        return [url]


def route_path(raw_path: str, stage: str | None) -> str:
    """``rawPath`` without the stage segment HTTP API puts first for a stage not ``$default``."""
    if stage and stage != "$default":
        prefix = "/" + stage
        if raw_path == prefix or raw_path.startswith(prefix + "/"):
            return raw_path[len(prefix) :] or "/"
    return raw_path


def twilio_request_url(event: dict[str, Any], public_base_url: str | None = None) -> str:
    """The URL Twilio requested: public origin + path + ``?`` + raw query string (if any).

    Through the API's own domain (``requestContext.domainName``) a named stage is part of the
    public URL, so ``rawPath`` is used as delivered. ``PUBLIC_BASE_URL`` is where the routes
    are mounted (a custom domain, or the execute-api URL with its stage), so it gets the route
    path with the stage segment stripped.
    """
    context = event.get("requestContext") or {}
    raw_path = str(event.get("rawPath") or (context.get("http") or {}).get("path") or "/")
    if public_base_url:
        url = public_base_url.rstrip("/") + route_path(raw_path, context.get("stage"))
    else:
        host = context.get("domainName") or header(event, "host") or ""
        url = f"https://{host}{raw_path}"
    query = event.get("rawQueryString") or ""
    return f"{url}?{query}" if query else url


def verify_twilio_signature(
    event: dict[str, Any], params: Iterable[tuple[str, str]], settings: Settings
) -> None:
    """403 unless ``X-Twilio-Signature`` signs this request's URL and every received field."""
    if _unsigned(settings):
        return
    token = configured_secret(settings, TWILIO_AUTH_TOKEN_NAME)
    if token is None:
        raise Forbidden("Twilio auth token is not configured")
    provided = header(event, TWILIO_SIGNATURE_HEADER)
    if not provided:
        logger.warning("inbound sms rejected", reason="missing signature")
        raise Forbidden(f"missing {TWILIO_SIGNATURE_HEADER} header")
    pairs = list(params)
    url = twilio_request_url(event, settings.public_base_url)
    # Every candidate is computed and compared, so timing tells nothing about which matched.
    matches = [
        hmac.compare_digest(twilio_signature(candidate, pairs, token).encode(), provided.encode())
        for candidate in twilio_signature_urls(url)
    ]
    if not any(matches):
        logger.warning("inbound sms rejected", reason="invalid signature")
        raise Forbidden(f"invalid {TWILIO_SIGNATURE_HEADER} header")


# -- ElevenLabs --------------------------------------------------------------------------------


def elevenlabs_signature(body: bytes, secret: str, timestamp: int) -> str:
    """The ``v0`` hex digest ElevenLabs sends for ``body`` signed at ``timestamp``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def parse_elevenlabs_signature_header(value: str | None) -> tuple[int, list[str]]:
    """``(t, [v0, ...])`` from the header; 401 when it is missing or malformed."""
    if value is None or not value.strip():
        raise Unauthorized(f"missing {ELEVENLABS_SIGNATURE_HEADER} header")
    timestamp: int | None = None
    digests: list[str] = []
    for part in value.split(","):
        name, sep, item = part.strip().partition("=")
        item = item.strip()
        if not sep:
            continue
        if name.strip() == "t":
            if timestamp is not None or not _ELEVENLABS_TIMESTAMP.fullmatch(item):
                raise Unauthorized(f"malformed {ELEVENLABS_SIGNATURE_HEADER} header")
            timestamp = int(item)
        elif name.strip() == "v0":
            if not _ELEVENLABS_HEX.fullmatch(item):
                raise Unauthorized(f"malformed {ELEVENLABS_SIGNATURE_HEADER} header")
            digests.append(item.lower())
    if timestamp is None or not digests:
        raise Unauthorized(f"malformed {ELEVENLABS_SIGNATURE_HEADER} header")
    return timestamp, digests


def verify_elevenlabs_signature(value: str | None, body: bytes, secret: str, now: float) -> int:
    """The signed timestamp if ``value`` signs ``body`` recently enough; else 401."""
    timestamp, digests = parse_elevenlabs_signature_header(value)
    expected = elevenlabs_signature(body, secret, timestamp).encode()
    # Every candidate is compared, so the time taken does not depend on which one matched.
    matched = False
    for digest in digests:
        matched |= hmac.compare_digest(expected, digest.encode())
    if not matched:
        raise Unauthorized(f"{ELEVENLABS_SIGNATURE_HEADER} does not match the body")
    if now - timestamp > ELEVENLABS_MAX_AGE_SECONDS:
        raise Unauthorized(f"{ELEVENLABS_SIGNATURE_HEADER} has expired")
    if timestamp - now > ELEVENLABS_MAX_FUTURE_SECONDS:
        raise Unauthorized(f"{ELEVENLABS_SIGNATURE_HEADER} timestamp is in the future")
    return timestamp


def verified_elevenlabs_body(
    event: dict[str, Any], settings: Settings, now: float, limit: int | None = None
) -> bytes:
    """The raw body, once ``ElevenLabs-Signature`` signs it recently enough; else 401.

    ``limit`` (default ``POST_CALL_MAX_BODY_BYTES``) bounds the body read: 413 above it.
    """
    limit = settings.post_call_max_body_bytes if limit is None else limit
    if _unsigned(settings):
        return raw_body(event, limit)
    secret = configured_secret(settings, ELEVENLABS_SECRET_NAME)
    if secret is None:
        raise Unauthorized("webhook secret is not configured")
    value = header(event, ELEVENLABS_SIGNATURE_HEADER)
    parse_elevenlabs_signature_header(value)  # a missing or malformed header costs no body read
    body = raw_body(event, limit)
    verify_elevenlabs_signature(value, body, secret, now)
    return body
