"""Shared arrangements of the LeadUpdateFunction tests (lead routes and post-call webhook)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pg8000.native
import pytest
import redis

from devkit.postcall_events import signature_timestamp
from leadlookup import container as runtime_module
from leadlookup.api import webhooks
from leadlookup.config import DEFAULT_ORGANIZATION_ID
from tests.conftest import EVENTS, TEST_SECRETS

EVENT_DIR = EVENTS / "lead_update"
FUNCTION = "lead_update"
POST_CALL_EVENT_DIR = EVENTS / "post_call_webhook"
POST_CALL_FUNCTION = "post_call_webhook"
LEAD_ID = "5e1f0000-0000-4000-8000-000000000001"
LEAD_PHONE = "+12365550199"
LEAD_DIGITS = "12365550199"
ORG_ID = DEFAULT_ORGANIZATION_ID
SECRET = TEST_SECRETS["ELEVENLABS_WEBHOOK_SECRET"]
# A second store whose agent introduces itself as "Sofia", and one of its callers.
AGENT_ORG_ID = "5e1f0000-0000-4000-8000-0000000000a1"
AGENT_ORG_PHONE = "+12365550175"
AGENT_ORG_LEAD_ID = "5e1f0000-0000-4000-8000-0000000000a2"
AGENT_ORG_CALLER = "+12365550176"
# Nobody's number: post-calls from it resolve no lead.
STRANGER = "+12365550177"

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]


def load(name: str) -> dict[str, Any]:
    """A sample event of the lead update function, or of the post-call webhook (post_call_*)."""
    folder = POST_CALL_EVENT_DIR if name.startswith("post_call_") else EVENT_DIR
    return json.loads((folder / name).read_text())


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"]) if response.get("body") else None


def header_of(response: dict[str, Any], name: str) -> str | None:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return headers.get(name.lower())


SIGNED = load("post_call_signed.json")
SIGNED_AT = signature_timestamp(SIGNED)
SAMPLE_CONVERSATIONS = [
    json.loads(load(name)["body"])["data"]["conversation_id"]
    for name in ("post_call_signed.json", "post_call_expired.json", "post_call_live_agent.json")
]
# The post-call processor's sample batch: what the webhook queues for the signed sample.
BATCH = json.loads((EVENTS / "post_call_processor" / "sqs_batch.json").read_text())
BATCH_CONVERSATIONS = [json.loads(r["body"])["conversation_id"] for r in BATCH["Records"]]


@pytest.fixture
def lead(db: pg8000.native.Connection, app_env: dict[str, str]) -> str:
    """The fixed sample lead (new, unnamed, version 1) and a store with a named agent."""
    db.run(
        "DELETE FROM leads WHERE id IN (:id, :other) OR phone_number_normalized IN "
        "(:digits, '12365550176', '12365550177')",
        id=LEAD_ID,
        other=AGENT_ORG_LEAD_ID,
        digits=LEAD_DIGITS,
    )
    db.run(
        "DELETE FROM call_summaries WHERE conversation_id = ANY(:ids)",
        ids=[*SAMPLE_CONVERSATIONS, *BATCH_CONVERSATIONS],
    )
    db.run(
        "INSERT INTO leads (id, organization_id, phone_number, phone_number_normalized) "
        "VALUES (:id, :org, :phone, :digits)",
        id=LEAD_ID,
        org=ORG_ID,
        phone=LEAD_PHONE,
        digits=LEAD_DIGITS,
    )
    db.run(
        "INSERT INTO organizations (id, name, phone_number, phone_number_normalized, settings) "
        "VALUES (:id, 'BICI North Shore', :phone, '12365550175', "
        '\'{"timezone": "America/Vancouver", "agent_name": "Sofia"}\') '
        "ON CONFLICT (id) DO NOTHING",
        id=AGENT_ORG_ID,
        phone=AGENT_ORG_PHONE,
    )
    db.run(
        "INSERT INTO leads (id, organization_id, phone_number, phone_number_normalized, "
        "customer_name) VALUES (:id, :org, :phone, '12365550176', 'Grace')",
        id=AGENT_ORG_LEAD_ID,
        org=AGENT_ORG_ID,
        phone=AGENT_ORG_CALLER,
    )
    return LEAD_ID


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Freeze the post-call clock at a given unix time."""

    def freeze(at: int) -> None:
        monkeypatch.setattr(webhooks, "wall_clock", lambda: float(at))

    freeze(SIGNED_AT)
    return freeze


@pytest.fixture
def cache(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def fetch_lead(db: pg8000.native.Connection, lead_id: str = LEAD_ID) -> dict[str, Any] | None:
    rows = db.run(
        "SELECT customer_name, email, status, sentiment, bike_interest, qualification_data, "
        "notes, last_summary, interaction_count, version FROM leads WHERE id = :id",
        id=lead_id,
    )
    if not rows:
        return None
    return dict(zip([c["name"] for c in db.columns], rows[0], strict=True))


def count(db: pg8000.native.Connection, sql: str, **params: Any) -> int:
    return int(db.run(sql, **params)[0][0])


def summaries(db: pg8000.native.Connection, conversation_id: str) -> list[dict[str, Any]]:
    rows = db.run(
        "SELECT organization_id::text, lead_id::text, summary, classification, payload "
        "FROM call_summaries WHERE conversation_id = :c",
        c=conversation_id,
    )
    names = [c["name"] for c in db.columns]
    return [dict(zip(names, row, strict=True)) for row in rows]


def cache_key(lead_digits: str = LEAD_DIGITS, org: str = ORG_ID) -> str:
    return runtime_module.get_runtime().service.leads.key(lead_digits, org)
