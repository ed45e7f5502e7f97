"""ElevenLabs post-call webhook (design section 3.3): payload, merge into the lead.

The signature is checked by :mod:`leadlookup.auth` before anything here reads the body.

Storage first, as for SMS: the webhook verifies a delivery, puts what processing needs on the
post-call queue (``POST_CALL_QUEUE_URL``; in-process when it is unset) and answers 200, so a
database outage loses nothing (ElevenLabs retries only if told to, and then only on 5xx). The
processor stores each call once: the summary row is unique on ``conversation_id`` and the lead
changes only when this delivery inserted it, so redeliveries change nothing. Only
``post_call_transcription`` events are queued; audio and initiation-failure events are
acknowledged and dropped, whatever their size.

ElevenLabs reports every conversation, and every SMS reply opens one: only a report with a
phone line is a call. The others are stored but not counted, merged or followed up.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from leadlookup.auth import verified_elevenlabs_body
from leadlookup.errors import InvalidInput, LookupServiceError, NotFound, PayloadTooLarge
from leadlookup.http import MAX_JSON_DEPTH
from leadlookup.models import PHONE, SMS, STATUS_LADDER, WEB, Lead, Organization, PostCall
from leadlookup.observability import logger
from leadlookup.phones import mask_phone
from leadlookup.queue import encode, queue_for
from leadlookup.replies import followups
from leadlookup.service import LookupService, parse_uuid

# The data-collection fields the processor reads (``data.analysis.data_collection_results``):
# the store's live agent sends the first eight as strings; the last three are the boolean
# follow-up flags of agents configured for the replaced service.
DATA_COLLECTION_FIELDS = (
    "customer_name",
    "bike_type",
    "budget_range",
    "purchase_timeline",
    "riding_experience",
    "customer_triggers",
    "follow_up_needed",
    "call_classification",
    *followups.FOLLOW_UP_FLAGS,
)
# Where a collected value is kept in the lead's qualification_data: what staff read (GET
# /leads/{id}) and the next call loads with the lead. The triggers and the follow-up advice
# are the last call's, next to budget and timeline, because staff act on them per lead.
QUALIFICATION_FIELDS = (
    ("budget_range", "budget_range"),
    ("timeline", "purchase_timeline"),
    ("riding_experience", "riding_experience"),
    ("customer_triggers", "customer_triggers"),
    ("follow_up_needed", "follow_up_needed"),
)

TRANSCRIPTION = "post_call_transcription"
# Acknowledged and dropped whatever their size: audio is base64 MP3 of the whole call.
IGNORED_TYPES = frozenset({"post_call_audio", "call_initiation_failure"})
# API Gateway's own limit on a request: the most a signature can be checked over. Bodies over
# POST_CALL_MAX_BODY_BYTES are 413 unless they are an event type that is dropped anyway.
API_MAX_BODY_BYTES = 10 * 1024 * 1024
# ElevenLabs writes "type" first; a body that begins so is classified without parsing it all.
_LEADING_TYPE = re.compile(rb'\A\s*\{\s*"type"\s*:\s*"([a-z_]{1,64})"')
# A trimmed transcript keeps, per turn, who spoke, what was said (cut at this many
# characters) and when; tool calls, metrics and retrieval details are dropped.
TURN_KEYS = ("role", "message", "time_in_call_secs")
MAX_TURN_CHARS = 2_000

# A phone call that reached someone is at least this far up the ladder.
REACHED_STATUS = "contacted"
# What analysis models write when they did not learn the value: never worth storing. The live
# agent's own "unsure" and "not_specified" choices are among them (compared with underscores
# read as spaces), so a call that learned nothing never overwrites what an earlier one did.
PLACEHOLDERS = frozenset(
    {
        "", "-", "?", "n/a", "na", "none", "null", "nil", "unknown", "unknown caller",
        "not provided", "not given", "not mentioned", "not specified", "not stated",
        "not available", "unspecified", "undefined", "anonymous", "no name", "customer",
        "the customer", "caller", "the caller", "user", "the user", "unsure", "not sure",
    }
)  # fmt: skip
MAX_CONVERSATION_ID_CHARS = 256
MAX_NAME_CHARS = 200
MAX_VALUE_CHARS = 500
MAX_SUMMARY_CHARS = 10_000
MAX_CLASSIFICATION_CHARS = 100


# Wall-clock seconds; module level so tests can freeze it at a sample event's timestamp.
wall_clock: Callable[[], float] = time.time


def parse_body(body: bytes) -> dict[str, Any]:
    """The body as a JSON object fit for PostgreSQL (no NUL, no lone surrogates); else 400."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise InvalidInput("body is not valid UTF-8") from None
    except (ValueError, RecursionError):
        raise InvalidInput("body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput("body must be a JSON object")
    cleaned: dict[str, Any] = _clean(value, 1)
    return cleaned


def parse_post_call(body: dict[str, Any]) -> PostCall | None:
    """The call described by a parsed body; None for event types that are not stored.

    Required parts of the wrong type are 400 naming the field; optional parts of the wrong
    type are ignored (ElevenLabs disables a webhook that keeps failing). Whether it was a
    phone call, whether it reached someone and whether a callback was asked for are decided
    here, from the whole event.
    """
    if body.get("type") != TRANSCRIPTION:
        return None
    data = body.get("data")
    if not isinstance(data, dict):
        raise InvalidInput("field 'data' must be a JSON object")
    conversation_id = data.get("conversation_id")
    if conversation_id is None:
        raise InvalidInput("field 'data.conversation_id' is required")
    if not isinstance(conversation_id, str) or not conversation_id.strip():
        raise InvalidInput("field 'data.conversation_id' must be a non-empty string")
    if len(conversation_id) > MAX_CONVERSATION_ID_CHARS:
        raise InvalidInput(
            f"field 'data.conversation_id' is longer than {MAX_CONVERSATION_ID_CHARS} characters"
        )

    variables = _section(_section(data, "conversation_initiation_client_data"), "dynamic_variables")
    phone_call = _section(_section(data, "metadata"), "phone_call")
    analysis = _section(data, "analysis")
    results = _section(analysis, "data_collection_results")
    values = {name: _result(results, name) for name in DATA_COLLECTION_FIELDS}

    channel = _channel(phone_call, variables)
    reached = channel == PHONE and _someone_spoke(data.get("transcript"))
    classification = _text(values["call_classification"], MAX_CLASSIFICATION_CHARS)
    status = classification.casefold() if classification else None
    if status not in STATUS_LADDER:
        status = None  # sales, service, support, general: kept as the classification only
    if reached and status in (None, "new"):
        status = REACHED_STATUS
    bike_type = _text(values["bike_type"], MAX_VALUE_CHARS)
    qualification = {
        column: value
        for column, name in QUALIFICATION_FIELDS
        if (value := _scalar(values[name])) is not None
    }
    return PostCall(
        conversation_id=conversation_id.strip(),
        payload=body,
        lead_id=_uuid_or_none(variables.get("lead_id")),
        external_number=_string(phone_call.get("external_number")),
        agent_number=_string(phone_call.get("agent_number")),
        agent_name=_string(data.get("agent_name")),
        summary=_text(analysis.get("transcript_summary"), MAX_SUMMARY_CHARS, truncate=True),
        classification=classification,
        status=status,
        customer_name=_text(values["customer_name"], MAX_NAME_CHARS),
        bike_interest={"type": bike_type} if bike_type else {},
        qualification_data=qualification,
        channel=channel,
        reached=reached,
        callback_requested=followups.wants_callback(values),
    )


def receive_post_call(event: dict[str, Any], service: LookupService) -> str:
    """Verify a delivery and queue the call: ``"ok"``, or ``"ignored"`` for other event types.

    401 on a bad signature, 413 for a transcription over ``POST_CALL_MAX_BODY_BYTES``, 400 for
    a malformed one, 503 when the queue (or the secret) cannot be reached: ElevenLabs retries
    5xx when its webhook retries are on.
    """
    settings = service.settings
    raw = verified_elevenlabs_body(event, settings, wall_clock(), limit=API_MAX_BODY_BYTES)
    if len(raw) > settings.post_call_max_body_bytes:
        kind = _leading_type(raw)
        if kind in IGNORED_TYPES:
            return _ignored(kind)
        raise PayloadTooLarge(f"body is larger than {settings.post_call_max_body_bytes} bytes")
    body = parse_body(raw)
    call = parse_post_call(body)
    if call is None:
        kind = body.get("type")
        return _ignored(kind if isinstance(kind, str) else None)
    queue = queue_for(settings.post_call_queue_url, lambda body: process_message(service, body))
    queue.send(queued_message(call))
    logger.info(
        "post-call accepted",
        conversation_id=call.conversation_id,
        caller=mask_phone(call.external_number),
    )
    return "ok"


def queued_message(call: PostCall) -> dict[str, Any]:
    """The call as a queue message that fits SQS's limit (what is kept of the payload).

    Everything processing reads (ids, numbers, summary, analysis fields) is kept whole; only
    the stored copy of the event (``payload``) is trimmed when the message would not fit:
    first each transcript turn is cut down to :data:`TURN_KEYS`, then turns are dropped from
    the middle of the call (its start and its end are kept), and as a last resort the payload
    keeps only the event's type and ids. ``payload["trimmed"]`` says what was dropped.
    """
    message = call.to_json()
    if _fits(message):
        return message
    data = _section(call.payload, "data")
    turns = data.get("transcript")
    slim = [_slim_turn(turn) for turn in turns] if isinstance(turns, list) else []
    # Binary search for the most turns (the first half from the start, the rest from the
    # end of the call) that still fit; the message grows with every turn kept.
    low, high = -1, len(slim)
    while low < high:
        kept = (low + high + 1) // 2
        if _fits(_with_turns(message, slim, kept)):
            low = kept
        else:
            high = kept - 1
    if low >= 0:
        return _with_turns(message, slim, low)
    payload = call.payload
    minimal: dict[str, Any] = {k: payload[k] for k in ("type", "event_timestamp") if k in payload}
    kept_data: dict[str, Any] = {
        k: data[k] for k in ("agent_id", "conversation_id", "status") if k in data
    }
    # The analysis' collected values stay (follow-up texts read their flags), each cut down.
    results = _section(_section(data, "analysis"), "data_collection_results")
    values = {name: {"value": _short(_section(results, name).get("value"))} for name in results}
    kept_data["analysis"] = {"data_collection_results": values}
    minimal["data"] = kept_data
    minimal["trimmed"] = {"dropped": sorted(set(data) - set(kept_data)), "analysis": "values"}
    candidate = {**message, "payload": minimal}
    if _fits(candidate):
        return candidate
    del kept_data["analysis"]
    minimal["trimmed"] = {"dropped": sorted(set(data) - set(kept_data))}
    return {**message, "payload": minimal}


def process_message(service: LookupService, message: Any) -> bool:
    """Store one queued call (the processor and the in-process hand-off); whether it was new."""
    try:
        call = PostCall.from_json(message)
    except ValueError as exc:
        raise InvalidInput(f"queued post-call message: {exc}") from None
    return store_post_call(call, service)


def process_record(service: LookupService, body: str, message_id: str | None = None) -> bool:
    """Process one queue record's body; failures are logged, then raised.

    A malformed record raises :class:`InvalidInput` every time, so the queue's redrive policy
    moves it to the dead-letter queue; a dependency outage raises :class:`Unavailable` and
    the queue delivers the record again later.
    """
    try:
        message = json.loads(body)
    except (TypeError, ValueError, RecursionError):
        logger.error(
            "post-call record is not JSON; failing it until it is dead-lettered",
            message_id=message_id,
        )
        raise InvalidInput("queued message is not valid JSON") from None
    try:
        return process_message(service, message)
    except InvalidInput as exc:
        logger.error(
            "post-call record was refused; failing it until it is dead-lettered",
            message_id=message_id,
            reason=str(exc),
        )
        raise
    except LookupServiceError as exc:
        logger.warning(
            "post-call not stored; the queue will deliver it again",
            message_id=message_id,
            error=type(exc).__name__,
            reason=str(exc),
        )
        raise


def store_post_call(call: PostCall, service: LookupService) -> bool:
    """Resolve the lead (never creating one) and record the call; whether it was new."""
    organization = service.get_organization_by_phone(call.agent_number)
    lead = _resolve_lead(call, service, organization)
    if call.customer_name and _is_agent_name(call.customer_name, organization, call.agent_name):
        call = replace(call, customer_name=None)
    inserted = service.record_call_summary(
        call, lead.organization_id if lead else organization.id, lead
    )
    logger.info(
        "post-call summary recorded" if inserted else "post-call summary already recorded",
        conversation_id=call.conversation_id,
        lead_id=lead.id if lead else None,
        caller=mask_phone(call.external_number),
        channel=call.channel,
        callback_requested=call.callback_requested,
    )
    if lead is not None and call.channel != PHONE:
        # A text conversation's customer is already being answered by text.
        logger.info(
            "follow-up decision", conversation_id=call.conversation_id, decision="not a call"
        )
    elif lead is not None:
        # Stored first; then the follow-up text the store enables (on every delivery: the job
        # key is the conversation's, so a redelivery cannot text twice).
        from leadlookup.replies.wiring import pipeline_for

        decision = pipeline_for(service).after_call(
            lead, call.conversation_id, call.payload, organization
        )
        logger.info("follow-up decision", conversation_id=call.conversation_id, decision=decision)
    return inserted


def _channel(phone_call: dict[str, Any], variables: dict[str, Any]) -> str:
    """What the conversation was: a phone call only when it had a phone line.

    Our SMS replies open their conversations with ``channel`` and ``call_type`` ``sms``; a
    conversation without ``metadata.phone_call`` that is not one of them came from the web
    widget or a test in the ElevenLabs dashboard.
    """
    for name in ("channel", "call_type"):
        value = variables.get(name)
        if isinstance(value, str) and value.strip().casefold() == SMS:
            return SMS
    return PHONE if phone_call else WEB


def _someone_spoke(transcript: Any) -> bool:
    """Whether the call reached a person: a user turn with words in it.

    The agent speaks first on every call, so its turns prove nothing; a caller who hangs up
    during the greeting (or a call nobody answered) leaves no user turn, or one with no
    letters or digits (silence, noise).
    """
    if not isinstance(transcript, list):
        return False
    return any(
        isinstance(turn, dict)
        and turn.get("role") == "user"
        and isinstance(turn.get("message"), str)
        and any(c.isalnum() for c in turn["message"])
        for turn in transcript
    )


def _ignored(kind: str | None) -> str:
    logger.info("post-call event ignored", event_type=kind[:64] if kind else None)
    return "ignored"


def _leading_type(raw: bytes) -> str | None:
    match = _LEADING_TYPE.match(raw[:4096])
    return match.group(1).decode() if match else None


def _fits(message: dict[str, Any]) -> bool:
    try:
        encode(message)
    except PayloadTooLarge:
        return False
    return True


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[:MAX_VALUE_CHARS]
    return value if isinstance(value, str | int | float | bool) or value is None else None


def _slim_turn(turn: Any) -> Any:
    if not isinstance(turn, dict):
        return turn
    slim = {key: turn[key] for key in TURN_KEYS if key in turn}
    if isinstance(slim.get("message"), str) and len(slim["message"]) > MAX_TURN_CHARS:
        slim["message"] = slim["message"][:MAX_TURN_CHARS]
    return slim


def _with_turns(message: dict[str, Any], slim: list[Any], kept: int) -> dict[str, Any]:
    """``message`` whose payload keeps ``kept`` slimmed turns: the first half, then the last."""
    first, last = (kept + 1) // 2, kept // 2
    total = len(slim)
    payload = message["payload"]
    data = {**_section(payload, "data"), "transcript": slim[:first] + slim[total - last :][:last]}
    trimmed = {
        "transcript_turns": total,
        "kept_first": first,
        "kept_last": last,
        "turn_keys": list(TURN_KEYS),
        "max_turn_chars": MAX_TURN_CHARS,
    }
    return {**message, "payload": {**payload, "data": data, "trimmed": trimmed}}


def _resolve_lead(
    call: PostCall, service: LookupService, organization: Organization
) -> Lead | None:
    if call.lead_id is not None:
        try:
            return service.get_lead(call.lead_id)
        except NotFound:
            logger.info("post-call lead_id names no lead", lead_id=call.lead_id)
    if service.normalize(call.external_number) is None:
        return None
    return service.find_lead_by_phone(call.external_number, organization.id)


def _is_agent_name(name: str, organization: Organization, agent_name: str | None) -> bool:
    wanted = _fold(name)
    agent_names = (organization.settings.get("agent_name"), agent_name)
    return any(isinstance(a, str) and _fold(a) == wanted for a in agent_names)


def _fold(text: str) -> str:
    return " ".join(text.split()).strip(" .!?,;:'\"").casefold()


def _is_placeholder(text: str) -> bool:
    return _fold(text.replace("_", " ")) in PLACEHOLDERS


def _section(parent: dict[str, Any], name: str) -> dict[str, Any]:
    value = parent.get(name)
    return value if isinstance(value, dict) else {}


def _result(results: dict[str, Any], name: str) -> Any:
    return _section(results, name).get("value")


def _string(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _text(value: Any, limit: int, truncate: bool = False) -> str | None:
    """A meaningful string value: not empty, not a placeholder, not absurdly long."""
    text = _string(value)
    if text is None or _is_placeholder(text) or not any(c.isalnum() for c in text):
        return None
    if len(text) > limit:
        return text[:limit] if truncate else None
    return text


def _scalar(value: Any) -> str | int | float | None:
    """A qualification value: meaningful text, or a number as the model gave it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    return _text(value, MAX_VALUE_CHARS)


def _uuid_or_none(value: Any) -> str | None:
    try:
        return parse_uuid(value)
    except InvalidInput:
        return None


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON and PostgreSQL's jsonb refuses them.
    raise ValueError(f"{name} is not JSON")


def _clean(value: Any, depth: int) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(f"body is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, dict):
        return {_clean_text(k): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # 1e999 parses as infinity
    return value


def _clean_text(text: str) -> str:
    # PostgreSQL text holds neither NUL nor unpaired surrogates (which JSON escapes can carry).
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text
