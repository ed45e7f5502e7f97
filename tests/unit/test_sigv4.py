"""The standard-library SigV4 signer against botocore's, byte for byte, on a fixed table."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from leadlookup.adapters.aws import sigv4

CREDENTIALS = [
    sigv4.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
    sigv4.Credentials(
        "ASIAZZZZEXAMPLE0001",
        "s3cr3t/with+slashes=and/plus",
        "IQoJb3JpZ2luX2VjE/session+token==with/odd~chars%and spaces",
    ),
]
REGIONS = ["us-east-1", "ca-central-1", "eu-west-3"]
TIMES = [
    datetime(2026, 12, 1, 19, 55, 0, tzinfo=UTC),
    datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
    datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC),
]
CASES = list(itertools.product(CREDENTIALS, REGIONS, TIMES))


def _ids(case: tuple[sigv4.Credentials, str, datetime]) -> str:
    creds, region, now = case
    return f"{'session' if creds.token else 'keys'}-{region}-{now:%Y%m%d%H%M%S}"


@pytest.fixture
def frozen_botocore(monkeypatch: pytest.MonkeyPatch):
    """Set botocore's signing clock; returns a setter taking an aware datetime."""

    def freeze(now: datetime) -> None:
        naive = now.astimezone(UTC).replace(tzinfo=None)
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: naive)

    return freeze


def _boto(creds: sigv4.Credentials) -> BotoCredentials:
    return BotoCredentials(creds.access_key, creds.secret_key, creds.token)


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
@pytest.mark.parametrize(
    ("host", "port", "user"),
    [
        ("bici-proxy.proxy-abc123.ca-central-1.rds.amazonaws.com", 5432, "bici_app"),
        ("Bici-Proxy.Proxy-ABC.us-east-1.rds.amazonaws.com", 6432, "app user+1"),
    ],
)
def test_rds_auth_token_matches_generate_db_auth_token(frozen_botocore, case, host, port, user):
    creds, region, now = case
    frozen_botocore(now)
    client = boto3.client(
        "rds",
        region_name=region,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.token,
    )
    expected = client.generate_db_auth_token(host, port, user, Region=region)

    token = sigv4.rds_auth_token(host, port, user, region, creds, now=now)

    assert token == expected


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
@pytest.mark.parametrize("serverless", [True, False])
def test_elasticache_auth_token_matches_sigv4_query_auth(frozen_botocore, case, serverless):
    creds, region, now = case
    frozen_botocore(now)
    query = "Action=connect&User=bici-serving" + (
        "&ResourceType=ServerlessCache" if serverless else ""
    )
    request = AWSRequest(method="GET", url=f"https://bici-cache/?{query}")
    botocore.auth.SigV4QueryAuth(_boto(creds), "elasticache", region, expires=900).add_auth(request)
    expected = request.url.removeprefix("https://")

    token = sigv4.elasticache_auth_token(
        "bici-cache", "bici-serving", region, creds, now=now, serverless=serverless
    )

    assert token == expected


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("https://secretsmanager.{region}.amazonaws.com/", b'{"SecretId":"arn:aws:x"}'),
        ("http://127.0.0.1:4566/", b'{"SecretId": "bici/db \\u00e9"}'),
        ("https://sqs.{region}.amazonaws.com/a/./b/../c//d?b=2&a=1&a=0", b""),
    ],
)
def test_sign_headers_matches_sigv4_auth(frozen_botocore, case, url, body):
    creds, region, now = case
    frozen_botocore(now)
    url = url.format(region=region)
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "secretsmanager.GetSecretValue",
        "User-Agent": "bici-lookups",
        "X-Odd-Spacing": "  two   spaces  ",
    }
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    botocore.auth.SigV4Auth(_boto(creds), "secretsmanager", region).add_auth(request)
    expected = {
        name: request.headers[name]
        for name in ("X-Amz-Date", "X-Amz-Security-Token", "Authorization")
        if name in request.headers
    }

    added = sigv4.sign_headers(
        "POST",
        url,
        headers,
        body,
        service="secretsmanager",
        region=region,
        credentials=creds,
        now=now,
    )

    assert added == expected


def test_presign_url_signature_changes_with_every_input():
    creds = CREDENTIALS[1]
    now = TIMES[0]
    base = sigv4.rds_auth_token("h", 5432, "u", "us-east-1", creds, now=now)

    variants = {
        sigv4.rds_auth_token("h", 5432, "u", "us-east-2", creds, now=now),
        sigv4.rds_auth_token("h", 5433, "u", "us-east-1", creds, now=now),
        sigv4.rds_auth_token("h", 5432, "v", "us-east-1", creds, now=now),
        sigv4.rds_auth_token("h", 5432, "u", "us-east-1", CREDENTIALS[0], now=now),
        sigv4.rds_auth_token(
            "h", 5432, "u", "us-east-1", creds, now=datetime(2026, 12, 1, 19, 55, 1, tzinfo=UTC)
        ),
    }

    assert base not in variants
    assert len(variants) == 5


def test_credentials_repr_hides_the_secret_key():
    assert "wJalr" not in repr(CREDENTIALS[0])
    assert "session+token" not in repr(CREDENTIALS[1])
