"""ConsoleFunction through its real handler: the page's files, config.json, the headers of
every answer, and paths that must not reach the file system. The page itself runs in a real
browser in tests/browser."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadlookup import container as runtime_module
from leadlookup.api import console
from leadlookup.config import Settings
from leadlookup.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "functions" / "console" / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
COGNITO = "https://bici-staff.auth.us-east-1.amazoncognito.com"


@pytest.fixture
def console_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The function's environment as `make run` sets it (the local issuer on the same origin)."""
    env = {
        "CONSOLE_AUTH_URL": "/local-auth",
        "CONSOLE_CLIENT_ID": "local-console",
        "POWERTOOLS_TRACE_DISABLED": "1",
    }
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime_module.set_runtime(None)
    yield env
    runtime_module.set_runtime(None)


def event(path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The payload 2.0 event API Gateway sends for ``GET path`` on the console's routes."""
    proxy = path.removeprefix("/console/") if path.startswith("/console/") else None
    return {
        "version": "2.0",
        "routeKey": "GET /console/{proxy+}" if proxy else "GET /console",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})},
        "requestContext": {
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "http": {"method": "GET", "path": path},
            "stage": "$default",
        },
        "pathParameters": {"proxy": proxy} if proxy else None,
        "isBase64Encoded": False,
    }


def get(invoke: Any, path: str, **headers: str) -> dict[str, Any]:
    result: dict[str, Any] = invoke("console", event(path, headers))
    return result


def body_json(result: dict[str, Any]) -> Any:
    return json.loads(result["body"])


def assert_security_headers(result: dict[str, Any], csp: str = CSP) -> None:
    headers = result["headers"]
    assert headers["Content-Security-Policy"] == csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"


# -- the page and its files ----------------------------------------------------------------


def test_console_index_is_html_with_the_strict_policy(console_env: Any, invoke: Any) -> None:
    result = get(invoke, "/console/")

    assert result["statusCode"] == 200
    assert result["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert result["headers"]["Cache-Control"] == "no-cache"
    assert re.fullmatch(r'"[0-9a-f]{20}"', result["headers"]["ETag"])
    assert_security_headers(result)
    assert '<script type="module" src="js/app.js"></script>' in result["body"]


def test_console_without_slash_redirects_relative_so_a_base_path_is_kept(
    console_env: Any, invoke: Any
) -> None:
    result = get(invoke, "/console")

    assert result["statusCode"] == 301
    assert result["headers"]["Location"] == "console/"
    assert_security_headers(result)


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("js/app.js", "text/javascript; charset=utf-8"),
        ("js/lead.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
        ("index.html", "text/html; charset=utf-8"),
    ],
)
def test_console_serves_each_file_with_its_type_and_etag(
    console_env: Any, invoke: Any, name: str, content_type: str
) -> None:
    result = get(invoke, f"/console/{name}")

    assert result["statusCode"] == 200
    assert result["headers"]["Content-Type"] == content_type
    assert result["body"] == (STATIC / name).read_text(encoding="utf-8")
    assert result["isBase64Encoded"] is False
    assert_security_headers(result)


def test_console_unchanged_file_answers_304_without_a_body(console_env: Any, invoke: Any) -> None:
    etag = get(invoke, "/console/js/app.js")["headers"]["ETag"]

    again = get(invoke, "/console/js/app.js", **{"if-none-match": etag})
    other = get(invoke, "/console/js/app.js", **{"if-none-match": '"0000"'})

    assert (again["statusCode"], again["body"], again["headers"]["ETag"]) == (304, "", etag)
    assert other["statusCode"] == 200


def test_console_binary_file_is_base64(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    assets = console.load_assets(tmp_path)

    result = console.respond(event("/console/logo.png"), assets, Settings())

    assert result["isBase64Encoded"] is True
    assert base64.b64decode(result["body"]) == b"\x89PNG\r\n\x1a\n\x00\xff"
    assert result["headers"]["Content-Type"] == "image/png"


@pytest.mark.parametrize(
    "path",
    [
        "/console/../template.yaml",
        "/console/js/../../app.py",
        "/console/app.py",
        "/console/..%2fapp.py",
        "/console/%2e%2e/app.py",
        "/console//etc/passwd",
        "/console/js",
        "/console/js/",
        "/console/JS/APP.JS",
        "/console/index.html%00.js",
        "/console/nope.js",
    ],
)
def test_console_unknown_or_escaping_path_is_json_404(
    console_env: Any, invoke: Any, path: str
) -> None:
    result = get(invoke, path)

    assert result["statusCode"] == 404
    assert body_json(result) == {"message": "not found"}
    assert result["headers"]["Content-Type"] == "application/json"
    assert_security_headers(result)


def test_console_serves_exactly_the_files_of_its_folder() -> None:
    served = set(console.load_assets(STATIC))

    on_disk = {p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()}
    assert served == on_disk
    assert {"index.html", "console.css", "js/app.js"} <= served


# -- config.json ---------------------------------------------------------------------------


def test_console_config_points_at_the_local_issuer_on_the_same_origin(
    console_env: Any, invoke: Any
) -> None:
    result = get(invoke, "/console/config.json", **{"x-forwarded-proto": "http"})
    origin = "http://abc123.execute-api.us-east-1.amazonaws.com"

    assert result["statusCode"] == 200
    assert result["headers"]["Cache-Control"] == "no-store"
    assert body_json(result) == {
        "authorize_url": f"{origin}/local-auth/oauth2/authorize",
        "token_url": f"{origin}/local-auth/oauth2/token",
        "logout_url": f"{origin}/local-auth/logout",
        "client_id": "local-console",
        "redirect_uri": f"{origin}/console/",
        "scope": "openid email profile",
    }
    assert_security_headers(result)


def test_console_config_names_the_cognito_domain_and_lets_the_page_reach_it(
    console_env: Any, invoke: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSOLE_AUTH_URL", COGNITO + "/")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://api.example.com/bici")
    runtime_module.set_runtime(None)

    result = get(invoke, "/console/config.json")

    config = body_json(result)
    assert config["authorize_url"] == f"{COGNITO}/oauth2/authorize"
    assert config["token_url"] == f"{COGNITO}/oauth2/token"
    assert config["logout_url"] == f"{COGNITO}/logout"
    assert config["redirect_uri"] == "https://api.example.com/bici/console/"
    # The token request is a fetch to the Cognito domain: the one origin beyond 'self'.
    assert_security_headers(
        result, CSP.replace("connect-src 'self'", f"connect-src 'self' {COGNITO}")
    )


def test_console_config_unset_is_a_503_naming_the_variables(
    console_env: Any, invoke: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONSOLE_CLIENT_ID")
    runtime_module.set_runtime(None)

    result = get(invoke, "/console/config.json")

    assert result["statusCode"] == 503
    assert "CONSOLE_CLIENT_ID" in body_json(result)["message"]
    assert_security_headers(result)
    # The page itself still loads, and shows that message instead of a blank page.
    assert get(invoke, "/console/")["statusCode"] == 200


@pytest.mark.parametrize("value", ["ftp://auth.example", "//auth.example", "auth.example"])
def test_console_auth_url_must_be_an_http_url_or_a_path(value: str) -> None:
    with pytest.raises(ConfigError, match="CONSOLE_AUTH_URL"):
        Settings.from_env({"CONSOLE_AUTH_URL": value})


# -- what the files may hold ---------------------------------------------------------------

# Markup parsers and string evaluation: customer text is only ever set as text (dom.js).
UNSAFE_JS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(|"
    r"setTimeout\(\s*[\"'`]|\.style\.|setAttribute\(\s*[\"']style"
)


@pytest.mark.parametrize("name", sorted(p.name for p in (STATIC / "js").glob("*.js")))
def test_console_scripts_never_parse_markup_or_set_inline_styles(name: str) -> None:
    text = (STATIC / "js" / name).read_text(encoding="utf-8")

    assert not UNSAFE_JS.findall(text)


def test_console_page_has_no_inline_script_or_style_and_no_third_party_origin() -> None:
    for path in STATIC.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), f"{path.name} names another origin"
        if path.suffix == ".html":
            assert not re.search(r"\sstyle\s*=|<style|\son[a-z]+\s*=", text, re.I), path.name
            scripts = re.findall(r"<script\b[^>]*>", text)
            assert scripts and all(' src="' in tag for tag in scripts), path.name
