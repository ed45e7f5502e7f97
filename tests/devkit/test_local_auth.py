"""The local sign-in (devkit.local_auth) and the runner's check of tokens on JWT routes, as API
Gateway's JWT authorizer checks Cognito's: signature, issuer, audience or client_id, expiry."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devkit import lambda_env
from devkit.lambda_env import HttpRoute, RouteMatch
from devkit.local_auth import (
    CONSOLE_CLIENT_ID,
    MACHINE_CLIENT_ID,
    MACHINE_CLIENT_SECRET,
    SAMPLE_STAFF,
    STORE_A_ID,
    LocalAuth,
    mint_token,
)
from devkit.runner import HttpRequest, LocalApi, build_event
from leadlookup.api.claims import staff_member

ROOT = Path(__file__).resolve().parents[2]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with _opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def auth() -> LocalAuth:
    return LocalAuth()


@pytest.fixture
def jwt_api(app_env: dict[str, str]) -> Iterator[LocalApi]:
    """The runner of template.yaml, whose staff routes are under the JWT authorizer."""
    specs = lambda_env.functions()
    assert all(route.jwt for route in specs["LeadUpdateFunction"].routes)
    api = LocalApi(specs, "127.0.0.1", 0, log=io.StringIO())
    api.start()
    try:
        yield api
    finally:
        api.stop()


# -- tokens and their check ------------------------------------------------------------------


def test_a_sample_users_id_token_carries_what_cognitos_does(auth: LocalAuth) -> None:
    claims = auth.verify(f"Bearer {auth.mint('ana')}")

    assert claims is not None
    assert claims["iss"] == "http://127.0.0.1:3000/local-auth"
    assert claims["aud"] == CONSOLE_CLIENT_ID and claims["token_use"] == "id"
    assert claims["cognito:groups"] == [f"org-{STORE_A_ID}"]
    assert (claims["email"], claims["name"], claims["cognito:username"]) == (
        "ana@example.com",
        "Ana Staff",
        "ana",
    )
    assert claims["exp"] - claims["iat"] == 3600
    assert (
        claims["sub"]
        == SAMPLE_STAFF["ana"].sub
        == jwt.decode(mint_token("ana"), options={"verify_signature": False})["sub"]
    )


def _forged(auth: LocalAuth) -> str:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(auth.mint("ana"), options={"verify_signature": False})
    return jwt.encode(claims, other, algorithm="RS256", headers={"kid": auth.jwk["kid"]})


def _unsigned(auth: LocalAuth) -> str:
    claims = jwt.decode(auth.mint("olga"), options={"verify_signature": False})
    return jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]


BAD_TOKENS = {
    "expired": lambda a: a.mint("ana", exp=int(time.time()) - 1),
    "not yet valid": lambda a: a.mint("ana", nbf=int(time.time()) + 600),
    "forged": _forged,
    "unsigned": _unsigned,
    "wrong audience": lambda a: a.mint("ana", aud="someone-elses-client"),
    "wrong issuer": lambda a: a.mint("ana", iss="http://127.0.0.1:3999/local-auth"),
    "no expiry": lambda a: a.mint("ana", exp=None),
    "no subject": lambda a: a.mint("ana", sub=None),
    "not a token": lambda a: "not.a.token",
}


@pytest.mark.parametrize("name", BAD_TOKENS)
def test_bad_tokens_are_refused(name: str, auth: LocalAuth) -> None:
    assert auth.verify(f"Bearer {BAD_TOKENS[name](auth)}") is None


def test_access_and_machine_tokens_pass_on_their_client_id(auth: LocalAuth) -> None:
    access = auth.verify(auth.mint("ben", kind="access"))
    machine = auth.verify(f"Bearer {auth.mint_machine()}")

    assert access is not None and access["client_id"] == CONSOLE_CLIENT_ID
    assert machine is not None and machine["client_id"] == MACHINE_CLIENT_ID
    assert machine["scope"] == "leadlookup/all-stores"


# -- the runner's check ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*BAD_TOKENS, "missing", "two headers"])
def test_the_runner_answers_401_for_a_bad_token_and_never_runs_the_function(
    name: str, jwt_api: LocalApi
) -> None:
    headers = {} if name in ("missing", "two headers") else {"Authorization": ""}
    if name in BAD_TOKENS:
        token = BAD_TOKENS[name](jwt_api.auth)
        headers["Authorization"] = f"Bearer {token}"

    if name == "two headers":
        status, body = _two_authorization_headers(jwt_api)
    else:
        status, _, body = http("GET", f"{jwt_api.url}/leads", headers=headers)

    assert status == 401
    assert json.loads(body) == {"message": "Unauthorized"}
    assert isinstance(jwt_api.log, io.StringIO)
    assert " 401 " in jwt_api.log.getvalue() and "cache hit=0 miss=0" in jwt_api.log.getvalue()


def _two_authorization_headers(api: LocalApi) -> tuple[int, bytes]:
    import http.client

    host, port = urlsplit(api.url).hostname, urlsplit(api.url).port
    conn = http.client.HTTPConnection(host or "", port, timeout=30)
    token = api.auth.mint("ana")
    conn.putrequest("GET", "/leads")
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Authorization", f"Bearer {token}")
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


@pytest.mark.parametrize("user", ["ana", "ben", "olga", "machine"])
def test_the_runner_passes_a_good_tokens_claims_to_the_function(
    user: str, jwt_api: LocalApi
) -> None:
    token = jwt_api.auth.mint_machine() if user == "machine" else jwt_api.auth.mint(user)

    status, headers, body = http(
        "GET", f"{jwt_api.url}/leads?limit=1", headers={"Authorization": f"Bearer {token}"}
    )

    assert status == 200, body
    assert set(json.loads(body)) == {"leads", "next"}
    assert headers["ETag"]
    assert isinstance(jwt_api.log, io.StringIO)
    assert f"user={'local-machine' if user == 'machine' else user}" in jwt_api.log.getvalue()


def test_the_event_carries_the_claims_as_api_gateway_flattens_them(auth: LocalAuth) -> None:
    claims = auth.verify(auth.mint("olga", **{"cognito:groups": ["owners", f"org-{STORE_A_ID}"]}))
    assert claims is not None
    route = HttpRoute("LeadUpdateFunction", "ListLeads", "GET", "/leads", "Staff", jwt=True)
    request = HttpRequest("GET", "/leads", [("Authorization", "Bearer x")])

    event = build_event(request, RouteMatch(route, {}), claims=claims)

    passed = event["requestContext"]["authorizer"]["jwt"]
    assert passed["claims"]["cognito:groups"] == f"[owners org-{STORE_A_ID}]"
    assert passed["claims"]["exp"] == str(claims["exp"])
    assert passed["claims"]["email_verified"] == "true"
    assert passed["scopes"] is None
    member = staff_member(event)
    assert member.owner and member.email == "olga@example.com"


# -- the sign-in endpoints ----------------------------------------------------------------------


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _login(api: LocalApi, challenge: str, username: str = "ben") -> tuple[int, dict[str, str]]:
    form = {
        "response_type": "code",
        "client_id": CONSOLE_CLIENT_ID,
        "redirect_uri": f"{api.url}/console/",
        "state": "xyz",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "openid email profile",
        "username": username,
    }
    status, headers, _ = http(
        "POST",
        f"{api.url}/local-auth/oauth2/authorize",
        urlencode(form).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    return status, headers


def _exchange(api: LocalApi, code: str, verifier: str) -> tuple[int, dict[str, Any]]:
    form = {
        "grant_type": "authorization_code",
        "client_id": CONSOLE_CLIENT_ID,
        "code": code,
        "redirect_uri": f"{api.url}/console/",
        "code_verifier": verifier,
    }
    status, _, body = http(
        "POST",
        f"{api.url}/local-auth/oauth2/token",
        urlencode(form).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    return status, json.loads(body)


def test_authorization_code_with_pkce_signs_a_sample_user_in_once(jwt_api: LocalApi) -> None:
    verifier, challenge = _pkce()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": CONSOLE_CLIENT_ID,
            "redirect_uri": f"{jwt_api.url}/console/",
            "state": "xyz",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": "openid email profile",
        }
    )

    page_status, page_headers, page = http(
        "GET", f"{jwt_api.url}/local-auth/oauth2/authorize?{query}"
    )
    status, headers = _login(jwt_api, challenge)
    location = urlsplit(headers["Location"])
    code = parse_qs(location.query)["code"][0]
    wrong = _exchange(jwt_api, code, "x" * 43)
    exchanged = _exchange(jwt_api, code, verifier)
    again = _exchange(jwt_api, code, verifier)

    assert page_status == 200 and b"<script" not in page.lower()
    assert "default-src 'none'" in page_headers["Content-Security-Policy"]
    assert all(f'value="{name}"'.encode() in page for name in SAMPLE_STAFF)
    assert status == 302
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{jwt_api.url}/console/"
    assert parse_qs(location.query)["state"] == ["xyz"]
    assert wrong == (
        400,
        {
            "error": "invalid_grant",
            "error_description": "code_verifier does not match code_challenge",
        },
    )
    # A code is good for one try: after a wrong verifier, the right one is too late.
    assert exchanged[0] == 400 and again[0] == 400


def test_the_token_endpoint_gives_id_and_access_tokens_the_runner_accepts(
    jwt_api: LocalApi,
) -> None:
    verifier, challenge = _pkce()
    _, headers = _login(jwt_api, challenge)
    code = parse_qs(urlsplit(headers["Location"]).query)["code"][0]

    status, tokens = _exchange(jwt_api, code, verifier)

    assert status == 200
    assert (tokens["expires_in"], tokens["token_type"]) == (3600, "Bearer")
    claims = jwt_api.auth.verify(tokens["id_token"])
    assert claims is not None and claims["cognito:username"] == "ben"
    assert claims["iss"] == f"{jwt_api.url}/local-auth"
    assert jwt_api.auth.verify(tokens["access_token"]) is not None
    listed, _, _ = http(
        "GET", f"{jwt_api.url}/leads", headers={"Authorization": f"Bearer {tokens['id_token']}"}
    )
    assert listed == 200


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"redirect_uri": "https://evil.example/cb"}, "redirect_uri"),
        ({"client_id": "other"}, "client_id"),
        ({"code_challenge_method": "plain"}, "S256"),
        ({"code_challenge": "short"}, "code_challenge"),
        ({"response_type": "token"}, "response_type"),
    ],
)
def test_the_authorize_page_refuses_bad_parameters(
    change: dict[str, str], named: str, jwt_api: LocalApi
) -> None:
    _, challenge = _pkce()
    params = {
        "response_type": "code",
        "client_id": CONSOLE_CLIENT_ID,
        "redirect_uri": f"{jwt_api.url}/console/",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **change,
    }

    status, _, body = http("GET", f"{jwt_api.url}/local-auth/oauth2/authorize?{urlencode(params)}")

    assert status == 400
    assert named in json.loads(body)["message"]


def test_client_credentials_give_the_machine_client_an_all_stores_token(jwt_api: LocalApi) -> None:
    basic = base64.b64encode(f"{MACHINE_CLIENT_ID}:{MACHINE_CLIENT_SECRET}".encode()).decode()
    form = urlencode({"grant_type": "client_credentials", "scope": "leadlookup/all-stores"})
    headers = {
        "Authorization": f"Basic {basic}",
        "Content-Type": "application/x-www-form-urlencoded",
    }

    status, _, body = http("POST", f"{jwt_api.url}/local-auth/oauth2/token", form.encode(), headers)
    bad, _, _ = http(
        "POST",
        f"{jwt_api.url}/local-auth/oauth2/token",
        form.encode(),
        {**headers, "Authorization": "Basic " + base64.b64encode(b"local-machine:no").decode()},
    )

    assert status == 200 and bad == 400
    token = json.loads(body)["access_token"]
    listed, _, _ = http("GET", f"{jwt_api.url}/leads", headers={"Authorization": f"Bearer {token}"})
    assert listed == 200


def test_discovery_jwks_and_logout(jwt_api: LocalApi) -> None:
    base = f"{jwt_api.url}/local-auth"

    _, _, config = http("GET", f"{base}/.well-known/openid-configuration")
    _, _, keys = http("GET", f"{base}/.well-known/jwks.json")
    logout = http(
        "GET", f"{base}/logout?client_id={CONSOLE_CLIENT_ID}&logout_uri={jwt_api.url}/console/"
    )
    foreign = http(
        "GET", f"{base}/logout?client_id={CONSOLE_CLIENT_ID}&logout_uri=https://evil.example/"
    )

    assert json.loads(config)["issuer"] == base
    assert json.loads(config)["jwks_uri"] == f"{base}/.well-known/jwks.json"
    [key] = json.loads(keys)["keys"]
    public = jwt.PyJWK(key).key
    assert jwt.decode(
        jwt_api.auth.mint("ana"), public, algorithms=["RS256"], audience=CONSOLE_CLIENT_ID
    )
    assert (logout[0], logout[1]["Location"]) == (302, f"{jwt_api.url}/console/")
    assert foreign[0] == 400


def test_the_cli_prints_a_token_the_runner_of_make_run_accepts() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "devkit.cli", "token", "ana"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    unknown = subprocess.run(
        [sys.executable, "-m", "devkit.cli", "token", "mallory"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    claims = LocalAuth().verify(printed)
    assert claims is not None and claims["cognito:username"] == "ana"
    assert unknown.returncode == 2 and "mallory" in unknown.stderr
    assert str(uuid.UUID(claims["sub"])) == claims["sub"]
