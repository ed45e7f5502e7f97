"""LeadUpdateFunction's lead routes through the real handler, against real PostgreSQL and Redis.

The post-call webhook, which the same function serves, has its own file (test_post_call.py).
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pg8000.native
import pytest
import redis

from leadlookup import container as runtime_module
from tests.support.lead_update import (
    EVENT_DIR,
    FUNCTION,
    LEAD_DIGITS,
    LEAD_ID,
    LEAD_PHONE,
    ORG_ID,
    STRANGER,
    Invoke,
    body_of,
    cache_key,
    count,
    fetch_lead,
    header_of,
    load,
)


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
        "list.json",
        "list_by_phone.json",
        # The timeline: tested in test_staff_api.py.
        "timeline.json",
        "patch_valid.json",
        "patch_invalid_field.json",
        "delete.json",
        # SMS replies: tested in test_replies_handlers.py.
        "messages_list.json",
        "messages_send.json",
        "patch_human_control.json",
    }


def test_lead_update_get_event_returns_lead_with_etag(lead: str, invoke: Invoke) -> None:
    response = invoke(FUNCTION, load("get.json"))

    assert response["statusCode"] == 200
    assert body_of(response)["id"] == LEAD_ID
    assert body_of(response)["phone_number_normalized"] == LEAD_DIGITS
    assert body_of(response)["status"] == "new"
    assert header_of(response, "ETag") == '"1"'


def test_lead_update_list_by_phone_event_lists_that_lead(lead: str, invoke: Invoke) -> None:
    response = invoke(FUNCTION, load("list_by_phone.json"))

    assert response["statusCode"] == 200
    assert [item["id"] for item in body_of(response)["leads"]] == [LEAD_ID]
    assert body_of(response)["next"] is None
    assert header_of(response, "ETag")


def test_lead_update_list_event_lists_store_a_new_leads(lead: str, invoke: Invoke) -> None:
    response = invoke(FUNCTION, load("list.json"))

    assert response["statusCode"] == 200
    leads = body_of(response)["leads"]
    assert LEAD_ID in [item["id"] for item in leads]
    assert {item["organization_id"] for item in leads} == {ORG_ID}
    assert {item["status"] for item in leads} == {"new"}


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


def test_lead_update_list_by_phone_unknown_is_empty_and_creates_nothing(
    lead: str, invoke: Invoke, db: pg8000.native.Connection
) -> None:
    event = load("list_by_phone.json")
    event["queryStringParameters"]["phone"] = STRANGER

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 200
    assert body_of(response) == {"leads": [], "next": None}
    assert (
        count(db, "SELECT count(*) FROM leads WHERE phone_number_normalized = '12365550177'") == 0
    )


def test_lead_update_list_by_phone_accepts_other_formats(lead: str, invoke: Invoke) -> None:
    event = load("list_by_phone.json")
    event["queryStringParameters"]["phone"] = "(236) 555-0199"

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 200
    assert [item["id"] for item in body_of(response)["leads"]] == [LEAD_ID]


def test_lead_update_list_by_phone_that_is_no_number_is_400(lead: str, invoke: Invoke) -> None:
    event = load("list_by_phone.json")
    event["queryStringParameters"]["phone"] = "call me"

    response = invoke(FUNCTION, event)

    assert response["statusCode"] == 400
    assert "'phone'" in body_of(response)["message"]


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


def test_lead_update_patch_writes_the_committed_row_through_to_the_cache(
    lead: str, invoke: Invoke, cache: redis.Redis
) -> None:
    service = runtime_module.get_runtime().service
    assert service.find_or_create_lead(LEAD_PHONE, ORG_ID).customer_name is None
    key = cache_key()
    assert cache.exists(key) == 1

    response = invoke(FUNCTION, patch_event({"customer_name": "Grace Hopper"}))

    assert response["statusCode"] == 200
    assert "Grace Hopper" in cache.get(key)
    assert cache.exists(service.leads.lease_key(key)) == 0
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
