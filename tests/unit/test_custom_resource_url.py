"""The migrations custom resource answers only CloudFormation's https amazonaws.com URLs."""

from __future__ import annotations

from typing import Any

import pytest

from leadlookup.adapters import custom_resource

GOOD = (
    "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/arn%3Aaws"
    "?X-Amz-Signature=00"
)


def _answer(url: str, allow_loopback: bool = False) -> list[str]:
    sent: list[str] = []

    def send(target: str, _body: dict[str, Any]) -> None:
        sent.append(target)

    custom_resource.handle(
        {"RequestType": "Delete", "ResponseURL": url, "RequestId": "r"},
        lambda: 60_000,
        lambda: [],
        send=send,
        allow_loopback=allow_loopback,
    )
    return sent


def test_custom_resource_answers_cloudformations_s3_url():
    assert _answer(GOOD) == [GOOD]
    assert _answer("https://bucket.s3.cn-north-1.amazonaws.com.cn/x") != []


@pytest.mark.parametrize(
    "url",
    [
        "http://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x",
        "https://attacker.example/x",
        "https://amazonaws.com.attacker.example/x",
        "https://s3.amazonaws.com@attacker.example/x",
        "https://attackeramazonaws.com/x",
        "ftp://s3.amazonaws.com/x",
        "file:///etc/passwd",
        "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_custom_resource_refuses_any_other_response_url(url: str):
    assert _answer(url) == []


def test_custom_resource_answers_loopback_only_when_allowed():
    assert _answer("http://127.0.0.1:8080/response", allow_loopback=True) != []
    assert _answer("http://10.0.0.5/response", allow_loopback=True) == []
    assert _answer("http://127.0.0.1:8080/response") == []


def test_custom_resource_allows_loopback_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("ALLOW_LOOPBACK_RESPONSE_URL", "true")
    sent: list[str] = []

    custom_resource.handle(
        {"RequestType": "Delete", "ResponseURL": "http://localhost:1/r"},
        lambda: 60_000,
        lambda: [],
        send=lambda url, _body: sent.append(url),
    )

    assert sent == ["http://localhost:1/r"]
