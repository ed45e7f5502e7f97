"""A local stand-in for Cognito's managed login, served by `make run` under ``/local-auth``.

The same endpoints and parameters as the user pool's domain (README.md, "Staff API"):

    GET  /local-auth/oauth2/authorize   one button per sample user (authorization code + PKCE)
    POST /local-auth/oauth2/authorize   the button: 302 to redirect_uri?code=...&state=...
    POST /local-auth/oauth2/token       code + code_verifier (S256) -> ID and access tokens;
                                        client_credentials for the local machine client
    GET  /local-auth/logout             302 to logout_uri
    GET  /local-auth/.well-known/jwks.json, /local-auth/.well-known/openid-configuration

Tokens are RS256 JWTs shaped like Cognito's: the ID token carries ``email``, ``name``,
``cognito:username`` and ``cognito:groups`` with ``aud`` the app client; the access token
carries ``client_id`` and ``scope``. The runner checks them as API Gateway's JWT authorizer
checks Cognito's (signature, issuer, audience or ``client_id``, expiry): :meth:`LocalAuth.verify`.
The signing key is made once per checkout in ``.local/`` (git-ignored), so tokens that
``python -m devkit.cli token <user>`` prints are accepted by a runner started later.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
KEY_FILE = ROOT / ".local" / "local-auth-key.pem"
PATH = "/local-auth"
DEFAULT_BASE_URL = "http://127.0.0.1:3000"
# The app clients: the console's public client (authorization code + PKCE, no secret), and a
# machine client (client credentials) whose access token holds the all-stores scope.
CONSOLE_CLIENT_ID = "local-console"
MACHINE_CLIENT_ID = "local-machine"
MACHINE_CLIENT_SECRET = "local-machine-secret"  # noqa: S105 - a documented local value
ALL_STORES_SCOPE = "leadlookup/all-stores"
TOKEN_LIFETIME_S = 3600
CODE_LIFETIME_S = 300
# The seeded default organization (the layer's default_organization.json) is store A; store B
# is seeded by `make run` (devkit.cli) beside it.
STORE_A_ID = "b0c1b1c1-0000-0000-0000-000000000001"
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
STORE_B: dict[str, Any] = {
    "id": "b0c1b1c1-0000-0000-0000-000000000002",
    "name": "BICI Kitsilano",
    "phone_number": "+16045550188",
    "phone_number_normalized": "16045550188",
    "settings": {
        "timezone": "America/Vancouver",
        "address": "2201 West 4th Avenue, Vancouver, BC",
        "business_hours": {day: {"open": "10:00", "close": "18:00"} for day in _WEEKDAYS},
    },
}
# What the authorize page carries from its query to its form posts.
_AUTHORIZE_PARAMETERS = (
    "response_type", "client_id", "redirect_uri", "state", "code_challenge",
    "code_challenge_method", "scope", "nonce",
)  # fmt: skip
_PKCE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


@dataclass(frozen=True)
class SampleStaff:
    """A sample user of the local sign-in: who they are and their groups."""

    username: str
    name: str
    groups: tuple[str, ...]
    sub: str

    @property
    def email(self) -> str:
        """``<username>@example.com``."""
        return f"{self.username}@example.com"


_STAFF = (
    SampleStaff("ana", "Ana Staff", (f"org-{STORE_A_ID}",), "a1a1a1a1-0000-4000-8000-000000000001"),
    SampleStaff(
        "ben", "Ben Staff", (f"org-{STORE_B['id']}",), "b2b2b2b2-0000-4000-8000-00000000000b"
    ),
    SampleStaff("olga", "Olga Owner", ("owners",), "0c0c0c0c-0000-4000-8000-000000000003"),
)
# By username: the sample users `make run` signs in (store A, store B, every store).
SAMPLE_STAFF: dict[str, SampleStaff] = {staff.username: staff for staff in _STAFF}


# -- the signing key ----------------------------------------------------------------------------


def signing_key(path: Path = KEY_FILE) -> rsa.RSAPrivateKey:
    """This checkout's RSA key, made on first use (the first writer wins a race)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        temp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        temp.write_bytes(pem)
        temp.chmod(0o600)
        try:
            os.link(temp, path)  # atomic, and fails if another process made it first
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return loaded


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _uint(number: int) -> str:
    return _b64(number.to_bytes((number.bit_length() + 7) // 8, "big"))


def jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The public key as a JWK, its ``kid`` the RFC 7638 thumbprint."""
    numbers = key.public_key().public_numbers()
    members = {"e": _uint(numbers.e), "kty": "RSA", "n": _uint(numbers.n)}
    thumbprint = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return {
        **members,
        "alg": "RS256",
        "use": "sig",
        "kid": _b64(hashlib.sha256(thumbprint).digest()),
    }


# -- tokens -------------------------------------------------------------------------------------


def gateway_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """The claims as API Gateway passes them to the function: strings, a list as ``[a b]``."""
    flat: dict[str, str] = {}
    for name, value in claims.items():
        if isinstance(value, list):
            flat[name] = "[" + " ".join(str(item) for item in value) + "]"
        elif isinstance(value, bool):
            flat[name] = "true" if value else "false"
        elif isinstance(value, dict):
            flat[name] = json.dumps(value, separators=(",", ":"))
        else:
            flat[name] = str(value)
    return flat


class LocalAuth:
    """The local issuer at ``<base_url>/local-auth``: its pages, its tokens, their check."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        key: rsa.RSAPrivateKey | None = None,
        clock: Any = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.issuer = self.base_url + PATH
        self.key = key if key is not None else signing_key()
        self.public_key = self.key.public_key()
        self.jwk = jwk(self.key)
        self.audiences = frozenset({CONSOLE_CLIENT_ID, MACHINE_CLIENT_ID})
        self._clock = clock
        self._codes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- minting --------------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.jwk["kid"]})

    def mint(self, username: str, kind: str = "id", **overrides: Any) -> str:
        """A token of a sample user (``kind`` ``id`` or ``access``); ``overrides`` replace
        claims, and an override of None removes the claim (tests make bad tokens with them)."""
        staff = SAMPLE_STAFF.get(username)
        if staff is None:
            raise KeyError(f"no sample user {username!r} (there are: {', '.join(SAMPLE_STAFF)})")
        now = int(self._clock())
        claims: dict[str, Any] = {
            "sub": staff.sub,
            "iss": self.issuer,
            "cognito:username": staff.username,
            "cognito:groups": list(staff.groups),
            "token_use": kind,
            "auth_time": now,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        if kind == "id":
            claims.update(
                aud=CONSOLE_CLIENT_ID, email=staff.email, email_verified=True, name=staff.name
            )
        else:
            claims.update(
                client_id=CONSOLE_CLIENT_ID, username=staff.username, scope="openid email profile"
            )
        return self._sign(_apply(claims, overrides))

    def mint_machine(self, scope: str = ALL_STORES_SCOPE, **overrides: Any) -> str:
        """A client-credentials access token of the local machine client."""
        now = int(self._clock())
        claims = {
            "sub": MACHINE_CLIENT_ID,
            "client_id": MACHINE_CLIENT_ID,
            "iss": self.issuer,
            "token_use": "access",
            "scope": scope,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        return self._sign(_apply(claims, overrides))

    # -- checking (what API Gateway's JWT authorizer does) ---------------------------------

    def verify(self, authorization: str | None) -> dict[str, Any] | None:
        """The claims of a valid token in an ``Authorization`` header; None for a missing,
        malformed, forged, expired or not-yet-valid token, another issuer or audience."""
        if not authorization:
            return None
        token = authorization.strip()
        scheme, _, rest = token.partition(" ")
        if scheme.lower() == "bearer":
            token = rest.strip()
        if not token:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.public_key,
                algorithms=["RS256"],
                issuer=self.issuer,
                options={"require": ["exp", "iss", "sub"], "verify_aud": False},
            )
        except jwt.PyJWTError:
            return None
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not (self.audiences & set(audiences) or claims.get("client_id") in self.audiences):
            return None
        return claims

    # -- the endpoints --------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        """Whether a request path is one of this issuer's."""
        return path == PATH or path.startswith(PATH + "/")

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request to the issuer: (status, headers, body)."""
        parts = urlsplit(target)
        route = parts.path[len(PATH) :]
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if method == "GET" and route == "/.well-known/jwks.json":
            return _json(200, {"keys": [self.jwk]})
        if method == "GET" and route == "/.well-known/openid-configuration":
            return _json(200, self.configuration())
        if route == "/oauth2/authorize" and method == "GET":
            return self._authorize_page(query)
        if route == "/oauth2/authorize" and method == "POST":
            return self._authorize(form)
        if route == "/oauth2/token" and method == "POST":
            return self._token(form, headers)
        if route == "/logout" and method == "GET":
            return self._logout(query)
        return _json(404, {"message": "Not Found"})

    def configuration(self) -> dict[str, Any]:
        """The OpenID Connect discovery document."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/oauth2/authorize",
            "token_endpoint": f"{self.issuer}/oauth2/token",
            "jwks_uri": f"{self.issuer}/.well-known/jwks.json",
            "end_session_endpoint": f"{self.issuer}/logout",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile", ALL_STORES_SCOPE],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
        }

    def _login_error(self, params: Mapping[str, str]) -> str | None:
        if params.get("client_id") != CONSOLE_CLIENT_ID:
            return f"client_id must be {CONSOLE_CLIENT_ID}"
        if params.get("response_type") != "code":
            return "response_type must be code"
        if not self._own_url(params.get("redirect_uri")):
            return f"redirect_uri must start with {self.base_url}/"
        if params.get("code_challenge_method") != "S256":
            return "code_challenge_method must be S256"
        if not _PKCE.fullmatch(params.get("code_challenge") or ""):
            return "code_challenge must be a base64url SHA-256 of the code verifier"
        return None

    def _own_url(self, url: str | None) -> bool:
        return bool(url) and str(url).startswith(self.base_url + "/")

    def _authorize_page(self, query: Mapping[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        problem = self._login_error(query)
        if problem:
            return _json(400, {"message": problem})
        kept = {name: query[name] for name in _AUTHORIZE_PARAMETERS if name in query}
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in kept.items()
        )
        buttons = "".join(
            f'<form method="post" action="{PATH}/oauth2/authorize">{hidden}'
            f'<button name="username" value="{html.escape(s.username)}">'
            f"{html.escape(s.name)} ({html.escape(', '.join(s.groups))})</button></form>"
            for s in SAMPLE_STAFF.values()
        )
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            "<title>Local sign-in</title></head><body><h1>Sign in (local)</h1>"
            f"<p>Sample staff of make run. Choose who you are:</p>{buttons}</body></html>"
        )
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Security-Policy", "default-src 'none'; form-action 'self'"),
            ("Cache-Control", "no-store"),
        ]
        return 200, headers, page.encode()

    def _authorize(self, form: Mapping[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        problem = self._login_error(form)
        if problem:
            return _json(400, {"message": problem})
        staff = SAMPLE_STAFF.get(form.get("username") or "")
        if staff is None:
            return _json(400, {"message": f"username must be one of {', '.join(SAMPLE_STAFF)}"})
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = {
                "username": staff.username,
                "client_id": form["client_id"],
                "redirect_uri": form["redirect_uri"],
                "challenge": form["code_challenge"],
                "nonce": form.get("nonce"),
                "expires": self._clock() + CODE_LIFETIME_S,
            }
        answer = {"code": code, **({"state": form["state"]} if "state" in form else {})}
        uri = form["redirect_uri"]
        location = f"{uri}{'&' if '?' in uri else '?'}{urlencode(answer)}"
        return 302, [("Location", location), ("Cache-Control", "no-store")], b""

    def _token(
        self, form: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        grant = form.get("grant_type")
        if grant == "client_credentials":
            return self._client_credentials(form, headers)
        if grant != "authorization_code":
            return _oauth_error("unsupported_grant_type")
        with self._lock:
            issued = self._codes.pop(form.get("code") or "", None)  # a code works once
        if issued is None or issued["expires"] < self._clock():
            return _oauth_error("invalid_grant", "unknown, used or expired code")
        if form.get("client_id") != issued["client_id"]:
            return _oauth_error("invalid_client")
        if form.get("redirect_uri") != issued["redirect_uri"]:
            return _oauth_error("invalid_grant", "redirect_uri differs from the authorize one")
        verifier = form.get("code_verifier") or ""
        if _b64(hashlib.sha256(verifier.encode()).digest()) != issued["challenge"]:
            return _oauth_error("invalid_grant", "code_verifier does not match code_challenge")
        nonce = {"nonce": issued["nonce"]} if issued["nonce"] else {}
        return _json(
            200,
            {
                "id_token": self.mint(issued["username"], **nonce),
                "access_token": self.mint(issued["username"], kind="access"),
                "expires_in": TOKEN_LIFETIME_S,
                "token_type": "Bearer",
            },
            no_store=True,
        )

    def _client_credentials(
        self, form: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        client, secret = form.get("client_id"), form.get("client_secret")
        basic = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(basic[6:].strip()).decode()
            except ValueError:
                return _oauth_error("invalid_client")
            client, _, secret = decoded.partition(":")
        if client != MACHINE_CLIENT_ID or secret != MACHINE_CLIENT_SECRET:
            return _oauth_error("invalid_client")
        scope = form.get("scope") or ALL_STORES_SCOPE
        if scope != ALL_STORES_SCOPE:
            return _oauth_error("invalid_scope")
        return _json(
            200,
            {
                "access_token": self.mint_machine(scope),
                "expires_in": TOKEN_LIFETIME_S,
                "token_type": "Bearer",
            },
            no_store=True,
        )

    def _logout(self, query: Mapping[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        if query.get("client_id") != CONSOLE_CLIENT_ID:
            return _json(400, {"message": f"client_id must be {CONSOLE_CLIENT_ID}"})
        target = query.get("logout_uri")
        if not self._own_url(target):
            return _json(400, {"message": f"logout_uri must start with {self.base_url}/"})
        return 302, [("Location", str(target)), ("Cache-Control", "no-store")], b""


def _apply(claims: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**claims, **overrides}
    return {name: value for name, value in merged.items() if value is not None}


def _json(
    status: int, body: Any, no_store: bool = False
) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [("Content-Type", "application/json")]
    if no_store:
        headers.append(("Cache-Control", "no-store"))
    return status, headers, json.dumps(body).encode()


def _oauth_error(
    error: str, description: str | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    body = {"error": error, **({"error_description": description} if description else {})}
    return _json(400, body, no_store=True)


_default: LocalAuth | None = None


def mint_token(username: str, **overrides: Any) -> str:
    """An ID token of a sample user from the issuer of `make run` on its default port
    (``iss`` may be overridden for a runner elsewhere)."""
    global _default
    if _default is None:
        _default = LocalAuth()
    return _default.mint(username, **overrides)
