"""Races through the real handlers, each side in its own forked process (its own container).

Each race runs a few rounds, released together by one event, so both sides really overlap.
"""

from __future__ import annotations

import copy
import json

import pytest
import redis

from leadlookup.adapters.cache import CacheKeys
from leadlookup.adapters.cache.base import value_seq
from leadlookup.config import DEFAULT_ORGANIZATION_ID
from tests.support.db import scalar
from tests.support.faults import (
    TWIML,
    Figures,
    dynamic_variables,
    initiation_event,
    insert_lead,
    invoke_concurrently,
    lead_row,
    leads_for,
    message_counts,
    new_phone,
    patch_event,
    post_call_event,
    sms_event,
    sms_fields,
    sqs_record,
)

INITIATION = "conversation_initiation"
LEADS = "lead_update"
POST_CALL = "post_call_webhook"
WEBHOOK = "sms_webhook"
PROCESSOR = "sms_processor"
FIRST_CONTACTS = 8
ROUNDS = 4


def test_race_concurrent_first_contacts_through_initiation_make_one_lead(
    fault_env: dict[str, str],
    database_url: str,
    figures: Figures,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    figures.fault = f"{FIRST_CONTACTS} first contacts of one new caller at once (processes)"
    # Eight cold containers on two cores overrun the suite's short deadline, and a degraded
    # answer creates no lead: the race needs the lookups to run to the end.
    monkeypatch.setenv("INITIATION_DEADLINE_MS", "15000")
    caller = new_phone()

    answers = invoke_concurrently([(INITIATION, initiation_event(caller))] * FIRST_CONTACTS)
    lead_ids = set()
    for answer, ms in answers:
        body = json.loads(answer.get("body") or "{}")
        lead_id = body.get("dynamic_variables", {}).get("lead_id")
        lead_ids.add(lead_id)
        figures.record("race", ms, answer.get("statusCode") == 200 and bool(lead_id), str(answer))
    rows = leads_for(database_url, caller)
    figures.rows_lost = int(not rows)
    figures.rows_duplicated = max(0, len(rows) - 1)
    figures.notes["distinct_lead_ids"] = len(lead_ids)

    assert figures.failures == 0, figures.failed
    assert len(rows) == 1
    assert lead_ids == {rows[0]}


def test_race_two_patches_with_the_same_if_match_one_wins(
    fault_env: dict[str, str], database_url: str, figures: Figures
) -> None:
    figures.fault = 'two PATCHes with If-Match: "1" at once (processes)'
    outcomes = []

    for round_ in range(ROUNDS):
        lead_id = insert_lead(database_url, new_phone(), DEFAULT_ORGANIZATION_ID)
        calls = [(LEADS, patch_event(lead_id, {"notes": f"writer {n}"}, '"1"')) for n in range(2)]
        answers = invoke_concurrently(calls)
        statuses = sorted(int(a.get("statusCode", 0)) for a, _ in answers)
        row = lead_row(database_url, lead_id)
        winner = next((a for a, _ in answers if a.get("statusCode") == 200), None)
        won_notes = json.loads(winner["body"])["notes"] if winner else None
        right = statuses == [200, 412] and row is not None
        right = right and row is not None and (row["notes"], row["version"]) == (won_notes, 2)
        for answer, ms in answers:
            figures.record("race", ms, right, f"round {round_}: {statuses} {answer}")
        outcomes.append(statuses)
    figures.notes["outcomes"] = outcomes

    assert figures.failures == 0, figures.failed
    assert outcomes == [[200, 412]] * ROUNDS


def test_race_same_sms_twice_at_once_stores_one_row(
    fault_env: dict[str, str], database_url: str, figures: Figures
) -> None:
    figures.fault = "one SMS delivered twice at once, to the webhook and to the processor"
    sids = []

    for _ in range(ROUNDS):
        event = sms_event(new_phone())
        sids.append(sms_fields(event)["MessageSid"])
        for answer, ms in invoke_concurrently([(WEBHOOK, event), (WEBHOOK, copy.deepcopy(event))]):
            ok = answer.get("statusCode") == 200 and answer.get("body") == TWIML
            figures.record("webhook", ms, ok, str(answer))
        fields = sms_fields(sms_event(new_phone()))
        sids.append(fields["MessageSid"])
        record = sqs_record(fields)
        again = sqs_record(fields)  # a redelivery: another SQS message id, the same MessageSid
        answers = invoke_concurrently(
            [(PROCESSOR, {"Records": [record]}), (PROCESSOR, {"Records": [again]})]
        )
        for answer, ms in answers:
            figures.record("processor", ms, answer == {"batchItemFailures": []}, str(answer))
    counts = message_counts(database_url, sids)
    figures.rows_lost = sum(1 for n in counts.values() if n == 0)
    figures.rows_duplicated = sum(n - 1 for n in counts.values() if n > 1)

    assert figures.failures == 0, figures.failed
    assert counts == {sid: 1 for sid in sids}


def test_race_post_call_redelivered_at_once_records_one_summary(
    fault_env: dict[str, str], database_url: str, figures: Figures
) -> None:
    figures.fault = "one post-call webhook delivered twice at once"
    increments = []

    for _ in range(ROUNDS):
        lead_id = insert_lead(database_url, new_phone(), DEFAULT_ORGANIZATION_ID)
        event, conversation_id = post_call_event(lead_id)
        answers = invoke_concurrently([(POST_CALL, event), (POST_CALL, copy.deepcopy(event))])
        for answer, ms in answers:
            ok = answer.get("statusCode") == 200 and json.loads(answer["body"]) == {"status": "ok"}
            figures.record("race", ms, ok, str(answer))
        summaries = scalar(
            database_url,
            "SELECT count(*) FROM call_summaries WHERE conversation_id = :c",
            c=conversation_id,
        )
        row = lead_row(database_url, lead_id)
        assert row is not None
        increments.append((int(summaries), row["interaction_count"], row["version"]))
    figures.rows_lost = sum(1 for s, _, _ in increments if s == 0)
    figures.rows_duplicated = sum(s - 1 for s, _, _ in increments if s > 1)
    figures.notes["summaries_increments_versions"] = increments

    assert figures.failures == 0, figures.failed
    assert increments == [(1, 1, 2)] * ROUNDS


def test_race_writes_at_once_leave_the_newest_committed_row_in_the_cache(
    fault_env: dict[str, str], database_url: str, figures: Figures
) -> None:
    figures.fault = "two PATCHes and an SMS to one cached caller at once (processes), then a call"
    cache = redis.Redis.from_url(fault_env["REDIS_URL"], decode_responses=True)
    keys = CacheKeys(fault_env["CACHE_KEY_PREFIX"])
    outcomes = []

    for round_ in range(ROUNDS):
        caller = new_phone()
        ((known, _),) = invoke_concurrently([(INITIATION, initiation_event(caller))])
        lead_id = (dynamic_variables(known) or {}).get("lead_id", "")
        calls = [(LEADS, patch_event(lead_id, {"customer_name": f"Writer {n}"})) for n in range(2)]
        calls.append((PROCESSOR, {"Records": [sqs_record(sms_fields(sms_event(caller)))]}))
        writes = invoke_concurrently(calls)
        row = lead_row(database_url, lead_id)
        assert row is not None
        raw = cache.get(keys.lead(caller[1:], DEFAULT_ORGANIZATION_ID))
        ((call, ms),) = invoke_concurrently([(INITIATION, initiation_event(caller))])
        name = (dynamic_variables(call) or {}).get("customer_name")
        in_cache = value_seq(raw) if raw else None
        right = (in_cache, name) == (row["write_seq"], row["customer_name"])
        for answer, write_ms in writes:
            figures.record("writes", write_ms, answer.get("statusCode", 200) == 200, str(answer))
        figures.record("call after", ms, right, f"round {round_}: {in_cache} {name} vs {row}")
        outcomes.append(right)
    cache.close()
    figures.notes["cache_held_the_newest_row"] = outcomes

    assert figures.failures == 0, figures.failed
    assert outcomes == [True] * ROUNDS
