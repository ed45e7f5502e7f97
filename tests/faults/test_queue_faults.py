"""The inbound-SMS queue unreachable: the webhook answers 503 (a configured Twilio retries)
well within Twilio's 15 s, and nothing is written."""

from __future__ import annotations

import pytest

from devkit.proxy import TcpProxy
from tests.support.faults import (
    Figures,
    Invoke,
    new_phone,
    new_sid,
    rejection_message,
    reset_container,
    sms_event,
    table_state,
    timed,
)

WEBHOOK = "sms_webhook"
# Twilio abandons a webhook request after 15 s; the 503 must come well before that.
TWILIO_TIMEOUT_MS = 15_000
# One try and one retry, as the layer's SQS client states (leadlookup.adapters.queue.sqs_client).
STATED_ATTEMPTS = 2


def _queue_endpoint(endpoint: TcpProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    url = endpoint.url_for("http", f"/123456789012/{new_sid()}.fifo")
    monkeypatch.setenv("INBOUND_SMS_QUEUE_URL", url)
    reset_container()


@pytest.mark.parametrize(
    ("fault", "meaning"),
    [
        ("cut", "refuses connections"),
        ("reset", "resets connections"),
        ("blackhole", "accepts, never answers"),
    ],
)
def test_queue_fault_unreachable_sms_webhook_is_503_and_writes_nothing(
    fault: str,
    meaning: str,
    fault_env: dict[str, str],
    aws_env: None,
    invoke: Invoke,
    database_url: str,
    figures: Figures,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    figures.fault = f"SQS queue endpoint {meaning}"
    # Port 9 (discard) has no listener: the proxy is the only thing that ever answers.
    with TcpProxy(("127.0.0.1", 9)) as endpoint:
        endpoint.set_mode(fault)
        _queue_endpoint(endpoint, monkeypatch)
        before = table_state(database_url)

        response, ms = timed(invoke, WEBHOOK, sms_event(new_phone()))
        figures.record("fault", ms, response["statusCode"] == 503, str(response))
        figures.notes.update(
            message=rejection_message(response), connections_accepted=endpoint.connections
        )

    assert response["statusCode"] == 503
    assert rejection_message(response) == "queue is unreachable"
    assert table_state(database_url) == before
    assert ms < TWILIO_TIMEOUT_MS


def test_queue_fault_sms_webhook_tries_the_queue_as_often_as_stated(
    fault_env: dict[str, str],
    aws_env: None,
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by this suite: retries={"max_attempts": 2} is two retries in botocore (three
    # tries), so a silent queue cost ~8 s of Twilio's 15 s instead of ~4 s.
    with TcpProxy(("127.0.0.1", 9)) as endpoint:
        endpoint.set_mode("reset")
        _queue_endpoint(endpoint, monkeypatch)

        response = invoke(WEBHOOK, sms_event(new_phone()))

        assert response["statusCode"] == 503
        assert endpoint.connections == STATED_ATTEMPTS
