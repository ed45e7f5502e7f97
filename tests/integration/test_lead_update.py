"""LeadUpdateFunction through its real handler, against real PostgreSQL and Redis."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pg8000.native
import pytest
import redis

from devkit.postcall_events import sign_elevenlabs, sign_event, signature_timestamp
from leadlookup import postcall
from leadlookup import runtime as runtime_module
from leadlookup.settings import DEFAULT_ORGANIZATION_ID
from tests.conftest import EVENTS, TEST_SECRETS

EVENT_DIR = EVENTS / "lead_update"
FUNCTION = "lead_update"
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
    return json.loads((EVENT_DIR / name).read_text())


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"]) if response.get("body") else None


def header_of(response: dict[str, Any], name: str) -> str | None:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return headers.get(name.lower())


SIGNED = load("post_call_signed.json")
SIGNED_AT = signature_timestamp(SIGNED)
SAMPLE_CONVERSATIONS = [
    json.loads(load(name)["body"])["data"]["conversation_id"]
    for name in ("post_call_signed.json", "post_call_expired.json")
]


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
        "DELETE FROM call_summaries WHERE conversation_id IN (:a, :b)",
        a=SAMPLE_CONVERSATIONS[0],
        b=SAMPLE_CONVERSATIONS[1],
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
        monkeypatch.setattr(postcall, "wall_clock", lambda: float(at))

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


def post_call(
    change: Callable[[dict[str, Any]], None] | None = None,
    *,
    conversation_id: str | None = None,
    at: int = SIGNED_AT,
    secret: str = SECRET,
) -> tuple[dict[str, Any], str]:
    """The signed sample with a fresh conversation id, changed by ``change``, signed at ``at``."""
    body = json.loads(SIGNED["body"])
    conversation_id = conversation_id or f"conv_test_{uuid.uuid4().hex}"
    body["data"]["conversation_id"] = conversation_id
    if change is not None:
        change(body)
    event = copy.deepcopy(SIGNED)
    event["body"] = json.dumps(body)
    return sign_event(event, secret, at), conversation_id


def results(body: dict[str, Any]) -> dict[str, Any]:
    return body["data"]["analysis"]["data_collection_results"]


def set_result(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        results(body)[name]["value"] = value

    return change


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = body
        for name in parents:
            node = node[name]
        node[last] = value

    return change


def without_lead_variable(body: dict[str, Any]) -> None:
    del body["data"]["conversation_initiation_client_data"]["dynamic_variables"]["lead_id"]


def patch_event(
    body: Any, *, if_match: str | None = None, content_type: str | None = "application/json"
) -> dict[str, Any]:
    event = load("patch_valid.json")
    headers = {k: v for k, v in event["headers"].items() if k not in ("if-match", "content-type")}
    if content_type is not None:
        headers["content-type"] = content_type
    if if_match is not None:
        headers["if-match"] = if_match
    event["headers"] = headers
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def with_lead_id(event: dict[str, Any], lead_id: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["pathParameters"] = {"lead_id": lead_id}
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/leads/{lead_id}"
    return event


# -- every sample event ------------------------------------------------------------------


def test_lead_update_sample_events_cover_every_file() -> None:
    names = {p.name for p in EVENT_DIR.glob("*.json")}

    assert names == {
        "get.json",
        "get_by_phone.json",
        "patch_valid.json",
        "patch_invalid_field.json",
        "delete.json",
        "post_call_signed.json",
        "post_call_expired.json",
    }


def test_lead_update_get_event_returns_lead_with_etag(lead: str, invoke: Invoke) -> None:
    response = invoke(FUNCTION, load("get.json"))

    assert response["statusCode"] == 200
    assert body_of(response)["id"] == LEAD_ID
    assert body_of(response)["phone_number_normalized"] == LEAD_DIGITS
    assert body_of(response)["status"] == "new"
    assert header_of(response, "ETag") == '"1"'


def test_lead_update_get_by_phone_event_returns_lead(lead: str, invoke: Invoke) -> None:
    response = invoke(FUNCTION, load("get_by_phone.json"))

    assert response["statusCode"] == 200
    assert body_of(response)["id"] == LEAD_ID
    assert header_of(response, "ETag") == '"1"'


def test_lead_update_patch_valid_event_merges_and_bumps_etag(
    lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    response = invoke(FUNCTION, load("patch_valid.json"))

    assert response["statusCode"] == 200
    assert header_of(response, "ETag") == '"2"'
    body = body_of(response)
    assert body["customer_name"] == "Ada Lovelace"
    assert body["status"] == "qualified"
    assert body["bike_interest"] == {"type": "gravel", "frame_size": "54"}
    row = fetch_lead(db)
    assert row is not None
    assert (row["customer_name"], row["email"], row["version"]) == (
        "Ada Lovelace",
        "ada@example.com",
        2,
    )


def test_lead_update_patch_invalid_field_event_names_field(
    lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    response = invoke(FUNCTION, load("patch_invalid_field.json"))

    assert response["statusCode"] == 400
    assert "favourite_colour" in body_of(response)["message"]
    row = fetch_lead(db)
    assert row is not None
    assert (row["customer_name"], row["version"]) == (None, 1)


def test_lead_update_delete_event_erases_lead(
    lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    response = invoke(FUNCTION, load("delete.json"))

    assert response["statusCode"] == 204
    assert not response.get("body")
    assert fetch_lead(db) is None


def test_lead_update_post_call_signed_event_merges_into_lead(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    response = invoke(FUNCTION, load("post_call_signed.json"))

    assert response["statusCode"] == 200
    assert body_of(response) == {"status": "ok"}
    row = fetch_lead(db)
    assert row is not None
    assert row["customer_name"] == "Ada"
    assert row["status"] == "qualified"
    assert row["bike_interest"] == {"type": "gravel"}
    assert row["qualification_data"] == {
        "budget_range": "$2,000-$3,000",
        "timeline": "within a month",
    }
    assert row["last_summary"].startswith("Ada called about gravel bikes")
    assert (row["interaction_count"], row["version"]) == (1, 2)
    [summary] = summaries(db, SAMPLE_CONVERSATIONS[0])
    assert (summary["lead_id"], summary["organization_id"]) == (LEAD_ID, ORG_ID)
    assert summary["classification"] == "qualified"
    assert summary["payload"]["data"]["conversation_id"] == SAMPLE_CONVERSATIONS[0]


def test_lead_update_post_call_expired_event_is_rejected(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    # The clock stands where the sample pair was signed: the expired one is 2 hours older.
    response = invoke(FUNCTION, load("post_call_expired.json"))

    assert response["statusCode"] == 401
    assert "expired" in body_of(response)["message"]
    assert summaries(db, SAMPLE_CONVERSATIONS[1]) == []
    row = fetch_lead(db)
    assert row is not None
    assert (row["interaction_count"], row["version"]) == (0, 1)


# -- GET ---------------------------------------------------------------------------------


def test_lead_update_get_unknown_lead_is_404(lead: str, invoke: Invoke) -> None:
    event = with_lead_id(load("get.json"), str(uuid.uuid4()))

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 404
    assert body_of(response) == {"message": "lead not found"}


def test_lead_update_get_malformed_id_is_400(lead: str, invoke: Invoke) -> None:
    event = with_lead_id(load("get.json"), "not-a-uuid")

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 400
    assert "lead id" in body_of(response)["message"]


def test_lead_update_get_etag_follows_version(
    lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    db.run("UPDATE leads SET version = 7 WHERE id = :id", id=LEAD_ID)

    response = invoke(FUNCTION, load("get.json"))

    assert header_of(response, "ETag") == '"7"'
    assert body_of(response)["version"] == 7


@pytest.mark.parametrize("missing", ["phone", "organization_id"])
def test_lead_update_get_by_phone_requires_both_parameters(
    missing: str, lead: str, invoke: Invoke
) -> None:
    event = load("get_by_phone.json")
    del event["queryStringParameters"][missing]

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 400
    assert f"'{missing}'" in body_of(response)["message"]


def test_lead_update_get_by_phone_unknown_is_404_and_creates_nothing(
    lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    event = load("get_by_phone.json")
    event["queryStringParameters"]["phone"] = STRANGER

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 404
    assert (
        count(db, "SELECT count(*) FROM leads WHERE phone_number_normalized = '12365550177'") == 0
    )


def test_lead_update_get_by_phone_accepts_other_formats(lead: str, invoke: Invoke) -> None:
    event = load("get_by_phone.json")
    event["queryStringParameters"]["phone"] = "(236) 555-0199"

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 200
    assert body_of(response)["id"] == LEAD_ID


# -- PATCH -------------------------------------------------------------------------------


def test_lead_update_patch_merges_nested_objects(
    lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    db.run(
        'UPDATE leads SET bike_interest = \'{"type": "gravel", "frame_size": "54"}\', '
        'qualification_data = \'{"timeline": "soon"}\' WHERE id = :id',
        id=LEAD_ID,
    )

    response = invoke(
        FUNCTION,
        patch_event(
            {"bike_interest": {"frame_size": None, "color": "teal"}, "qualification_data": {}}
        ),
    )

    assert response["statusCode"] == 200
    row = fetch_lead(db)
    assert row is not None
    assert row["bike_interest"] == {"type": "gravel", "color": "teal"}
    assert row["qualification_data"] == {"timeline": "soon"}


def test_lead_update_patch_null_clears_nullable_fields(
    lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    db.run(
        "UPDATE leads SET email = 'ada@example.com', notes = 'call back', "
        'bike_interest = \'{"type": "road"}\' WHERE id = :id',
        id=LEAD_ID,
    )

    response = invoke(FUNCTION, patch_event({"email": None, "notes": None, "bike_interest": None}))

    assert response["statusCode"] == 200
    row = fetch_lead(db)
    assert row is not None
    assert (row["email"], row["notes"], row["bike_interest"]) == (None, None, {})


@pytest.mark.parametrize(
    ("patch", "named"),
    [
        ({"status": None}, "status"),
        ({"status": "vip"}, "status"),
        ({"sentiment": "ecstatic"}, "sentiment"),
        ({"phone_number": "+16045550000"}, "phone_number"),
        ({"interaction_count": 99}, "interaction_count"),
        ({"bike_interest": "gravel"}, "bike_interest"),
        ({"customer_name": 42}, "customer_name"),
    ],
)
def test_lead_update_patch_rejects_bad_fields(
    patch: dict[str, Any], named: str, lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    response = invoke(FUNCTION, patch_event(patch))

    assert response["statusCode"] == 400
    assert named in body_of(response)["message"]
    row = fetch_lead(db)
    assert row is not None
    assert (row["status"], row["version"]) == ("new", 1)


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
def test_lead_update_patch_requires_json_content_type(
    content_type: str | None, lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    response = invoke(FUNCTION, patch_event({"notes": "x"}, content_type=content_type))

    assert response["statusCode"] == 415
    assert "Content-Type" in body_of(response)["message"]
    row = fetch_lead(db)
    assert row is not None
    assert row["version"] == 1


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/Merge-Patch+JSON", "application/json"],
)
def test_lead_update_patch_accepts_json_media_types(
    content_type: str, lead: str, invoke: Invoke
) -> None:
    response = invoke(FUNCTION, patch_event({"notes": "x"}, content_type=content_type))

    assert response["statusCode"] == 200
    assert body_of(response)["notes"] == "x"


@pytest.mark.parametrize("body", ["not json", "[1, 2]", "{}"])
def test_lead_update_patch_rejects_non_object_bodies(body: str, lead: str, invoke: Invoke) -> None:
    response = invoke(FUNCTION, patch_event(body))

    assert response["statusCode"] == 400
    assert "body" in body_of(response)["message"]


def test_lead_update_patch_over_body_limit_is_413(
    lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    response = invoke(FUNCTION, patch_event({"notes": "x" * 70_000}))

    assert response["statusCode"] == 413
    row = fetch_lead(db)
    assert row is not None
    assert row["notes"] is None


def test_lead_update_patch_if_match_forms(lead: str, invoke: Invoke) -> None:
    statuses = [
        invoke(FUNCTION, patch_event({"notes": str(n)}, if_match=value))["statusCode"]
        for n, value in enumerate(['"1"', "2", 'W/"3"', " 4 ", "*"])
    ]

    assert statuses == [200, 200, 200, 200, 200]


def test_lead_update_patch_if_match_mismatch_is_412(
    lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    response = invoke(FUNCTION, patch_event({"notes": "late"}, if_match='"5"'))

    assert response["statusCode"] == 412
    assert "version" in body_of(response)["message"]
    row = fetch_lead(db)
    assert row is not None
    assert (row["notes"], row["version"]) == (None, 1)


@pytest.mark.parametrize("value", ["", "abc", '"1', '"1", "2"', "-1", "1.0", "W/", '"99999999999"'])
def test_lead_update_patch_malformed_if_match_is_400(value: str, lead: str, invoke: Invoke) -> None:
    response = invoke(FUNCTION, patch_event({"notes": "x"}, if_match=value))

    assert response["statusCode"] == 400
    assert "If-Match" in body_of(response)["message"]


def test_lead_update_patch_same_if_match_twice_one_wins(
    lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    first = invoke(FUNCTION, patch_event({"notes": "first"}, if_match='"1"'))
    second = invoke(FUNCTION, patch_event({"notes": "second"}, if_match='"1"'))

    assert [first["statusCode"], second["statusCode"]] == [200, 412]
    row = fetch_lead(db)
    assert row is not None
    assert (row["notes"], row["version"]) == ("first", 2)


def test_lead_update_patch_unknown_lead_is_404(lead: str, invoke: Invoke) -> None:
    response = invoke(FUNCTION, with_lead_id(patch_event({"notes": "x"}), str(uuid.uuid4())))

    assert response["statusCode"] == 404


def test_lead_update_patch_refreshes_cached_lookup(
    lead: str, invoke: Invoke, cache: redis.Redis
) -> None:
    service = runtime_module.get_runtime().service
    assert service.find_or_create_lead(LEAD_PHONE, ORG_ID).customer_name is None
    key = cache_key()
    assert cache.exists(key) == 1

    response = invoke(FUNCTION, patch_event({"customer_name": "Grace Hopper"}))

    assert response["statusCode"] == 200
    assert cache.exists(key) == 0
    assert service.find_or_create_lead(LEAD_PHONE, ORG_ID).customer_name == "Grace Hopper"
    assert "Grace Hopper" in cache.get(key)
    assert service.find_or_create_lead(LEAD_PHONE, ORG_ID).customer_name == "Grace Hopper"


# -- DELETE ------------------------------------------------------------------------------


def test_lead_update_delete_erases_messages_summaries_and_cache(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, cache: redis.Redis
) -> None:
    for sid in (f"SM{uuid.uuid4().hex}", f"SM{uuid.uuid4().hex}"):
        db.run(
            "INSERT INTO messages (organization_id, lead_id, external_id, direction, body) "
            "VALUES (:org, :lead, :sid, 'inbound', 'hi')",
            org=ORG_ID,
            lead=LEAD_ID,
            sid=sid,
        )
    db.run(
        "INSERT INTO call_summaries (organization_id, lead_id, conversation_id, summary) "
        "VALUES (:org, :lead, :conv, 'asked about hours')",
        org=ORG_ID,
        lead=LEAD_ID,
        conv=f"conv_test_{uuid.uuid4().hex}",
    )
    runtime_module.get_runtime().service.find_or_create_lead(LEAD_PHONE, ORG_ID)
    assert cache.exists(cache_key()) == 1

    response = invoke(FUNCTION, load("delete.json"))

    assert response["statusCode"] == 204
    assert count(db, "SELECT count(*) FROM leads WHERE id = :id", id=LEAD_ID) == 0
    assert count(db, "SELECT count(*) FROM messages WHERE lead_id = :id", id=LEAD_ID) == 0
    assert count(db, "SELECT count(*) FROM call_summaries WHERE lead_id = :id", id=LEAD_ID) == 0
    assert cache.exists(cache_key()) == 0


def test_lead_update_delete_unknown_lead_is_404(lead: str, invoke: Invoke) -> None:
    invoke(FUNCTION, load("delete.json"))

    response = invoke(FUNCTION, load("delete.json"))

    assert response["statusCode"] == 404
    assert body_of(response) == {"message": "lead not found"}


def test_lead_update_delete_malformed_id_is_400(lead: str, invoke: Invoke) -> None:
    response = invoke(FUNCTION, with_lead_id(load("delete.json"), "5e1f"))

    assert response["statusCode"] == 400


# -- post-call: signatures ---------------------------------------------------------------


def _forged(event: dict[str, Any]) -> None:
    event["headers"]["elevenlabs-signature"] = sign_elevenlabs(event["body"], "wrong", SIGNED_AT)


def _truncated(event: dict[str, Any]) -> None:
    event["headers"]["elevenlabs-signature"] = event["headers"]["elevenlabs-signature"][:-8]


def _tampered(event: dict[str, Any]) -> None:
    event["body"] = event["body"].replace('"qualified"', '"customer"')


def _missing(event: dict[str, Any]) -> None:
    del event["headers"]["elevenlabs-signature"]


def _malformed(event: dict[str, Any]) -> None:
    event["headers"]["elevenlabs-signature"] = "sha256=abc"


def _expired(event: dict[str, Any]) -> None:
    at = SIGNED_AT - 31 * 60
    event["headers"]["elevenlabs-signature"] = sign_elevenlabs(event["body"], SECRET, at)


def _future(event: dict[str, Any]) -> None:
    at = SIGNED_AT + 6 * 60
    event["headers"]["elevenlabs-signature"] = sign_elevenlabs(event["body"], SECRET, at)


@pytest.mark.parametrize(
    "spoil", [_forged, _truncated, _tampered, _missing, _malformed, _expired, _future]
)
def test_lead_update_post_call_bad_signature_is_401_and_writes_nothing(
    spoil: Callable[[dict[str, Any]], None],
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    event, conversation_id = post_call()
    spoil(event)

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 401
    assert body_of(response)["message"]
    assert summaries(db, conversation_id) == []
    row = fetch_lead(db)
    assert row is not None
    assert (row["customer_name"], row["interaction_count"], row["version"]) == (None, 0, 1)


def test_lead_update_post_call_inside_window_edges_is_accepted(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    old, old_id = post_call(at=SIGNED_AT - 30 * 60)
    early, early_id = post_call(at=SIGNED_AT + 5 * 60)

    statuses = [invoke(FUNCTION, old)["statusCode"], invoke(FUNCTION, early)["statusCode"]]

    assert statuses == [200, 200]
    assert len(summaries(db, old_id)) == len(summaries(db, early_id)) == 1


def test_lead_update_post_call_without_secret_fails_closed(
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ELEVENLABS_WEBHOOK_SECRET")
    event, conversation_id = post_call()

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 401
    assert summaries(db, conversation_id) == []


def test_lead_update_post_call_over_body_limit_is_413(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    def pad(body: dict[str, Any]) -> None:
        body["data"]["padding"] = "x" * (4 * 1024 * 1024)

    event, conversation_id = post_call(pad)

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 413
    assert summaries(db, conversation_id) == []


# -- post-call: storage and merge rules --------------------------------------------------


def test_lead_update_post_call_redelivery_records_once(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, conversation_id = post_call()

    responses = [invoke(FUNCTION, event), invoke(FUNCTION, copy.deepcopy(event))]

    assert [r["statusCode"] for r in responses] == [200, 200]
    assert [body_of(r) for r in responses] == [{"status": "ok"}, {"status": "ok"}]
    assert len(summaries(db, conversation_id)) == 1
    row = fetch_lead(db)
    assert row is not None
    assert (row["interaction_count"], row["version"]) == (1, 2)


@pytest.mark.parametrize(
    ("before", "classification", "after"),
    [
        ("new", "qualified", "qualified"),
        ("contacted", "Hot", "hot"),
        ("hot", "qualified", "hot"),
        ("customer", "new", "customer"),
        ("closed", "customer", "closed"),
        ("closed", "hot", "closed"),
        ("new", "closed", "new"),
        ("qualified", "vip", "qualified"),
    ],
)
def test_lead_update_post_call_status_only_upgrades(
    before: str,
    classification: str,
    after: str,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    db.run("UPDATE leads SET status = :s WHERE id = :id", s=before, id=LEAD_ID)
    event, _ = post_call(set_result("call_classification", classification))

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 200
    row = fetch_lead(db)
    assert row is not None
    assert row["status"] == after
    assert row["interaction_count"] == 1


@pytest.mark.parametrize("value", ["", "   ", None, "Unknown", "N/A", "not provided", 7, ["Bo"]])
def test_lead_update_post_call_keeps_name_over_placeholders(
    value: Any,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    db.run("UPDATE leads SET customer_name = 'Ada' WHERE id = :id", id=LEAD_ID)
    event, _ = post_call(set_result("customer_name", value))

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 200
    row = fetch_lead(db)
    assert row is not None
    assert (row["customer_name"], row["interaction_count"]) == ("Ada", 1)


@pytest.mark.parametrize("value", ["Sofia", "sofia.", " SOFIA "])
def test_lead_update_post_call_ignores_agents_own_name(
    value: str,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    def change(body: dict[str, Any]) -> None:
        without_lead_variable(body)
        body["data"]["metadata"]["phone_call"]["agent_number"] = AGENT_ORG_PHONE
        body["data"]["metadata"]["phone_call"]["external_number"] = AGENT_ORG_CALLER
        results(body)["customer_name"]["value"] = value

    event, conversation_id = post_call(change)

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 200
    row = fetch_lead(db, AGENT_ORG_LEAD_ID)
    assert row is not None
    assert (row["customer_name"], row["interaction_count"]) == ("Grace", 1)
    [summary] = summaries(db, conversation_id)
    assert (summary["lead_id"], summary["organization_id"]) == (AGENT_ORG_LEAD_ID, AGENT_ORG_ID)


def test_lead_update_post_call_sets_a_real_name(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, _ = post_call(set_result("customer_name", "  Ada Lovelace "))

    invoke(FUNCTION, event)

    row = fetch_lead(db)
    assert row is not None
    assert row["customer_name"] == "Ada Lovelace"


def test_lead_update_post_call_empty_values_do_not_clobber(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    db.run(
        'UPDATE leads SET bike_interest = \'{"type": "road", "size": "56"}\', '
        'qualification_data = \'{"budget_range": "$1,500", "timeline": "spring"}\', '
        "last_summary = 'earlier call' WHERE id = :id",
        id=LEAD_ID,
    )

    def change(body: dict[str, Any]) -> None:
        for name in ("bike_type", "budget_range", "purchase_timeline"):
            results(body)[name]["value"] = ""
        body["data"]["analysis"]["transcript_summary"] = ""

    event, _ = post_call(change)

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 200
    row = fetch_lead(db)
    assert row is not None
    assert row["bike_interest"] == {"type": "road", "size": "56"}
    assert row["qualification_data"] == {"budget_range": "$1,500", "timeline": "spring"}
    assert row["last_summary"] == "earlier call"
    assert row["interaction_count"] == 1


def test_lead_update_post_call_merges_without_dropping_keys(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    db.run(
        'UPDATE leads SET bike_interest = \'{"type": "road", "size": "56"}\' WHERE id = :id',
        id=LEAD_ID,
    )
    event, _ = post_call(set_result("budget_range", 2500))

    invoke(FUNCTION, event)

    row = fetch_lead(db)
    assert row is not None
    assert row["bike_interest"] == {"type": "gravel", "size": "56"}
    assert row["qualification_data"] == {"budget_range": 2500, "timeline": "within a month"}


def test_lead_update_post_call_lead_variable_wins_over_phone(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, conversation_id = post_call(_set("data.metadata.phone_call.external_number", STRANGER))

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 200
    [summary] = summaries(db, conversation_id)
    assert summary["lead_id"] == LEAD_ID
    assert (
        count(db, "SELECT count(*) FROM leads WHERE phone_number_normalized = '12365550177'") == 0
    )


def test_lead_update_post_call_finds_lead_by_phone_without_variable(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, conversation_id = post_call(without_lead_variable)

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 200
    [summary] = summaries(db, conversation_id)
    assert summary["lead_id"] == LEAD_ID
    row = fetch_lead(db)
    assert row is not None
    assert (row["customer_name"], row["interaction_count"]) == ("Ada", 1)


def test_lead_update_post_call_unknown_lead_variable_falls_back_to_phone(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    def change(body: dict[str, Any]) -> None:
        variables = body["data"]["conversation_initiation_client_data"]["dynamic_variables"]
        variables["lead_id"] = str(uuid.uuid4())

    event, conversation_id = post_call(change)

    invoke(FUNCTION, event)

    [summary] = summaries(db, conversation_id)
    assert summary["lead_id"] == LEAD_ID


@pytest.mark.parametrize("lead_variable", [None, "", "not-a-uuid"])
def test_lead_update_post_call_unresolved_stores_summary_without_lead(
    lead_variable: str | None,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    def change(body: dict[str, Any]) -> None:
        variables = body["data"]["conversation_initiation_client_data"]["dynamic_variables"]
        variables["lead_id"] = lead_variable
        body["data"]["metadata"]["phone_call"]["external_number"] = STRANGER

    event, conversation_id = post_call(change)
    leads_before = count(db, "SELECT count(*) FROM leads")

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 200
    [summary] = summaries(db, conversation_id)
    assert (summary["lead_id"], summary["organization_id"]) == (None, ORG_ID)
    assert summary["summary"].startswith("Ada called about gravel bikes")
    assert count(db, "SELECT count(*) FROM leads") == leads_before
    row = fetch_lead(db)
    assert row is not None
    assert row["interaction_count"] == 0


def test_lead_update_post_call_web_call_without_phone_stores_summary(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    def change(body: dict[str, Any]) -> None:
        without_lead_variable(body)
        del body["data"]["metadata"]["phone_call"]

    event, conversation_id = post_call(change)

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 200
    [summary] = summaries(db, conversation_id)
    assert (summary["lead_id"], summary["organization_id"]) == (None, ORG_ID)


def test_lead_update_post_call_refreshes_cached_lookup(
    lead: str, invoke: Invoke, cache: redis.Redis, frozen: Callable[[int], None]
) -> None:
    service = runtime_module.get_runtime().service
    service.find_or_create_lead(LEAD_PHONE, ORG_ID)
    event, _ = post_call()

    invoke(FUNCTION, event)

    lead_now = service.find_or_create_lead(LEAD_PHONE, ORG_ID)
    assert (lead_now.customer_name, lead_now.status, lead_now.interaction_count) == (
        "Ada",
        "qualified",
        1,
    )


@pytest.mark.parametrize("kind", ["post_call_audio", "call_initiation_failure", 5, None])
def test_lead_update_post_call_other_types_are_ignored(
    kind: Any,
    lead: str,
    invoke: Invoke,
    db: pg8000.native.Connection,
    frozen: Callable[[int], None],
) -> None:
    def change(body: dict[str, Any]) -> None:
        body["type"] = kind

    event, conversation_id = post_call(change)

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 200
    assert body_of(response) == {"status": "ignored"}
    assert summaries(db, conversation_id) == []


def test_lead_update_post_call_missing_conversation_id_is_400(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, _ = post_call(lambda body: body["data"].pop("conversation_id"))

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 400
    assert "data.conversation_id" in body_of(response)["message"]
    row = fetch_lead(db)
    assert row is not None
    assert row["interaction_count"] == 0


@pytest.mark.parametrize(
    ("change", "status", "named"),
    [
        (_set("data", []), 400, "data"),
        (_set("data", "x"), 400, "data"),
        (_set("data.conversation_id", 42), 400, "data.conversation_id"),
        (_set("data.conversation_id", ""), 400, "data.conversation_id"),
        (_set("data.conversation_id", "c" * 300), 400, "data.conversation_id"),
        (_set("data.analysis", "x"), 200, None),
        (_set("data.analysis.data_collection_results", []), 200, None),
        (_set("data.analysis.data_collection_results.customer_name", "Ada"), 200, None),
        (_set("data.analysis.data_collection_results.customer_name.value", {"a": 1}), 200, None),
        (_set("data.analysis.data_collection_results.bike_type.value", ["gravel"]), 200, None),
        (_set("data.analysis.data_collection_results.budget_range.value", True), 200, None),
        (_set("data.analysis.data_collection_results.call_classification.value", 3), 200, None),
        (_set("data.analysis.transcript_summary", {"text": "x"}), 200, None),
        (_set("data.conversation_initiation_client_data", []), 200, None),
        (_set("data.conversation_initiation_client_data.dynamic_variables", "x"), 200, None),
        (_set("data.conversation_initiation_client_data.dynamic_variables.lead_id", 7), 200, None),
        (_set("data.metadata", None), 200, None),
        (_set("data.metadata.phone_call", []), 200, None),
        (_set("data.metadata.phone_call.external_number", 12365550199), 200, None),
        (_set("data.metadata.phone_call.agent_number", {"n": 1}), 200, None),
        (_set("data.transcript", "x" * 10), 200, None),
        (_set("data.analysis.transcript_summary", "a\u0000b"), 200, None),
        (_set("data.analysis.data_collection_results.customer_name.value", "Ada\ud800"), 200, None),
        (
            _set(
                "data.transcript",
                [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
            ),
            400,
            "nested",
        ),
    ],
)
def test_lead_update_post_call_odd_payloads_never_500(
    change: Callable[[dict[str, Any]], None],
    status: int,
    named: str | None,
    lead: str,
    invoke: Invoke,
    frozen: Callable[[int], None],
) -> None:
    event, _ = post_call(change)

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == status
    if named is not None:
        assert named in body_of(response)["message"]


@pytest.mark.parametrize(
    "raw",
    ["[1, 2]", '"text"', "not json", '{"type": "post_call_transcription", "x": NaN}', "{" * 5000],
)
def test_lead_update_post_call_non_object_bodies_are_400(
    raw: str, lead: str, invoke: Invoke, frozen: Callable[[int], None]
) -> None:
    event = copy.deepcopy(SIGNED)
    event["body"] = raw
    event["headers"]["elevenlabs-signature"] = sign_elevenlabs(raw, SECRET, SIGNED_AT)

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 400
    assert "body" in body_of(response)["message"]


def test_lead_update_post_call_strips_nul_from_stored_text(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, conversation_id = post_call(
        _set("data.analysis.transcript_summary", "Wants\u0000 a bike")
    )

    invoke(FUNCTION, event)

    [summary] = summaries(db, conversation_id)
    assert summary["summary"] == "Wants a bike"


def test_lead_update_post_call_base64_body_is_verified_decoded(
    lead: str, invoke: Invoke, db: pg8000.native.Connection, frozen: Callable[[int], None]
) -> None:
    event, conversation_id = post_call()
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 200
    assert len(summaries(db, conversation_id)) == 1
