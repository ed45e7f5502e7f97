"""Cache administration actions and the migrations custom resource, through their handlers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest

from leadlookup.adapters import custom_resource
from leadlookup.config import DEFAULT_ORGANIZATION_ID, Settings
from leadlookup.container import get_runtime, set_runtime
from leadlookup.errors import Unavailable
from tests.conftest import EVENTS
from tests.support.db import execute, scalar
from tests.support.faults import new_phone
from tests.support.redis_servers import free_port

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]
ADMIN = "cache_admin"
DEFAULT_ORG = DEFAULT_ORGANIZATION_ID


def _event(function_dir: str, name: str) -> dict[str, Any]:
    return json.loads((EVENTS / function_dir / f"{name}.json").read_text())


def test_admin_status_reports_the_cache_and_breaker(
    app_env: dict[str, str], invoke: Invoke
) -> None:
    answer = invoke(ADMIN, _event(ADMIN, "status"))

    assert answer["ok"] is True
    result = answer["result"]
    assert (result["enabled"], result["breaker"]) == (True, "closed")
    assert result["server"]["connected"] is True
    assert "keyspace_hits" in result["server"]


def test_admin_flush_lead_makes_the_next_lookup_a_miss(
    app_env: dict[str, str], invoke: Invoke
) -> None:
    service = get_runtime().service
    service.find_or_create_lead("+16045550142", DEFAULT_ORGANIZATION_ID)

    answer = invoke(ADMIN, _event(ADMIN, "flush_lead"))

    assert answer == {"ok": True, "action": "flush_lead", "result": {"flushed": True}}
    key = service.leads.key("16045550142", DEFAULT_ORGANIZATION_ID)
    assert service.leads.peek(key) is None


def test_admin_flush_all_removes_only_this_prefix(app_env: dict[str, str], invoke: Invoke) -> None:
    service = get_runtime().service
    service.find_or_create_lead(new_phone(), DEFAULT_ORGANIZATION_ID)
    service.get_organization_by_phone("+17786528784")
    import redis

    client = redis.Redis.from_url(app_env["REDIS_URL"])
    client.set("someone-else:key", "1")

    answer = invoke(ADMIN, {"action": "flush_all"})

    # A lead and an organization: each a value and its stale copy; the new lead's store's
    # change counter and all stores' (the staff inbox's ETag).
    assert answer["ok"] is True and answer["result"]["deleted_keys"] == 6
    assert client.get("someone-else:key") == b"1"
    client.delete("someone-else:key")
    client.close()


def test_admin_upsert_of_the_default_organization_is_visible_at_once_for_every_number(
    app_env: dict[str, str],
    invoke: Invoke,
    database_url: str,
    make_runtime: Callable[..., Any],
    settings: Settings,
) -> None:
    service = get_runtime().service
    other = make_runtime(replace(settings, cache_key_prefix=app_env["CACHE_KEY_PREFIX"]))
    strangers = ["+16045550111", "+16045550112", None]  # no store's numbers, and none at all
    for number in strangers:  # cached as the default store under their own keys, two containers
        assert service.get_organization_by_phone(number).name == "BICI Bike Store"
        assert other.service.get_organization_by_phone(number).name == "BICI Bike Store"
    default = service.repo.organization(DEFAULT_ORGANIZATION_ID, None)
    assert default is not None
    edited = {**default.to_json(), "name": "BICI Bike Store (renamed)"}

    try:
        answer = invoke(ADMIN, {"action": "upsert_org", "organization": edited})
        seen = [service.get_organization_by_phone(n).name for n in strangers]
        # Another container: its in-process copies live ORG_L1_TTL_SECONDS; Redis must not.
        other.service._org_l1.clear()
        seen_elsewhere = [other.service.get_organization_by_phone(n).name for n in strangers]
    finally:
        execute(
            database_url,
            "UPDATE organizations SET name = :name WHERE id = :id",
            name=default.name,
            id=DEFAULT_ORGANIZATION_ID,
        )
        invoke(ADMIN, {"action": "flush_all"})

    assert answer["ok"] is True
    assert seen == seen_elsewhere == ["BICI Bike Store (renamed)"] * 3


def test_admin_upsert_org_creates_then_moves_a_store_and_invalidates_its_keys(
    app_env: dict[str, str], invoke: Invoke, database_url: str
) -> None:
    event = _event(ADMIN, "upsert_org")
    service = get_runtime().service
    before = service.get_organization_by_phone("+16045550100")  # cached: the default store

    created = invoke(ADMIN, event)
    found = service.get_organization_by_phone("+16045550100")
    event["organization"]["phone_number"] = "+16045550101"
    moved = invoke(ADMIN, event)

    assert before.id == DEFAULT_ORGANIZATION_ID
    assert created["ok"] is True and found.name == "BICI Bike Store - North Shore"
    assert moved["result"]["phone_number_normalized"] == "16045550101"
    assert service.get_organization_by_phone("+16045550100").id == DEFAULT_ORGANIZATION_ID
    assert service.get_organization_by_phone("+16045550101").id == event["organization"]["id"]
    execute(
        database_url, "DELETE FROM organizations WHERE id = :id", id=event["organization"]["id"]
    )


def test_admin_upsert_org_spoken_name_is_what_the_greeting_says(
    app_env: dict[str, str], invoke: Invoke, database_url: str
) -> None:
    event = _event(ADMIN, "upsert_org")
    event["organization"]["phone_number"] = "+16045550102"
    call = {"caller_id": "anonymous", "called_number": "+16045550102", "call_sid": "CA1"}
    initiation = _event("conversation_initiation", "anonymous_caller") | {"body": json.dumps(call)}

    invoke(ADMIN, event)
    spoken = json.loads(invoke("conversation_initiation", initiation)["body"])
    event["organization"]["settings"].pop("spoken_name")
    invoke(ADMIN, event)
    plain = json.loads(invoke("conversation_initiation", initiation)["body"])

    assert spoken["dynamic_variables"]["dynamic_greeting"].startswith(
        "Hey there! Thanks for calling Bee-chee Bike Store North Shore. "
    )
    assert plain["dynamic_variables"]["dynamic_greeting"].startswith(
        "Hey there! Thanks for calling BICI Bike Store - North Shore. "
    )
    execute(
        database_url, "DELETE FROM organizations WHERE id = :id", id=event["organization"]["id"]
    )


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({"action": "drop_tables"}, "action must be one of"),
        ({}, "action must be one of"),
        ({"action": "flush_lead", "phone": "anonymous"}, "not a phone number"),
        ({"action": "upsert_org", "organization": {"name": "x"}}, "phone_number"),
        (
            {
                "action": "upsert_org",
                "organization": {
                    "name": "x",
                    "phone_number": "+16045550100",
                    "settings": {"spoken_name": 7},
                },
            },
            "settings.spoken_name",
        ),
    ],
)
def test_admin_bad_requests_are_refused_with_a_message(
    event: dict[str, Any], named: str, app_env: dict[str, str], invoke: Invoke
) -> None:
    answer = invoke(ADMIN, event)

    assert answer["ok"] is False and answer["status"] == 400
    assert named in answer["message"]


@pytest.mark.parametrize(
    "event",
    [
        {"action": "flush_all"},
        {
            "action": "flush_lead",
            "phone": "+16045550142",
            "organization_id": DEFAULT_ORGANIZATION_ID,
        },
        {"action": "flush_org", "phone": "+17786528784"},
    ],
)
def test_admin_flush_with_redis_down_raises_once_logged(
    event: dict[str, Any],
    app_env: dict[str, str],
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    set_runtime(None)

    with pytest.raises(Unavailable, match=r"^redis is unavailable; nothing was flushed$"):
        invoke(ADMIN, event)

    failures = [r for r in caplog.records if r.getMessage() == "cache admin action failed"]
    assert [(r.action, r.error_type) for r in failures] == [(event["action"], "Unavailable")]  # type: ignore[attr-defined]


def test_admin_purge_with_the_database_down_raises_so_its_alarm_fires(
    app_env: dict[str, str], invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    set_runtime(None)

    with pytest.raises(Unavailable, match="database is unreachable"):
        invoke(ADMIN, _event(ADMIN, "scheduled_purge"))


def test_admin_scheduled_purge_deletes_only_rows_past_retention(
    app_env: dict[str, str], invoke: Invoke, database_url: str
) -> None:
    for sid, age in (("SMpurge-old", 400), ("SMpurge-new", 10)):
        execute(
            database_url,
            "INSERT INTO messages (organization_id, external_id, direction, created_at) "
            "VALUES (:org, :sid, 'inbound', now() - make_interval(days => :age))",
            org=DEFAULT_ORGANIZATION_ID,
            sid=sid,
            age=age,
        )

    answer = invoke(ADMIN, _event(ADMIN, "scheduled_purge"))

    assert answer["ok"] is True and answer["result"]["retention_days"] == 365
    assert answer["result"]["deleted"]["messages"] >= 1
    remaining = scalar(
        database_url,
        "SELECT string_agg(external_id, ',') FROM messages WHERE external_id LIKE 'SMpurge-%'",
    )
    assert remaining == "SMpurge-new"


class _Recorder(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_PUT(self) -> None:
        length = int(self.headers["content-length"])
        _Recorder.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def cloudformation(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local stand-in for CloudFormation's pre-signed response URL."""
    # The handler answers only https on amazonaws.com unless loopback is allowed (local).
    monkeypatch.setenv("ALLOW_LOOPBACK_RESPONSE_URL", "true")
    _Recorder.bodies = []
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/response", _Recorder.bodies
    server.shutdown()
    thread.join(timeout=5)


def _custom_resource(name: str, url: str) -> dict[str, Any]:
    event = _event("migrate", name)
    event["ResponseURL"] = url
    return event


def test_migrate_create_answers_success_to_cloudformation(
    app_env: dict[str, str], invoke: Invoke, cloudformation: tuple[str, list[dict[str, Any]]]
) -> None:
    url, answers = cloudformation

    answer = invoke("migrate", _custom_resource("create", url))

    assert answers == [answer]
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == "bici-lookups-schema"
    assert answer["Data"] == {"Applied": "none"}  # the session database is already migrated


def test_migrate_delete_answers_success_without_touching_the_database(
    app_env: dict[str, str],
    invoke: Invoke,
    cloudformation: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, answers = cloudformation
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    set_runtime(None)

    answer = invoke("migrate", _custom_resource("delete", url))

    assert answers[0]["Status"] == answer["Status"] == "SUCCESS"


def test_migrate_failure_answers_failed_without_database_text(
    cloudformation: tuple[str, list[dict[str, Any]]],
) -> None:
    url, answers = cloudformation

    def broken() -> list[str]:
        raise RuntimeError('Failing row contains (+16045550142, "Ada")')

    answer = custom_resource.handle(_custom_resource("create", url), lambda: 60_000, broken)

    assert answers == [answer] and answer["Status"] == "FAILED"
    assert "6045550142" not in answer["Reason"] and "Failing row" not in answer["Reason"]


def test_migrate_retries_with_backoff_while_the_database_comes_up() -> None:
    attempts: list[int] = []
    sleeps: list[float] = []

    def flaky() -> list[str]:
        attempts.append(1)
        if len(attempts) < 4:
            raise Unavailable("database is unreachable")
        return ["0001_schema"]

    applied = custom_resource.migrate_with_retry(flaky, lambda: 600_000, sleeps.append)

    assert applied == ["0001_schema"] and len(attempts) == 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_migrate_gives_up_in_time_to_answer_cloudformation() -> None:
    remaining = iter([20_000, 16_000, 15_500])

    def down() -> list[str]:
        raise Unavailable("database is unreachable")

    with pytest.raises(Unavailable):
        custom_resource.migrate_with_retry(down, lambda: next(remaining), lambda _s: None)
