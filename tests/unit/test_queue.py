"""The queue module: SQS and the in-process hand-off carry the same body, FIFO ids when given."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from leadlookup.adapters import queue
from leadlookup.api import webhooks
from leadlookup.errors import PayloadTooLarge, Unavailable

FIELDS = {
    "MessageSid": "SM3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e",
    "To": "+17786528784",
    "From": "+12505550134",
    "Body": "Hi! Caf\u00e9 at 5? 100% & more \ufffe",
}


class FakeSqsClient:
    """Records SendMessage calls; raises ``error`` instead when one is given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.error = error

    def send_message(self, **kwargs: Any) -> dict[str, str]:
        if self.error is not None:
            raise self.error
        self.sent.append(kwargs)
        return {"MessageId": "1"}


def test_sqs_queue_deduplicates_on_message_sid_and_groups_by_conversation() -> None:
    client = FakeSqsClient()
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/inbound.fifo"
    fifo = queue.SqsQueue(url, client_factory=lambda: client)
    group = webhooks.message_group_id(FIELDS["To"], FIELDS["From"])

    fifo.send(FIELDS, deduplication_id=FIELDS["MessageSid"], group_id=group)

    assert len(client.sent) == 1
    sent = client.sent[0]
    assert sent["QueueUrl"] == url
    assert sent["MessageDeduplicationId"] == "SM3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e"
    assert sent["MessageGroupId"] == "+17786528784:+12505550134"
    assert json.loads(sent["MessageBody"]) == FIELDS
    assert sent["MessageBody"].isascii()


def test_sqs_queue_standard_send_has_no_fifo_ids() -> None:
    client = FakeSqsClient()
    standard = queue.SqsQueue("https://sqs.eu-west-1.amazonaws.com/1/post-call", lambda: client)

    standard.send({"conversation_id": "conv_1"})

    assert set(client.sent[0]) == {"QueueUrl", "MessageBody"}


def test_sqs_queue_builds_its_client_once() -> None:
    built: list[FakeSqsClient] = []

    def factory() -> FakeSqsClient:
        built.append(FakeSqsClient())
        return built[-1]

    standard = queue.SqsQueue("https://sqs.us-east-1.amazonaws.com/1/q", factory)

    standard.send({"n": 1})
    standard.send({"n": 2})

    assert len(built) == 1 and len(built[0].sent) == 2


def test_sqs_queue_unreachable_is_unavailable() -> None:
    client = FakeSqsClient(EndpointConnectionError(endpoint_url="https://sqs.example"))
    standard = queue.SqsQueue("https://sqs.us-east-1.amazonaws.com/1/q", lambda: client)

    with pytest.raises(Unavailable, match="queue is unreachable"):
        standard.send({"n": 1})


def test_in_process_queue_hands_over_the_body_as_sqs_would_deliver_it() -> None:
    received: list[dict[str, Any]] = []
    body = {"tuple": (1, 2), **FIELDS}

    queue.InProcessQueue(received.append).send(body, deduplication_id="x", group_id="y")

    assert received == [{**FIELDS, "tuple": [1, 2]}]


@pytest.mark.parametrize("kind", ["sqs", "in-process"])
def test_queue_over_the_message_limit_is_413_and_sends_nothing(kind: str) -> None:
    client, received = FakeSqsClient(), []
    target: queue.Queue = (
        queue.SqsQueue("https://sqs.us-east-1.amazonaws.com/1/q", lambda: client)
        if kind == "sqs"
        else queue.InProcessQueue(received.append)
    )

    with pytest.raises(PayloadTooLarge):
        target.send({"text": "x" * queue.MAX_MESSAGE_BYTES})

    assert client.sent == [] and received == []


def test_queue_for_reuses_one_sqs_queue_per_url_and_is_in_process_without_one() -> None:
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/reuse-test"

    first, second = queue.queue_for(url, print), queue.queue_for(url, print)

    assert first is second and isinstance(first, queue.SqsQueue)
    assert isinstance(queue.queue_for(None, print), queue.InProcessQueue)
    assert isinstance(queue.queue_for("", print), queue.InProcessQueue)


def test_sqs_client_has_short_timeouts_and_one_retry(aws_env: None) -> None:
    aws = queue.sqs_client("https://sqs.ca-central-1.amazonaws.com/1/q")
    local = queue.sqs_client("http://127.0.0.1:9324/000000000000/q")

    assert aws.meta.region_name == "ca-central-1"
    assert local.meta.endpoint_url == "http://127.0.0.1:9324"
    config = aws.meta.config
    assert (config.connect_timeout, config.read_timeout) == (1, 2)
    assert config.retries == {"total_max_attempts": 2, "mode": "standard"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("+17786528784:BICI Shop", "+17786528784:BICI_Shop"), ("é\t", "__"), ("x" * 200, "x" * 128)],
)
def test_fifo_id_replaces_what_sqs_refuses(text: str, expected: str) -> None:
    assert queue.fifo_id(text) == expected
