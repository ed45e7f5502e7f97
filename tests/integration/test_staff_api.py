"""The staff API through the real handler: per-store authorization on every route, the inbox
(filters, attention, paging, ETag), the timeline, and who did what.

Every test makes two stores of its own (the session's database is shared), so a staff member
of one sees exactly the leads the test made there.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pg8000.native
import pytest
import redis

from devkit.proxy import TcpProxy
from leadlookup import container as runtime_module
from leadlookup.config import Settings
from leadlookup.container import Runtime
from leadlookup.usecases.lookups import CHANGES_TTL_S
from tests.support.faults import new_phone
from tests.support.lead_update import EVENT_DIR, FUNCTION, Invoke, body_of, header_of
from tests.support.staff import as_member, claims_of, store_claims

NOW = "now()"


@dataclass
class Store:
    """One store of a test and the claims of one of its staff."""

    id: str
    phone: str
    claims: dict[str, str] = field(default_factory=dict)


class Jobs:
    """A reply job queue that records instead of sending (what staff texts would send)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(
        self,
        body: dict[str, Any],
        *,
        deduplication_id: str | None = None,
        group_id: str | None = None,
    ) -> None:
        self.sent.append(body)


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENT_DIR / f"{name}.json").read_text())


def at_lead(event: dict[str, Any], lead_id: str, suffix: str = "") -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["pathParameters"] = {"lead_id": lead_id}
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/leads/{lead_id}{suffix}"
    return event


def with_query(event: dict[str, Any], query: dict[str, str] | None) -> dict[str, Any]:
    event = copy.deepcopy(event)
    if query:
        event["queryStringParameters"] = dict(query)
    else:
        event.pop("queryStringParameters", None)
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    return event


def request(
    route: str,
    claims: dict[str, str] | None,
    lead_id: str | None = None,
    query: dict[str, str] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A sample event of ``route`` for ``lead_id``, signed in with ``claims``."""
    sample, suffix = {
        "list": ("list", ""),
        "get": ("get", ""),
        "patch": ("patch_valid", ""),
        "delete": ("delete", ""),
        "messages": ("messages_list", "/messages"),
        "send": ("messages_send", "/messages"),
        "timeline": ("timeline", "/timeline"),
    }[route]
    event = load(sample)
    if lead_id is not None:
        event = at_lead(event, lead_id, suffix)
    event = with_query(event, query)
    if body is not None:
        event["body"] = json.dumps(body)
    event["headers"].pop("if-match", None)
    event["headers"].update(headers or {})
    return as_member(event, claims)


@pytest.fixture
def stores(db: pg8000.native.Connection, app_env: dict[str, str]) -> tuple[Store, Store]:
    """Two new stores, A and B, each with claims of one staff member."""
    made = []
    for name in ("A", "B"):
        store_id, phone = str(uuid.uuid4()), new_phone()
        db.run(
            "INSERT INTO organizations (id, name, phone_number, phone_number_normalized, "
            "settings) VALUES (:id, :name, :phone, :digits, '{}')",
            id=store_id,
            name=f"Test store {name}",
            phone=phone,
            digits=phone[1:],
        )
        made.append(Store(store_id, phone, store_claims(store_id, sub=f"staff-{name.lower()}")))
    return made[0], made[1]


@pytest.fixture
def jobs(app_env: dict[str, str]) -> Jobs:
    """The runtime's reply job queue, recording."""
    recorder = Jobs()
    runtime_module.get_runtime().staff.replies.jobs = recorder
    return recorder


def add_lead(
    db: pg8000.native.Connection, store: Store, name: str | None = None, **columns: Any
) -> str:
    phone = new_phone()
    lead_id = str(uuid.uuid4())
    db.run(
        "INSERT INTO leads (id, organization_id, phone_number, phone_number_normalized, "
        "customer_name) VALUES (:id, :org, :phone, :digits, :name)",
        id=lead_id,
        org=store.id,
        phone=phone,
        digits=phone[1:],
        name=name,
    )
    if "created_at" in columns:  # an older lead: its creation is its last activity so far
        columns.setdefault("last_activity_at", columns["created_at"])
    for column, value in columns.items():
        db.run(f"UPDATE leads SET {column} = {value} WHERE id = :id", id=lead_id)
    return lead_id


def add_text(
    db: pg8000.native.Connection,
    lead_id: str,
    direction: str,
    minutes_ago: int,
    sender_kind: str = "customer",
    status: str | None = None,
    body: str = "hello",
) -> str:
    row_id = str(uuid.uuid4())
    db.run(
        "INSERT INTO messages (id, organization_id, lead_id, external_id, direction, "
        "sender_kind, body, status, created_at) SELECT :id, organization_id, id, :ext, :dir, "
        ":kind, :body, :status, now() - make_interval(mins => :ago) FROM leads WHERE id = :lead",
        id=row_id,
        ext=f"test:{row_id}",
        dir=direction,
        kind=sender_kind,
        body=body,
        status=status,
        ago=minutes_ago,
        lead=lead_id,
    )
    if direction != "system":  # as the statements that store texts keep it
        touch(db, lead_id, row_id, "messages")
    return row_id


def touch(db: pg8000.native.Connection, lead_id: str, row_id: str, table: str) -> None:
    db.run(
        "UPDATE leads SET last_activity_at = GREATEST(last_activity_at, "
        f"(SELECT created_at FROM {table} WHERE id = :row)) WHERE id = :id",
        row=row_id,
        id=lead_id,
    )


def add_call(db: pg8000.native.Connection, lead_id: str, minutes_ago: int, **payload: Any) -> str:
    row_id = str(uuid.uuid4())
    report = {
        "data": {
            "metadata": {"call_duration_secs": 48, "phone_call": {"direction": "inbound"}},
            "transcript": [{"role": "user", "message": "Hi, it's Ada", "time_in_call_secs": 3}],
        },
        **payload,
    }
    db.run(
        "INSERT INTO call_summaries (id, organization_id, lead_id, conversation_id, summary, "
        "classification, payload, created_at) SELECT :id, organization_id, id, :conv, "
        "'asked about gravel bikes', 'sales', CAST(:payload AS jsonb), "
        "now() - make_interval(mins => :ago) FROM leads WHERE id = :lead",
        id=row_id,
        conv=f"conv_{row_id}",
        payload=json.dumps(report),
        ago=minutes_ago,
        lead=lead_id,
    )
    touch(db, lead_id, row_id, "call_summaries")
    return row_id


def lead_row(db: pg8000.native.Connection, lead_id: str) -> tuple[Any, ...] | None:
    rows = db.run(
        "SELECT version, updated_at, customer_name, human_control FROM leads WHERE id = :id",
        id=lead_id,
    )
    return tuple(rows[0]) if rows else None


def count(db: pg8000.native.Connection, sql: str, **params: Any) -> int:
    return int(db.run(sql, **params)[0][0])


def ids(response: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body_of(response)["leads"]]


# -- per-store authorization: every route ----------------------------------------------------

ROUTES = ["get", "patch", "delete", "messages", "send", "timeline"]
WRITE_BODIES: dict[str, Any] = {"patch": {"customer_name": "Mallory"}, "send": {"body": "hi"}}


@pytest.mark.parametrize("route", ROUTES)
def test_staff_of_another_store_get_404_and_nothing_is_written_or_sent(
    route: str, stores: tuple[Store, Store], jobs: Jobs, invoke: Invoke, db: Any
) -> None:
    store_a, store_b = stores
    lead_b = add_lead(db, store_b, "Grace")
    add_text(db, lead_b, "inbound", 5)
    before = lead_row(db, lead_b)
    messages = count(db, "SELECT count(*) FROM messages WHERE lead_id = :id", id=lead_b)

    response = invoke(
        FUNCTION, request(route, store_a.claims, lead_b, body=WRITE_BODIES.get(route))
    )

    assert response["statusCode"] == 404
    assert body_of(response) == {"message": "lead not found"}
    assert lead_row(db, lead_b) == before
    assert count(db, "SELECT count(*) FROM messages WHERE lead_id = :id", id=lead_b) == messages
    assert count(db, "SELECT count(*) FROM lead_erasures WHERE lead_id = :id", id=lead_b) == 0
    assert jobs.sent == []


@pytest.mark.parametrize("route", ROUTES)
def test_staff_of_the_lead_store_and_an_owner_may_use_every_route(
    route: str, stores: tuple[Store, Store], jobs: Jobs, invoke: Invoke, db: Any
) -> None:
    _, store_b = stores
    expected = {"get": 200, "patch": 200, "delete": 204, "messages": 200, "send": 202}
    for claims in (store_b.claims, claims_of("olga")):
        lead_b = add_lead(db, store_b, "Grace")

        response = invoke(FUNCTION, request(route, claims, lead_b, body=WRITE_BODIES.get(route)))

        assert response["statusCode"] == expected.get(route, 200), body_of(response)
    if route == "send":
        assert [job["staff"]["sub"] for job in jobs.sent] == [
            store_b.claims["sub"],
            claims_of("olga")["sub"],
        ]


def test_the_list_shows_only_the_callers_stores(
    stores: tuple[Store, Store], invoke: Invoke, db: Any
) -> None:
    store_a, store_b = stores
    lead_a, lead_b = add_lead(db, store_a), add_lead(db, store_b)
    both = store_claims(store_a.id) | {"cognito:groups": f"[org-{store_a.id} org-{store_b.id}]"}

    own = invoke(FUNCTION, request("list", store_a.claims))
    other = invoke(FUNCTION, request("list", store_a.claims, query={"organization_id": store_b.id}))
    two = invoke(FUNCTION, request("list", both))
    owner = invoke(
        FUNCTION, request("list", claims_of("olga"), query={"organization_id": store_b.id})
    )

    assert ids(own) == [lead_a]
    assert (other["statusCode"], body_of(other)) == (404, {"message": "organization not found"})
    assert sorted(ids(two)) == sorted([lead_a, lead_b])
    assert ids(owner) == [lead_b]


@pytest.mark.parametrize("route", ["list", *ROUTES])
def test_a_token_with_no_store_is_403_and_no_token_is_401(
    route: str, stores: tuple[Store, Store], jobs: Jobs, invoke: Invoke, db: Any
) -> None:
    store_a, _ = stores
    lead_a = add_lead(db, store_a)
    no_store = claims_of(sub="drifter", groups=["org-not-a-uuid", "cyclists"])

    forbidden = invoke(FUNCTION, request(route, no_store, lead_a, body=WRITE_BODIES.get(route)))
    anonymous = invoke(FUNCTION, request(route, None, lead_a, body=WRITE_BODIES.get(route)))

    assert forbidden["statusCode"] == 403
    assert "store" in body_of(forbidden)["message"]
    assert anonymous["statusCode"] == 401
    assert lead_row(db, lead_a) is not None and jobs.sent == []


@pytest.mark.parametrize("route", ["list", *ROUTES])
def test_an_unknown_query_parameter_is_400_naming_it(
    route: str, stores: tuple[Store, Store], jobs: Jobs, invoke: Invoke, db: Any
) -> None:
    store_a, _ = stores
    lead_a = add_lead(db, store_a)
    before = lead_row(db, lead_a)

    response = invoke(
        FUNCTION,
        request(route, store_a.claims, lead_a, {"colour": "red"}, WRITE_BODIES.get(route)),
    )

    assert response["statusCode"] == 400
    assert "unknown query parameter 'colour'" in body_of(response)["message"]
    assert lead_row(db, lead_a) == before and jobs.sent == []


# -- the inbox ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"status": "vip"}, "new, contacted, qualified, hot, customer, closed"),
        ({"status": "new,warm"}, "'status'"),
        ({"attention": "maybe"}, "'attention' must be true or false"),
        ({"limit": "0"}, "'limit' must be 1 to 100"),
        ({"limit": "101"}, "'limit' must be 1 to 100"),
        ({"limit": "ten"}, "'limit' must be a whole number"),
        ({"next": "bm90IGEgY3Vyc29y"}, "'next' is not a cursor from this API"),
        ({"next": "%%%"}, "'next' is not a cursor from this API"),
        ({"organization_id": "store-a"}, "'organization_id' must be a UUID"),
        ({"phone": "call me"}, "'phone' is not a phone number"),
        ({"q": "x" * 101}, "'q' is longer than 100 characters"),
    ],
)
def test_the_list_refuses_bad_filters_naming_them(
    query: dict[str, str], named: str, stores: tuple[Store, Store], invoke: Invoke
) -> None:
    response = invoke(FUNCTION, request("list", stores[0].claims, query=query))

    assert response["statusCode"] == 400
    assert named in body_of(response)["message"]


def test_the_list_puts_attention_first_with_its_reason_then_newest_activity(
    stores: tuple[Store, Store], invoke: Invoke, db: Any
) -> None:
    store, _ = stores
    quiet_old = add_lead(db, store, "Quiet Old", created_at="now() - interval '3 days'")
    waiting = add_lead(db, store, "Waiting", human_control="true")
    add_text(db, waiting, "outbound", 30, "agent", "delivered")
    first_unanswered = add_text(db, waiting, "inbound", 20)
    add_text(db, waiting, "inbound", 10)
    callback = add_lead(db, store, "Callback", callback_requested_at="now() - interval '2 hours'")
    failed = add_lead(db, store, "Failed")
    add_text(db, failed, "inbound", 50)
    add_text(db, failed, "outbound", 49, "agent", "undelivered")
    fallback = add_lead(db, store, "Fallback")
    add_text(db, fallback, "inbound", 40)
    add_text(db, fallback, "outbound", 39, "fallback", "delivered")
    day_old = "now() - interval '1 day'"  # created a while ago: its texts are its activity
    answered = add_lead(db, store, "Answered", human_control="true", created_at=day_old)
    add_text(db, answered, "inbound", 8)
    add_text(db, answered, "outbound", 7, "staff", "delivered")
    opted_out = add_lead(
        db, store, "Opted Out", human_control="true", opted_out_at=NOW, created_at=day_old
    )
    add_text(db, opted_out, "inbound", 6, body="STOP")
    called = add_lead(db, store, "Called", created_at="now() - interval '1 day'")
    add_call(db, called, 1)

    response = invoke(FUNCTION, request("list", store.claims))

    leads = body_of(response)["leads"]
    reasons = {item["id"]: (item["attention"] or {}).get("reason") for item in leads}
    assert reasons == {
        waiting: "unanswered_text",
        callback: "callback_requested",
        failed: "delivery_failed",
        fallback: "fallback_sent",
        answered: None,
        opted_out: None,
        quiet_old: None,
        called: None,
    }
    needing = [item["id"] for item in leads if item["attention"]]
    assert set(needing) == {waiting, callback, failed, fallback}
    assert [item["id"] for item in leads][:4] == needing  # attention first
    rest = [item for item in leads if not item["attention"]]
    times = [item["last_activity_at"] for item in rest]
    assert times == sorted(times, reverse=True)
    assert [item["id"] for item in rest] == [called, opted_out, answered, quiet_old]
    since = db.run("SELECT created_at FROM messages WHERE id = :id", id=first_unanswered)[0][0]
    by_id = {item["id"]: item for item in leads}
    assert by_id[waiting]["attention"]["since"] == since.isoformat()
    assert by_id[waiting]["customer_name"] == "Waiting"  # the lead's own JSON
    assert by_id[waiting]["version"] == 1


def test_the_attention_reasons_go_when_staff_act(
    stores: tuple[Store, Store], jobs: Jobs, invoke: Invoke, db: Any
) -> None:
    store, _ = stores
    waiting = add_lead(db, store, "Waiting", human_control="true")
    add_text(db, waiting, "inbound", 10)
    callback = add_lead(db, store, "Callback", callback_requested_at=NOW)

    def reasons() -> dict[str, str | None]:
        leads = body_of(invoke(FUNCTION, request("list", store.claims)))["leads"]
        return {item["id"]: (item["attention"] or {}).get("reason") for item in leads}

    assert reasons() == {waiting: "unanswered_text", callback: "callback_requested"}
    cleared = invoke(
        FUNCTION, request("patch", store.claims, callback, body={"callback_requested_at": None})
    )
    # A staff reply, once its outcome is stored (what the responder's outcome does).
    runtime_module.get_runtime().outcomes.store_outcome_json(
        {
            "key": f"staff:{waiting}:reply",
            "sender_kind": "staff",
            "organization_id": store.id,
            "lead_id": waiting,
            "to_number": "+16045550000",
            "from_number": store.phone,
            "body": "Hi, this is Sam.",
            "twilio_sid": f"SM{uuid.uuid4().hex}",
            "status": "queued",
            "staff": {"sub": "staff-a", "email": "staff-a@example.com"},
        }
    )

    assert cleared["statusCode"] == 200
    assert body_of(cleared)["callback_requested_at"] is None
    assert reasons() == {waiting: None, callback: None}


def test_the_list_clears_only_a_request_that_is_there_and_refuses_setting_one(
    stores: tuple[Store, Store], invoke: Invoke, db: Any
) -> None:
    store, _ = stores
    lead = add_lead(db, store)

    unchanged = invoke(
        FUNCTION, request("patch", store.claims, lead, body={"callback_requested_at": None})
    )
    refused = invoke(
        FUNCTION,
        request("patch", store.claims, lead, body={"callback_requested_at": "2026-01-01"}),
    )

    assert (unchanged["statusCode"], body_of(unchanged)["version"]) == (200, 1)
    assert refused["statusCode"] == 400
    assert "callback_requested_at" in body_of(refused)["message"]
    assert lead_row(db, lead)[0] == 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "hot"}, ["hot"]),
        ({"status": "hot,closed"}, ["hot", "closed"]),
        ({"q": "ada"}, ["ada"]),
        ({"q": "LOVE"}, ["ada"]),
        ({"q": "50%"}, []),
        ({"attention": "true"}, ["waiting"]),
        ({"attention": "false"}, ["ada", "hot", "closed"]),
    ],
)
def test_the_list_filters(
    query: dict[str, str],
    expected: list[str],
    stores: tuple[Store, Store],
    invoke: Invoke,
    db: Any,
) -> None:
    store, _ = stores
    made = {
        "ada": add_lead(db, store, "Ada Lovelace", created_at="now() - interval '1 hour'"),
        "hot": add_lead(
            db, store, "Hot Rod", status="'hot'", created_at="now() - interval '2 hours'"
        ),
        "closed": add_lead(
            db, store, "Closed", status="'closed'", created_at="now() - interval '3 hours'"
        ),
        "waiting": add_lead(db, store, "Waiting", human_control="true"),
    }
    add_text(db, made["waiting"], "inbound", 1)
    names = {lead_id: name for name, lead_id in made.items()}

    response = invoke(FUNCTION, request("list", store.claims, query=query))

    assert response["statusCode"] == 200
    assert [names[lead_id] for lead_id in ids(response)] == expected


def test_the_list_finds_a_lead_by_digits_and_by_phone(
    stores: tuple[Store, Store], invoke: Invoke, db: Any
) -> None:
    store, _ = stores
    lead = add_lead(db, store)
    add_lead(db, store)
    phone = db.run("SELECT phone_number FROM leads WHERE id = :id", id=lead)[0][0]
    spaced = f"({phone[2:5]}) {phone[5:8]}-{phone[8:]}"

    by_digits = invoke(FUNCTION, request("list", store.claims, query={"q": phone[-7:]}))
    by_phone = invoke(FUNCTION, request("list", store.claims, query={"phone": spaced}))

    assert ids(by_digits) == [lead]
    assert ids(by_phone) == [lead]


def test_activity_is_what_the_texts_and_calls_statements_keep_and_notes_are_none(
    stores: tuple[Store, Store], invoke: Invoke, db: Any
) -> None:
    from leadlookup.domain.models import InboundMessage, PostCall

    store, _ = stores
    service = runtime_module.get_runtime().service
    old = [
        add_lead(db, store, f"Lead {n}", created_at=f"now() - interval '{n + 1} days'")
        for n in range(4)
    ]
    texted, answered, called, noted = (service.get_lead(lead_id) for lead_id in old)

    def order() -> list[str]:
        return ids(invoke(FUNCTION, request("list", store.claims)))

    service.update_lead(noted.id, {"notes": "a note is not activity"})
    assert order() == old
    service.record_inbound_message(
        InboundMessage(f"SM{uuid.uuid4().hex}", texted.phone_number, store.phone, "hi", {}),
        store.id,
        texted,
    )
    assert order()[0] == texted.id
    service.record_outbound_message(
        organization_id=store.id,
        lead_id=answered.id,
        external_id=f"follow_up:{uuid.uuid4().hex}",
        sender_kind="follow_up",
        from_number=store.phone,
        to_number=answered.phone_number,
        body="Thanks for calling!",
        params={},
        twilio_sid=None,
        status="queued",
        error_code=None,
    )
    assert order()[0] == answered.id
    service.record_call_summary(
        PostCall(conversation_id=f"conv_{uuid.uuid4().hex}", payload={}, summary="a call"),
        store.id,
        called,
    )
    assert order() == [called.id, answered.id, texted.id, noted.id]


def test_the_list_pages_with_its_cursor(
    stores: tuple[Store, Store], invoke: Invoke, db: Any
) -> None:
    store, _ = stores
    made = [
        add_lead(db, store, f"Lead {n}", created_at=f"now() - interval '{n} minutes'")
        for n in range(7)
    ]
    waiting = add_lead(db, store, "Waiting", human_control="true")
    add_text(db, waiting, "inbound", 100)

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": "3", **({"next": cursor} if cursor else {})}
        body = body_of(invoke(FUNCTION, request("list", store.claims, query=query)))
        seen += [item["id"] for item in body["leads"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == [waiting, *made]


# -- the inbox's cost and its ETag ------------------------------------------------------------


@pytest.fixture
def counted_app(counted: Runtime, app_env: dict[str, str]) -> Iterator[Runtime]:
    """The handler's runtime, its PostgreSQL and Redis traffic counted at the proxies."""
    runtime_module.set_runtime(counted)
    yield counted
    runtime_module.set_runtime(None)


def test_a_list_page_is_one_database_round_trip_and_an_unchanged_poll_none(
    stores: tuple[Store, Store],
    counted_app: Runtime,
    pg_proxy: TcpProxy,
    redis_proxy: TcpProxy,
    invoke: Invoke,
    db: Any,
) -> None:
    store, _ = stores
    for n in range(5):
        lead = add_lead(db, store, f"Lead {n}")
        add_text(db, lead, "inbound", n + 1)
        add_call(db, lead, n + 2)
    event = request("list", store.claims, query={"limit": "3"})
    invoke(FUNCTION, event)  # a warm container: its connections are open
    pg_proxy.reset_counters()
    redis_proxy.reset_counters()

    first = invoke(FUNCTION, event)
    page = (pg_proxy.round_trips, redis_proxy.round_trips)
    pg_proxy.reset_counters()
    redis_proxy.reset_counters()
    etag = header_of(first, "ETag")
    polled = invoke(
        FUNCTION,
        request("list", store.claims, query={"limit": "3"}, headers={"if-none-match": str(etag)}),
    )

    assert first["statusCode"] == 200 and len(body_of(first)["leads"]) == 3
    assert page == (1, 1)  # the page; the store's change counter
    assert polled["statusCode"] == 304 and not polled.get("body")
    assert header_of(polled, "ETag") == etag
    assert (pg_proxy.round_trips, redis_proxy.round_trips) == (0, 1)


def test_the_etag_changes_with_every_write_to_the_store_and_only_then(
    stores: tuple[Store, Store], jobs: Jobs, invoke: Invoke, db: Any
) -> None:
    store_a, store_b = stores
    lead_a, lead_b = add_lead(db, store_a, "Ada"), add_lead(db, store_b, "Bea")

    def etag(store: Store = store_a) -> str | None:
        return header_of(invoke(FUNCTION, request("list", store.claims)), "ETag")

    def poll(tag: str | None, store: Store = store_a) -> int:
        headers = {"if-none-match": str(tag)}
        return int(invoke(FUNCTION, request("list", store.claims, headers=headers))["statusCode"])

    start = etag()
    invoke(FUNCTION, request("patch", store_b.claims, lead_b, body={"notes": "elsewhere"}))
    after_other_store = poll(start)
    invoke(FUNCTION, request("patch", store_a.claims, lead_a, body={"notes": "here"}))
    after_patch = poll(start)
    patched = etag()
    invoke(FUNCTION, request("delete", store_a.claims, lead_a))
    after_delete = poll(patched)
    other_page = invoke(
        FUNCTION,
        request(
            "list", store_a.claims, query={"status": "hot"}, headers={"if-none-match": str(etag())}
        ),
    )

    assert start is not None and start.startswith('"')
    assert after_other_store == 304
    assert after_patch == 200 and patched != start
    assert after_delete == 200
    assert other_page["statusCode"] == 200  # another question, another ETag
    assert poll(etag(store_b), store_b) == 304


def test_every_write_path_of_a_store_bumps_its_counter(
    stores: tuple[Store, Store], invoke: Invoke, db: Any
) -> None:
    from leadlookup.domain.delivery import STATUS_RANK
    from leadlookup.domain.models import InboundMessage, PostCall

    store, _ = stores
    service = runtime_module.get_runtime().service
    key = service.keys.changes(store.id)
    client = redis.Redis.from_url(service.settings.redis_url or "", decode_responses=True)

    def value() -> int:
        return int(client.get(key) or -1)

    steps: list[tuple[str, int]] = []
    lead = service.find_or_create_lead(new_phone(), store.id)  # a new lead
    steps.append(("created", value()))
    service.record_inbound_message(
        InboundMessage(f"SM{uuid.uuid4().hex}", lead.phone_number, store.phone, "hi", {}),
        store.id,
        lead,
    )
    steps.append(("inbound", value()))
    sid = f"SM{uuid.uuid4().hex}"
    service.record_outbound_message(
        organization_id=store.id,
        lead_id=lead.id,
        external_id=f"reply:{sid}",
        sender_kind="agent",
        from_number=store.phone,
        to_number=lead.phone_number,
        body="hello",
        params={},
        twilio_sid=sid,
        status="queued",
        error_code=None,
    )
    steps.append(("outbound", value()))
    service.update_delivery_status(sid, "sent", None, STATUS_RANK)
    assert value() == steps[-1][1]  # a delivery that goes well changes nothing in the inbox
    service.update_delivery_status(sid, "undelivered", 30007, STATUS_RANK)
    steps.append(("delivery failed", value()))
    service.record_call_summary(
        PostCall(conversation_id=f"conv_{uuid.uuid4().hex}", payload={}, channel="sms"),
        store.id,
        lead,
    )
    steps.append(("text conversation report", value()))
    service.update_lead(lead.id, {"notes": "x"})
    steps.append(("patch", value()))
    service.mark_opted_out(lead.id)
    steps.append(("opt out", value()))
    service.delete_lead(lead.id)
    steps.append(("erasure", value()))
    client.close()

    values = [v for _, v in steps]
    assert all(later == earlier + 1 for earlier, later in itertools.pairwise(values)), steps


def test_a_lost_counter_never_lets_an_old_etag_match(
    stores: tuple[Store, Store], invoke: Invoke, db: Any
) -> None:
    store, _ = stores
    add_lead(db, store)
    service = runtime_module.get_runtime().service
    client = redis.Redis.from_url(service.settings.redis_url or "", decode_responses=True)
    old = header_of(invoke(FUNCTION, request("list", store.claims)), "ETag")

    # Redis restarted (or the key was evicted): the counter is gone, and comes back elsewhere.
    client.delete(service.keys.changes(store.id))
    polled = invoke(FUNCTION, request("list", store.claims, headers={"if-none-match": str(old)}))
    client.close()

    assert polled["statusCode"] == 200
    assert header_of(polled, "ETag") not in (None, old)


def test_counters_expire_after_their_last_bump_and_readers_never_renew_them(
    stores: tuple[Store, Store], invoke: Invoke, db: Any
) -> None:
    # A bump that fails leaves an ETag of changed data matching until the counter expires;
    # the TTL bounds that because only bumps renew it (lookups.CHANGES_TTL_S).
    store, _ = stores
    lead = add_lead(db, store)
    service = runtime_module.get_runtime().service
    client = redis.Redis.from_url(service.settings.redis_url or "", decode_responses=True)
    key = service.keys.changes(store.id)

    invoke(FUNCTION, request("list", store.claims))  # a reader makes the counter
    client.expire(key, 30)
    invoke(FUNCTION, request("list", store.claims))  # reading again does not renew it
    read_ttl = client.ttl(key)
    service.update_lead(lead, {"notes": "bumped"})
    bumped_ttl = client.ttl(key)
    all_ttl = client.ttl(service.keys.changes(None))
    client.close()

    assert 0 < read_ttl <= 30
    assert 30 < bumped_ttl <= CHANGES_TTL_S
    assert 0 < all_ttl <= CHANGES_TTL_S


def test_with_redis_down_the_list_answers_from_postgresql_without_an_etag(
    stores: tuple[Store, Store],
    settings: Settings,
    make_runtime: Callable[..., Runtime],
    invoke: Invoke,
    db: Any,
) -> None:
    store, _ = stores
    lead = add_lead(db, store)
    down = make_runtime(dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0"))
    runtime_module.set_runtime(down)

    listed = invoke(FUNCTION, request("list", store.claims))
    polled = invoke(FUNCTION, request("list", store.claims, headers={"if-none-match": "*"}))
    patched = invoke(FUNCTION, request("patch", store.claims, lead, body={"notes": "x"}))
    runtime_module.set_runtime(None)

    assert listed["statusCode"] == 200 and ids(listed) == [lead]
    assert header_of(listed, "ETag") is None
    assert polled["statusCode"] == 200
    assert patched["statusCode"] == 200  # the write commits; its bump is counted as failed


# -- the timeline ------------------------------------------------------------------------------


def test_the_timeline_merges_texts_calls_and_notes_newest_first_with_who_did_what(
    stores: tuple[Store, Store], invoke: Invoke, db: Any
) -> None:
    store, _ = stores
    lead = add_lead(db, store, "Ada")
    inbound = add_text(db, lead, "inbound", 30)
    call = add_call(db, lead, 20)
    add_text(db, lead, "outbound", 29, "agent", "delivered")
    taken = invoke(FUNCTION, request("patch", store.claims, lead, body={"human_control": True}))
    edited = invoke(FUNCTION, request("patch", store.claims, lead, body={"customer_name": "Ada L"}))

    page = invoke(FUNCTION, request("timeline", store.claims, lead, {"transcripts": "true"}))
    short = invoke(FUNCTION, request("timeline", store.claims, lead))

    assert (taken["statusCode"], edited["statusCode"]) == (200, 200)
    items = body_of(page)["items"]
    assert [item["kind"] for item in items] == ["note", "note", "call", "text", "text"]
    assert [item["text"] for item in items[:2]] == [
        "Edited customer_name",
        "Staff took over the conversation",
    ]
    who = {"sub": store.claims["sub"], "email": store.claims["email"]}
    assert [item["staff"] for item in items[:2]] == [who, who]
    assert items[2] | {"at": None} == {
        "kind": "call",
        "id": call,
        "at": None,
        "channel": "phone",
        "direction": "inbound",
        "duration_seconds": 48,
        "classification": "sales",
        "summary": "asked about gravel bikes",
        "conversation_id": f"conv_{call}",
        "staff": None,
        "transcript": [{"role": "user", "message": "Hi, it's Ada", "time_in_call_secs": 3}],
    }
    assert items[3]["sender_kind"] == "agent" and items[3]["status"] == "delivered"
    assert items[4]["id"] == inbound and items[4]["direction"] == "inbound"
    assert "transcript" not in body_of(short)["items"][2]
    assert body_of(page)["next"] is None


def test_the_timeline_pages_with_one_database_round_trip_each(
    stores: tuple[Store, Store],
    counted_app: Runtime,
    pg_proxy: TcpProxy,
    invoke: Invoke,
    db: Any,
) -> None:
    store, _ = stores
    lead = add_lead(db, store)
    made = [add_text(db, lead, "inbound", 10 * n + 1) for n in range(4)]
    made += [add_call(db, lead, 10 * n + 5) for n in range(3)]
    invoke(FUNCTION, request("timeline", store.claims, lead, {"limit": "1"}))  # warm
    expected = [
        row[0]
        for row in db.run(
            "SELECT id::text, created_at FROM messages WHERE lead_id = :id UNION ALL "
            "SELECT id::text, created_at FROM call_summaries WHERE lead_id = :id "
            "ORDER BY 2 DESC",
            id=lead,
        )
    ]

    seen: list[str] = []
    trips: list[int] = []
    cursor = None
    while True:
        pg_proxy.reset_counters()
        query = {"limit": "3", **({"next": cursor} if cursor else {})}
        body = body_of(invoke(FUNCTION, request("timeline", store.claims, lead, query)))
        trips.append(pg_proxy.round_trips)
        seen += [item["id"] for item in body["items"]]
        cursor = body["next"]
        if cursor is None:
            break

    assert seen == expected and sorted(seen) == sorted(made)
    assert trips == [1, 1, 1]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"limit": "0"}, "'limit' must be 1 to 100"),
        ({"next": "abc"}, "'next' is not a cursor"),
        ({"transcripts": "yes"}, "'transcripts' must be true or false"),
    ],
)
def test_the_timeline_refuses_bad_parameters(
    query: dict[str, str], named: str, stores: tuple[Store, Store], invoke: Invoke, db: Any
) -> None:
    store, _ = stores
    lead = add_lead(db, store)

    response = invoke(FUNCTION, request("timeline", store.claims, lead, query))

    assert response["statusCode"] == 400
    assert named in body_of(response)["message"]


def test_the_timeline_of_an_unknown_lead_is_404(
    stores: tuple[Store, Store], invoke: Invoke
) -> None:
    response = invoke(FUNCTION, request("timeline", claims_of("olga"), str(uuid.uuid4())))

    assert (response["statusCode"], body_of(response)) == (404, {"message": "lead not found"})


# -- who did what ------------------------------------------------------------------------------


def test_an_erasure_is_recorded_with_who_and_nothing_of_the_customer(
    stores: tuple[Store, Store], invoke: Invoke, db: Any
) -> None:
    store, _ = stores
    lead = add_lead(db, store, "Ada Lovelace")
    phone = db.run("SELECT phone_number_normalized FROM leads WHERE id = :id", id=lead)[0][0]
    add_text(db, lead, "inbound", 3, body="my address is 1 Main St")

    response = invoke(FUNCTION, request("delete", store.claims, lead))

    assert response["statusCode"] == 204
    rows = db.run("SELECT * FROM lead_erasures WHERE lead_id = :id", id=lead)
    assert len(rows) == 1
    record = dict(zip([c["name"] for c in db.columns], rows[0], strict=True))
    assert (record["organization_id"], record["staff_sub"], record["staff_email"]) == (
        uuid.UUID(store.id),
        store.claims["sub"],
        store.claims["email"],
    )
    text = json.dumps(record, default=str)
    assert phone not in text and "Ada" not in text and "Main St" not in text
    assert count(db, "SELECT count(*) FROM messages WHERE lead_id = :id", id=lead) == 0


def test_a_patch_that_lost_the_race_is_412_with_the_current_version(
    stores: tuple[Store, Store], invoke: Invoke, db: Any
) -> None:
    store, _ = stores
    lead = add_lead(db, store)

    first = invoke(
        FUNCTION,
        request("patch", store.claims, lead, body={"notes": "a"}, headers={"if-match": '"1"'}),
    )
    late = invoke(
        FUNCTION,
        request("patch", store.claims, lead, body={"notes": "b"}, headers={"if-match": '"1"'}),
    )

    assert first["statusCode"] == 200 and header_of(first, "ETag") == '"2"'
    assert late["statusCode"] == 412
    assert "changed" in body_of(late)["message"]
    assert body_of(late)["current_version"] == 2
