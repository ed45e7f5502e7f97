"""The inbound SMS path through the real handlers: webhook -> queue -> processor -> PostgreSQL.

PostgreSQL and Redis are real; only AWS (SQS) is mocked, with moto.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pg8000.native
import pytest
from moto import mock_aws

from devkit.sms_events import event_params, resign, set_params, sign_event
from leadlookup import container as runtime_module
from leadlookup.api import webhooks
from leadlookup.config import DEFAULT_ORGANIZATION_ID
from leadlookup.domain.phones import normalize_phone
from tests.conftest import EVENTS
from tests.support.faults import new_phone

WEBHOOK = "sms_webhook"
PROCESSOR = "sms_processor"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
STORE_NUMBER = "+17786528784"

# Expected answer of every sample webhook event: (status, rejection message or None for TwiML).
WEBHOOK_CASES: dict[str, tuple[int, str | None]] = {
    "signed.json": (200, None),
    "short_code.json": (200, None),
    "stop.json": (200, None),
    "forged.json": (403, "invalid X-Twilio-Signature header"),
    "unsigned.json": (403, "missing X-Twilio-Signature header"),
}
WEBHOOK_EVENTS = sorted((EVENTS / WEBHOOK).glob("*.json"))
PROCESSOR_EVENTS = sorted((EVENTS / PROCESSOR).glob("*.json"))

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]


# -- helpers -------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def webhook_sample(name: str) -> dict[str, Any]:
    return load(EVENTS / WEBHOOK / name)


def fields_of(event: dict[str, Any]) -> dict[str, Any]:
    return webhooks.form_fields(event_params(event))


def new_sid() -> str:
    return "SM" + uuid.uuid4().hex


def variant(name: str, signed: bool = True, **overrides: str | None) -> dict[str, Any]:
    """A sample webhook event with fields replaced (None removes one), re-signed if ``signed``."""
    event = webhook_sample(name)
    pairs = []
    for field, value in event_params(event):
        replaced = overrides.get(field, value)
        if replaced is not None:
            pairs.append((field, replaced))
    set_params(event, pairs)
    if signed:
        sign_event(event)
    else:
        event["headers"].pop("x-twilio-signature", None)
    return event


def fresh(name: str = "signed.json", **overrides: str | None) -> dict[str, Any]:
    """A sample event as a new message (new MessageSid) from a new sender unless given."""
    sid = new_sid()
    values: dict[str, str | None] = {"MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid}
    values["From"] = new_phone()
    values.update(overrides)
    return variant(name, **values)


def json_body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def content_type(response: dict[str, Any]) -> str | None:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return headers.get("content-type")


def sqs_record(
    body: str, group: str, message_id: str | None = None, dedup: str | None = None
) -> dict[str, Any]:
    """One SQS FIFO record shaped like the sample batch's records."""
    record = copy.deepcopy(load(PROCESSOR_EVENTS[0])["Records"][0])
    record["messageId"] = message_id or str(uuid.uuid4())
    record["body"] = body
    record["md5OfBody"] = hashlib.md5(body.encode()).hexdigest()  # noqa: S324 - SQS's checksum
    record["attributes"]["MessageGroupId"] = group
    record["attributes"]["MessageDeduplicationId"] = dedup or record["messageId"]
    return record


def message_record(**overrides: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A well-formed record for a new message, and its fields."""
    fields = fields_of(fresh(**overrides))
    body = json.dumps(fields)
    group = webhooks.message_group_id(fields["To"], fields["From"])
    return sqs_record(body, group, dedup=fields["MessageSid"]), fields


def failures(result: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in result["batchItemFailures"]]


def message_rows(db: pg8000.native.Connection, sid: str) -> list[dict[str, Any]]:
    rows = db.run(
        "SELECT external_id, lead_id::text, organization_id::text, direction, from_number,"
        " to_number, body, params FROM messages WHERE external_id = :sid",
        sid=sid,
    )
    names = ["external_id", "lead_id", "organization_id", "direction", "from_number"]
    names += ["to_number", "body", "params"]
    return [dict(zip(names, row, strict=True)) for row in rows]


def lead_rows(db: pg8000.native.Connection, phone: str) -> list[dict[str, Any]]:
    digits = normalize_phone(phone) or phone.lstrip("+")
    rows = db.run(
        "SELECT id::text, organization_id::text, last_contact_at, opted_out_at FROM leads"
        " WHERE phone_number_normalized = :digits OR phone_number = :phone",
        digits=digits,
        phone=phone,
    )
    names = ["id", "organization_id", "last_contact_at", "opted_out_at"]
    return [dict(zip(names, row, strict=True)) for row in rows]


def table_counts(db: pg8000.native.Connection) -> tuple[int, int]:
    row = db.run("SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM leads)")[0]
    return int(row[0]), int(row[1])


def reset_runtime() -> None:
    runtime_module.set_runtime(None)


# -- sample events -------------------------------------------------------------------------


def test_sms_webhook_events_each_have_an_expectation() -> None:
    assert sorted(p.name for p in WEBHOOK_EVENTS) == sorted(WEBHOOK_CASES)
    assert [p.name for p in PROCESSOR_EVENTS] == ["sqs_batch.json"]


@pytest.mark.parametrize("path", WEBHOOK_EVENTS, ids=lambda p: p.name)
def test_sms_webhook_sample_event_answers_as_expected(
    path: Path, app_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    status, rejection = WEBHOOK_CASES[path.name]
    event = load(path)
    fields = fields_of(event)
    before = table_counts(db)

    response = invoke(WEBHOOK, event)

    assert response["statusCode"] == status
    rows = message_rows(db, fields["MessageSid"])
    if rejection is None:
        assert content_type(response) == "text/xml"
        assert response["body"] == TWIML
        assert len(rows) == 1
        assert rows[0]["params"] == fields
        assert rows[0]["body"] == fields["Body"]
        assert rows[0]["organization_id"] == DEFAULT_ORGANIZATION_ID
    else:
        assert content_type(response) == "application/json"
        assert json_body(response) == {"message": rejection}
        assert rows == []
        assert lead_rows(db, fields["From"]) == []
        assert table_counts(db) == before


def test_sms_webhook_sample_events_carry_realistic_twilio_fields() -> None:
    for path in WEBHOOK_EVENTS:
        event = load(path)
        fields = fields_of(event)

        assert event["isBase64Encoded"] is True
        assert event["headers"]["content-type"] == "application/x-www-form-urlencoded"
        assert fields["To"] == STORE_NUMBER
        assert fields["ApiVersion"] == "2010-04-01"
        assert fields["AccountSid"].startswith("AC")
        assert len(fields["MessageSid"]) == 34 and fields["MessageSid"].startswith("SM")
        assert fields["FromZip"] == "" and fields["ToZip"] == ""


def test_sms_events_resign_reproduces_the_sample_signatures(tmp_path: Path) -> None:
    copied = tmp_path / WEBHOOK
    copied.mkdir()
    for path in WEBHOOK_EVENTS:
        event = load(path)
        event["headers"].pop("x-twilio-signature", None)
        (copied / path.name).write_text(json.dumps(event))

    signed = resign(tmp_path)

    assert sorted(p.name for p in signed) == [
        "forged.json",
        "short_code.json",
        "signed.json",
        "stop.json",
    ]
    for path in WEBHOOK_EVENTS:
        original = load(path)["headers"].get("x-twilio-signature")
        assert load(copied / path.name)["headers"].get("x-twilio-signature") == original


def test_sms_processor_sample_batch_stores_every_message(
    app_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    event = load(PROCESSOR_EVENTS[0])

    result = invoke(PROCESSOR, event)

    assert result == {"batchItemFailures": []}
    for record in event["Records"]:
        fields = json.loads(record["body"])
        assert record["attributes"]["MessageDeduplicationId"] == fields["MessageSid"]
        assert record["eventSourceARN"].endswith(".fifo")
        rows = message_rows(db, fields["MessageSid"])
        assert len(rows) == 1
        assert [lead["id"] for lead in lead_rows(db, fields["From"])] == [rows[0]["lead_id"]]


# -- webhook behaviour (in-process hand-off) ----------------------------------------------


def test_sms_webhook_stores_the_message_and_touches_the_lead(
    app_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    event = fresh()
    fields = fields_of(event)

    response = invoke(WEBHOOK, event)

    assert response["statusCode"] == 200
    [row] = message_rows(db, fields["MessageSid"])
    [lead] = lead_rows(db, fields["From"])
    assert row["lead_id"] == lead["id"]
    assert row["direction"] == "inbound"
    assert (row["from_number"], row["to_number"]) == (fields["From"], STORE_NUMBER)
    assert lead["last_contact_at"] is not None
    assert lead["opted_out_at"] is None


def test_sms_webhook_same_message_twice_stores_one_row(
    app_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    event = fresh()
    fields = fields_of(event)

    first = invoke(WEBHOOK, copy.deepcopy(event))
    second = invoke(WEBHOOK, copy.deepcopy(event))

    assert (first["statusCode"], second["statusCode"]) == (200, 200)
    assert second["body"] == TWIML
    assert len(message_rows(db, fields["MessageSid"])) == 1
    assert len(lead_rows(db, fields["From"])) == 1


def test_sms_webhook_short_code_stores_the_message_without_a_lead(
    app_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    event = fresh("short_code.json", From="22395")
    fields = fields_of(event)

    response = invoke(WEBHOOK, event)

    assert response["statusCode"] == 200
    [row] = message_rows(db, fields["MessageSid"])
    assert row["lead_id"] is None
    assert row["from_number"] == "22395"
    assert lead_rows(db, "22395") == []


def test_sms_webhook_stop_sets_opted_out_at_and_start_clears_it(
    app_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    sender = new_phone()

    stop = invoke(WEBHOOK, fresh("stop.json", From=sender))
    [after_stop] = lead_rows(db, sender)
    start = invoke(WEBHOOK, fresh("stop.json", From=sender, Body=" start "))
    [after_start] = lead_rows(db, sender)

    assert (stop["statusCode"], start["statusCode"]) == (200, 200)
    assert after_stop["opted_out_at"] is not None
    assert after_start["opted_out_at"] is None
    assert after_start["id"] == after_stop["id"]


def test_sms_webhook_sample_stop_opts_its_sender_out(
    app_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    event = webhook_sample("stop.json")
    sender = fields_of(event)["From"]

    response = invoke(WEBHOOK, event)

    assert response["statusCode"] == 200
    [lead] = lead_rows(db, sender)
    assert lead["opted_out_at"] is not None


def test_sms_webhook_stores_every_field_including_blank_and_new_ones(
    app_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    event = fresh()
    pairs = [*event_params(event), ("AddedByTwilioLater", "x"), ("Blank", "")]
    set_params(event, pairs)
    sign_event(event)

    response = invoke(WEBHOOK, event)

    assert response["statusCode"] == 200
    [row] = message_rows(db, dict(pairs)["MessageSid"])
    assert row["params"] == webhooks.form_fields(pairs)
    assert row["params"]["Blank"] == ""


def test_sms_webhook_tampered_field_is_rejected_and_writes_nothing(
    app_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    event = fresh()
    fields = fields_of(event)
    pairs = [(n, "Send me your card number" if n == "Body" else v) for n, v in event_params(event)]
    set_params(event, pairs)
    before = table_counts(db)

    response = invoke(WEBHOOK, event)

    assert response["statusCode"] == 403
    assert json_body(response) == {"message": "invalid X-Twilio-Signature header"}
    assert message_rows(db, fields["MessageSid"]) == []
    assert table_counts(db) == before


def test_sms_webhook_without_message_sid_is_400_naming_it(
    app_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    event = fresh(MessageSid=None)
    before = table_counts(db)

    response = invoke(WEBHOOK, event)

    assert response["statusCode"] == 400
    assert json_body(response) == {"message": "field 'MessageSid' is required"}
    assert table_counts(db) == before


def test_sms_webhook_body_over_the_limit_is_413(
    app_env: dict[str, str],
    invoke: Invoke,
    db: pg8000.native.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "2048")
    reset_runtime()
    event = fresh(Body="x" * 2048)
    before = table_counts(db)

    response = invoke(WEBHOOK, event)

    assert response["statusCode"] == 413
    assert json_body(response) == {"message": "body is larger than 2048 bytes"}
    assert table_counts(db) == before


def test_sms_webhook_without_auth_token_fails_closed(
    app_env: dict[str, str],
    invoke: Invoke,
    db: pg8000.native.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    monkeypatch.delenv("TWILIO_AUTH_TOKEN_ARN", raising=False)
    reset_runtime()
    event = fresh()
    before = table_counts(db)

    response = invoke(WEBHOOK, event)

    assert response["statusCode"] == 403
    assert json_body(response) == {"message": "Twilio auth token is not configured"}
    assert table_counts(db) == before


def test_sms_webhook_allow_unsigned_accepts_an_unsigned_request(
    app_env: dict[str, str],
    invoke: Invoke,
    db: pg8000.native.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALLOW_UNSIGNED_WEBHOOKS", "true")
    reset_runtime()
    sid = new_sid()
    event = variant("unsigned.json", signed=False, MessageSid=sid, From=new_phone())

    response = invoke(WEBHOOK, event)

    assert response["statusCode"] == 200
    assert len(message_rows(db, sid)) == 1


def test_sms_webhook_behind_public_base_url_with_a_stage(
    app_env: dict[str, str],
    invoke: Invoke,
    db: pg8000.native.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://sms.bici.example/")
    reset_runtime()
    event = fresh()
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/prod/webhooks/twilio/sms"
    event["requestContext"]["stage"] = "prod"
    event["rawQueryString"] = "store=vancouver"
    sign_event(event, public_base_url="https://sms.bici.example")

    response = invoke(WEBHOOK, event)

    assert response["statusCode"] == 200
    assert len(message_rows(db, fields_of(event)["MessageSid"])) == 1


# -- the queue -----------------------------------------------------------------------------


def test_sms_webhook_enqueues_to_sqs_and_the_processor_stores_it(
    app_env: dict[str, str],
    aws_env: None,
    invoke: Invoke,
    db: pg8000.native.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = webhook_sample("signed.json")
    fields = fields_of(event)
    db.run("DELETE FROM messages WHERE external_id = :sid", sid=fields["MessageSid"])
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        name = f"inbound-sms-{uuid.uuid4().hex[:8]}.fifo"
        attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
        queue_url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        monkeypatch.setenv("INBOUND_SMS_QUEUE_URL", queue_url)
        reset_runtime()

        response = invoke(WEBHOOK, copy.deepcopy(event))
        stored_before_processing = message_rows(db, fields["MessageSid"])
        received = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        )["Messages"]

    assert response["statusCode"] == 200
    assert response["body"] == TWIML
    assert stored_before_processing == []
    [message] = received
    assert message["Attributes"]["MessageDeduplicationId"] == fields["MessageSid"]
    assert message["Attributes"]["MessageGroupId"] == f"{STORE_NUMBER}:{fields['From']}"
    assert json.loads(message["Body"]) == fields

    sqs_event = {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message["Attributes"],
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn["Attributes"]["QueueArn"],
                "awsRegion": "us-east-1",
            }
        ]
    }
    result = invoke(PROCESSOR, sqs_event)

    assert result == {"batchItemFailures": []}
    [row] = message_rows(db, fields["MessageSid"])
    assert row["params"] == fields
    assert row["lead_id"] == lead_rows(db, fields["From"])[0]["id"]


def test_sms_webhook_queue_unreachable_is_503(
    app_env: dict[str, str],
    aws_env: None,
    invoke: Invoke,
    db: pg8000.native.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INBOUND_SMS_QUEUE_URL", "http://127.0.0.1:1/123456789012/inbound.fifo")
    reset_runtime()
    event = fresh()
    before = table_counts(db)

    response = invoke(WEBHOOK, event)

    assert response["statusCode"] == 503
    assert content_type(response) == "application/json"
    assert json_body(response) == {"message": "queue is unreachable"}
    assert table_counts(db) == before


# -- the processor -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_body",
    ["not json", '{"Body": "no sid"}', "[]", '{"MessageSid": 5}', ""],
    ids=["not-json", "no-sid", "array", "sid-not-text", "empty"],
)
def test_sms_processor_reports_exactly_the_malformed_record(
    bad_body: str, app_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    first, first_fields = message_record()
    last, last_fields = message_record()
    bad = sqs_record(bad_body, f"{STORE_NUMBER}:{new_phone()}")

    result = invoke(PROCESSOR, {"Records": [first, bad, last]})

    assert failures(result) == [bad["messageId"]]
    assert len(message_rows(db, first_fields["MessageSid"])) == 1
    assert len(message_rows(db, last_fields["MessageSid"])) == 1


def test_sms_processor_holds_back_the_rest_of_a_failed_group(
    app_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    sender = new_phone()
    bad = sqs_record("not json", f"{STORE_NUMBER}:{sender}")
    later, later_fields = message_record(From=sender)
    other, other_fields = message_record()

    result = invoke(PROCESSOR, {"Records": [bad, later, other]})

    assert failures(result) == [bad["messageId"], later["messageId"]]
    assert message_rows(db, later_fields["MessageSid"]) == []
    assert len(message_rows(db, other_fields["MessageSid"])) == 1


def test_sms_processor_redelivery_stores_one_row(
    app_env: dict[str, str], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    record, fields = message_record()
    again = dict(record, messageId=str(uuid.uuid4()))

    first = invoke(PROCESSOR, {"Records": [record]})
    second = invoke(PROCESSOR, {"Records": [again]})

    assert failures(first) == failures(second) == []
    assert len(message_rows(db, fields["MessageSid"])) == 1


def test_sms_processor_database_down_fails_every_record_then_recovers(
    app_env: dict[str, str],
    invoke: Invoke,
    db: pg8000.native.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = [message_record(), message_record()]
    event = {"Records": [record for record, _ in records]}
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/postgres")
    reset_runtime()

    down = invoke(PROCESSOR, copy.deepcopy(event))
    monkeypatch.setenv("DATABASE_URL", app_env["DATABASE_URL"])
    reset_runtime()
    stored_while_down = [message_rows(db, fields["MessageSid"]) for _, fields in records]
    retried = invoke(PROCESSOR, copy.deepcopy(event))

    assert failures(down) == [record["messageId"] for record, _ in records]
    assert stored_while_down == [[], []]
    assert failures(retried) == []
    for _, fields in records:
        assert len(message_rows(db, fields["MessageSid"])) == 1
