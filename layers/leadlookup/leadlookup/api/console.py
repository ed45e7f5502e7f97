"""The staff console's edge: its files, its sign-in settings, and the headers of every answer.

The console is a page of plain ES modules (functions/console/static, no build step) served by
the stack's own API under ``/console/``; its API calls go to the same origin with the staff
member's ID token (docs/CONSOLE.md). This module turns a ``GET /console...`` event into the
payload 2.0 result:

* ``/console`` redirects to ``/console/`` so that the page's relative URLs (its modules, its
  styles, ``config.json`` and the API one level up) resolve under any base path, a custom
  domain's mapping included.
* ``/console/config.json`` is where to sign in: the authorize, token and logout endpoints of
  ``CONSOLE_AUTH_URL`` (the Cognito domain; ``make run`` points it at the local issuer), the
  app client id and the redirect URI (this console's own URL).
* any other path is one of the files found at cold start, or a JSON 404: a request path never
  reaches the file system, so ``..`` or an encoded slash cannot escape the folder.

Every answer carries the same strict Content-Security-Policy (no inline script or style, no
framing) and ``nosniff``; the page's files are revalidated with their ETag on every load (a
304 costs nothing), so a deploy shows at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from leadlookup.api.http import header
from leadlookup.config import Settings

INDEX = "index.html"
CONFIG = "config.json"
# Cognito's managed login (and the local issuer, which mirrors it) under CONSOLE_AUTH_URL.
AUTHORIZE_PATH = "/oauth2/authorize"
TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a secret
LOGOUT_PATH = "/logout"
SCOPE = "openid email profile"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
TEXT_TYPES = ("text/", "application/json", "image/svg+xml")
# Revalidate every time: file names carry no content hash, and the ETag makes that free.
ASSET_CACHE = "no-cache"
NO_STORE = "no-store"
NOT_CONFIGURED = (
    "the console's sign-in is not configured: set CONSOLE_AUTH_URL and CONSOLE_CLIENT_ID"
)


@dataclass(frozen=True)
class Asset:
    """One file of the console, read once: its bytes, media type and ETag."""

    body: bytes
    content_type: str
    etag: str


def load_assets(folder: Path) -> dict[str, Asset]:
    """Every servable file under ``folder`` by its relative path (``js/app.js``)."""
    assets: dict[str, Asset] = {}
    for path in sorted(folder.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix.lower())
        if not path.is_file() or content_type is None or path.name.startswith("."):
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[path.relative_to(folder).as_posix()] = Asset(body, content_type, etag)
    return assets


def content_security_policy(auth_origin: str | None = None) -> str:
    """The page's policy: its own files only; the sign-in domain may be fetched (tokens)."""
    connect = "'self'" + (f" {auth_origin}" if auth_origin else "")
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def security_headers(settings: Settings) -> dict[str, str]:
    """The headers every console answer carries, errors and redirects included."""
    return {
        "Content-Security-Policy": content_security_policy(auth_origin(settings)),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # For browsers that predate frame-ancestors.
        "X-Frame-Options": "DENY",
    }


def auth_origin(settings: Settings) -> str | None:
    """The origin of an absolute ``CONSOLE_AUTH_URL`` (a path is on the console's own)."""
    url = settings.console_auth_url
    if not url or url.startswith("/"):
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def public_origin(event: Mapping[str, Any], settings: Settings) -> str:
    """Where the API's routes are mounted: ``PUBLIC_BASE_URL``, else the request's origin."""
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    context = event.get("requestContext") or {}
    host = context.get("domainName") or header(dict(event), "host") or ""
    proto = (header(dict(event), "x-forwarded-proto") or "https").split(",")[0].strip()
    return f"{proto if proto in ('http', 'https') else 'https'}://{host}"


def sign_in_config(event: Mapping[str, Any], settings: Settings) -> dict[str, str] | None:
    """The page's ``config.json``; None when the console's sign-in is not configured."""
    base, client_id = settings.console_auth_url, settings.console_client_id
    if not base or not client_id:
        return None
    origin = public_origin(event, settings)
    if base.startswith("/"):
        base = origin + base  # the local issuer, served by the same runner as the console
    base = base.rstrip("/")
    return {
        "authorize_url": base + AUTHORIZE_PATH,
        "token_url": base + TOKEN_PATH,
        "logout_url": base + LOGOUT_PATH,
        "client_id": client_id,
        "redirect_uri": origin + "/console/",
        "scope": SCOPE,
    }


def respond(
    event: Mapping[str, Any], assets: Mapping[str, Asset], settings: Settings
) -> dict[str, Any]:
    """The payload 2.0 result for one ``GET /console...`` request."""
    headers = security_headers(settings)
    raw_path = str(event.get("rawPath") or "/")
    proxy = (event.get("pathParameters") or {}).get("proxy")
    if proxy is None:
        if not raw_path.endswith("/"):
            # Relative, so a base path in front (a stage, a custom domain's mapping) is kept.
            last = raw_path.rstrip("/").rsplit("/", 1)[-1] or "console"
            return _result(301, {**headers, "Location": f"{last}/", "Cache-Control": NO_STORE})
        name = INDEX
    else:
        name = str(proxy)
    if name == CONFIG:
        config = sign_in_config(event, settings)
        if config is None:
            return _json(503, {"message": NOT_CONFIGURED}, headers)
        return _json(200, config, headers)
    asset = assets.get(name)
    if asset is None:
        return _json(404, {"message": "not found"}, headers)
    headers |= {"Cache-Control": ASSET_CACHE, "ETag": asset.etag}
    if _matches(header(dict(event), "if-none-match"), asset.etag):
        return _result(304, headers)
    headers["Content-Type"] = asset.content_type
    if asset.content_type.startswith(TEXT_TYPES):
        return _result(200, headers, asset.body.decode("utf-8"))
    return _result(200, headers, base64.b64encode(asset.body).decode("ascii"), encoded=True)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return etag in tags or "*" in tags


def _json(status: int, body: Any, headers: dict[str, str]) -> dict[str, Any]:
    headers = {**headers, "Content-Type": "application/json", "Cache-Control": NO_STORE}
    return _result(status, headers, json.dumps(body, separators=(",", ":")))


def _result(
    status: int, headers: dict[str, str], body: str = "", *, encoded: bool = False
) -> dict[str, Any]:
    return {"statusCode": status, "headers": headers, "body": body, "isBase64Encoded": encoded}
