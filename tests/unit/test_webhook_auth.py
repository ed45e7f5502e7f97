"""The three webhook schemes share one secret reader and one failure policy: a missing secret
fails closed and is logged once per container; an unreadable one raises Unavailable as read."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from leadlookup.adapters import secrets as secrets_module
from leadlookup.api import auth
from leadlookup.config import Settings
from leadlookup.errors import Forbidden, Unauthorized, Unavailable

SCHEMES: dict[str, tuple[str, Callable[[Settings], object], type[Exception], str]] = {
    "initiation header": (
        auth.INITIATION_SECRET_NAME,
        lambda s: auth.require_header_secret(s, auth.INITIATION_SECRET_NAME, "X-Hook", "x"),
        Unauthorized,
        "webhook secret is not configured",
    ),
    "twilio": (
        auth.TWILIO_AUTH_TOKEN_NAME,
        lambda s: auth.verify_twilio_signature({"headers": {}}, [], s),
        Forbidden,
        "Twilio auth token is not configured",
    ),
    "elevenlabs": (
        auth.ELEVENLABS_SECRET_NAME,
        lambda s: auth.verified_elevenlabs_body({"headers": {}, "body": "{}"}, s, 0.0),
        Unauthorized,
        "webhook secret is not configured",
    ),
}


@pytest.fixture(autouse=True)
def fresh_container(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_warned", set())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_webhook_auth_missing_secret_fails_closed_and_is_logged_once(
    scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    name, check, rejection, message = SCHEMES[scheme]
    unconfigured = Settings(env={})

    for _ in range(3):
        with pytest.raises(rejection) as raised:
            check(unconfigured)
        assert str(raised.value) == message

    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.getMessage(), r.secret_name) for r in logged] == [  # type: ignore[attr-defined]
        ("webhook secret is not configured; rejecting requests", name)
    ]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_webhook_auth_unreadable_secret_raises_unavailable_unwrapped_and_unlogged(
    scheme: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    name, check, _rejection, _message = SCHEMES[scheme]
    outage = Unavailable("a secret could not be read from Secrets Manager")

    def fetch(_arn: str) -> str:
        raise outage

    monkeypatch.setattr(secrets_module, "fetch_secret", fetch)
    from_arn = Settings(env={f"{name}_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:x"})

    with pytest.raises(Unavailable) as raised:
        check(from_arn)

    # Raised as Settings.secret raised it; the HTTP handler that answers 503 logs it, once.
    assert raised.value is outage
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_webhook_auth_header_secret_names_the_header_it_was_given() -> None:
    configured = Settings(env={"SOME_SECRET": "s3cret"})

    with pytest.raises(Unauthorized, match=r"^missing X-Other header$"):
        auth.require_header_secret(configured, "SOME_SECRET", "X-Other", None)
    with pytest.raises(Unauthorized, match=r"^invalid X-Other header$"):
        auth.require_header_secret(configured, "SOME_SECRET", "X-Other", "guess")
    auth.require_header_secret(configured, "SOME_SECRET", "X-Other", "s3cret")


def test_webhook_auth_unsigned_mode_warns_once_per_container_whichever_scheme_skips_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unsigned = Settings(env={}, allow_unsigned_webhooks=True)

    for _ in range(2):
        for _name, check, _rejection, _message in SCHEMES.values():
            check(unsigned)  # every check is skipped: nothing raises

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [auth.UNSIGNED_WARNING]


def test_webhook_auth_signed_mode_never_warns_about_unsigned_mode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    configured = Settings(env={"INITIATION_WEBHOOK_SECRET": "s"})

    auth.require_header_secret(configured, auth.INITIATION_SECRET_NAME, "X-Hook", "s")

    assert not [r for r in caplog.records if "ALLOW_UNSIGNED_WEBHOOKS" in r.getMessage()]
