"""In AWS the webhook secrets arrive as *_ARN and are read from Secrets Manager (moto here)."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from leadlookup.adapters.aws import secretsmanager
from leadlookup.api import webhooks
from leadlookup.container import set_runtime
from tests.conftest import EVENTS, TEST_SECRETS
from tests.support.moto_server import CREDENTIALS, REGION, moto_server

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]


def _event(function_dir: str, name: str) -> dict[str, Any]:
    return json.loads((EVENTS / function_dir / f"{name}.json").read_text())


@pytest.fixture
def secrets_from_arns(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every webhook secret only as an ARN of a Secrets Manager secret (moto, over HTTP)."""
    for name, value in {"AWS_DEFAULT_REGION": REGION, **CREDENTIALS}.items():
        monkeypatch.setenv(name, value)
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=REGION)
        for name, value in TEST_SECRETS.items():
            arn = client.create_secret(Name=f"bici/{name.lower()}", SecretString=value)["ARN"]
            monkeypatch.delenv(name)
            monkeypatch.setenv(f"{name}_ARN", arn)
        secretsmanager.reset()
        set_runtime(None)
        yield
    secretsmanager.reset()


def test_secrets_from_arns_authenticate_every_webhook(
    secrets_from_arns: None, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    post_call = _event("post_call_webhook", "post_call_signed")
    signed_at = int(re.search(r"t=(\d+)", post_call["headers"]["elevenlabs-signature"])[1])
    monkeypatch.setattr(webhooks, "wall_clock", lambda: float(signed_at))

    initiation = invoke(
        "conversation_initiation", _event("conversation_initiation", "known_caller")
    )
    bad_secret = invoke("conversation_initiation", _event("conversation_initiation", "bad_secret"))
    sms = invoke("sms_webhook", _event("sms_webhook", "signed"))
    forged = invoke("sms_webhook", _event("sms_webhook", "forged"))
    report = invoke("post_call_webhook", post_call)

    assert initiation["statusCode"] == 200
    assert bad_secret["statusCode"] == 401
    assert sms["statusCode"] == 200
    assert forged["statusCode"] == 403
    assert report["statusCode"] == 200


def test_secrets_arn_that_cannot_be_read_fails_closed(
    secrets_from_arns: None, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "INITIATION_WEBHOOK_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:bici/missing-AbCdEf",
    )
    set_runtime(None)

    response = invoke("conversation_initiation", _event("conversation_initiation", "known_caller"))

    assert response["statusCode"] == 503
    assert "message" in json.loads(response["body"])


def test_secrets_manager_blackholed_initiation_answers_degraded_by_the_deadline(
    secrets_from_arns: None, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{blackhole.getsockname()[1]}")
        monkeypatch.setenv("INITIATION_DEADLINE_MS", "400")
        secretsmanager.reset()
        set_runtime(None)
        started = time.monotonic()

        response = invoke(
            "conversation_initiation", _event("conversation_initiation", "known_caller")
        )
        elapsed = time.monotonic() - started

    assert response["statusCode"] == 200
    variables = json.loads(response["body"])["dynamic_variables"]
    assert variables["lead_id"] == ""
    assert variables["customer_phone"] == ""
    # A bound, not a benchmark: unbounded, the secret read alone would take 2 x 2 s.
    assert elapsed < 1.5
