"""The webhooks' work: verify a delivery, put it on its queue, answer. Nothing else.

Storage first: the three webhooks (Twilio's inbound SMS and delivery statuses, ElevenLabs'
post-call reports) run outside the VPC and never touch the database or the cache; a
processor stores what they queue, exactly once (docs/ARCHITECTURE.md). When a queue URL is
unset (local runs, tests) the message is handed to ``local``, the processor in this process,
through the same :class:`~leadlookup.adapters.queue.Queue` interface; ``local`` is built by the
caller on first use, so a deployed webhook never loads it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from leadlookup.adapters.queue import encode, fifo_id, queue_for
from leadlookup.api.auth import verified_elevenlabs_body, verify_twilio_signature
from leadlookup.api.http import MAX_JSON_DEPTH, TOO_DEEP_MESSAGE, parse_json, raw_body
from leadlookup.config import Settings
from leadlookup.domain.call_report import IGNORED_TYPES, MAX_VALUE_CHARS, parse_post_call, section
from leadlookup.domain.delivery import DeliveryUpdate, parse_update, rank
from leadlookup.domain.models import PostCall
from leadlookup.domain.phones import mask_phone
from leadlookup.domain.sms import Message, first_value, validated_message
from leadlookup.errors import InvalidInput, PayloadTooLarge
from leadlookup.observability import logger

# Processes one queued message in this process (no queue configured).
Local = Callable[[dict[str, Any]], object]

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
TWIML_CONTENT_TYPE = "text/xml"
FormPairs = list[tuple[str, str]]

# API Gateway's own limit on a request: the most a signature can be checked over. Bodies over
# POST_CALL_MAX_BODY_BYTES are 413 unless they are an event type that is dropped anyway.
API_MAX_BODY_BYTES = 10 * 1024 * 1024
# ElevenLabs writes "type" first; a body that begins so is classified without parsing it all.
_LEADING_TYPE = re.compile(rb'\A\s*\{\s*"type"\s*:\s*"([a-z_]{1,64})"')
# A trimmed transcript keeps, per turn, who spoke, what was said (cut at this many
# characters) and when; tool calls, metrics and retrieval details are dropped.
TURN_KEYS = ("role", "message", "time_in_call_secs")
MAX_TURN_CHARS = 2_000
# Wall-clock seconds; module level so tests can freeze it at a sample event's timestamp.
wall_clock: Callable[[], float] = time.time


# -- Twilio: inbound SMS and delivery statuses -------------------------------------------


def receive_sms(event: dict[str, Any], settings: Settings, local: Local) -> str:
    """Check an inbound SMS webhook and hand it to the inbound queue; its ``MessageSid``.

    413 over ``MAX_BODY_BYTES``, 403 on a missing or wrong signature, 400 without a
    ``MessageSid``, 503 when the queue cannot take it (Twilio retries, if told to, on 5xx).
    """
    pairs = parse_form(raw_body(event, settings.max_body_bytes))
    verify_twilio_signature(event, pairs, settings)
    message = validated_message(form_fields(pairs))
    sid = str(first_value(message, "MessageSid"))
    queue_for(settings.inbound_sms_queue_url, local).send(
        message,
        deduplication_id=sid,
        group_id=message_group_id(first_value(message, "To"), first_value(message, "From")),
    )
    # The sid only: masking the numbers needs phonenumbers, which the webhook's cold start
    # does without (README, cold starts); the processor logs the masked parties.
    logger.info("inbound sms accepted", message_sid=sid)
    return sid


def receive_status(event: dict[str, Any], settings: Settings, local: Local) -> DeliveryUpdate:
    """Check a status callback and hand it to the outcome queue; the update.

    413 over ``MAX_BODY_BYTES``, 403 on a missing or wrong signature, 400 without a
    ``MessageSid`` or ``MessageStatus``, 503 when the queue cannot take it. A status this
    stack does not rank (one Twilio may add) is acknowledged and not queued. Without
    ``REPLY_OUTCOME_QUEUE_URL`` (local runs, tests) ``local`` stores it in this request.
    """
    pairs = parse_form(raw_body(event, settings.max_body_bytes))
    verify_twilio_signature(event, pairs, settings)
    update = parse_update(pairs)
    if rank(update.status) == 0:
        logger.info("delivery status not tracked", message_sid=update.message_sid)
        return update

    queue_for(settings.reply_outcome_queue_url, local).send(update.to_json())
    logger.info(
        "delivery status accepted",
        message_sid=update.message_sid,
        status=update.status,
        error_code=update.error_code,
    )
    return update


def parse_form(raw: bytes) -> FormPairs:
    """``application/x-www-form-urlencoded`` pairs in order, blank values kept.

    Twilio sends UTF-8; undecodable bytes become U+FFFD, so such a body cannot match a
    signature instead of failing to parse.
    """
    return parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)


def form_fields(pairs: Iterable[tuple[str, str]]) -> Message:
    """Form pairs as a dict; a repeated name keeps every value, in order, as a list."""
    fields: Message = {}
    for name, value in pairs:
        if name not in fields:
            fields[name] = value
        elif isinstance(fields[name], list):
            fields[name].append(value)
        else:
            fields[name] = [fields[name], value]
    return fields


def message_group_id(to: str | None, sender: str | None) -> str:
    """``<To>:<From>``: one conversation is one FIFO group, so it is processed in order.

    Characters SQS refuses in a group id (spaces in alphanumeric sender ids) become ``_``;
    the group only orders delivery, so a rare merge of two groups is harmless.
    """
    return fifo_id(f"{to or ''}:{sender or ''}")


# -- ElevenLabs: post-call reports -------------------------------------------------------


def receive_post_call(event: dict[str, Any], settings: Settings, local: Local) -> str:
    """Verify a delivery and queue the call: ``"ok"``, or ``"ignored"`` for other event types.

    401 on a bad signature, 413 for a transcription over ``POST_CALL_MAX_BODY_BYTES``, 400 for
    a malformed one, 503 when the queue (or the secret) cannot be reached: ElevenLabs retries
    5xx when its webhook retries are on.
    """
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
    queue_for(settings.post_call_queue_url, local).send(queued_message(call))
    logger.info(
        "post-call accepted",
        conversation_id=call.conversation_id,
        caller=mask_phone(call.external_number),
    )
    return "ok"


def parse_body(body: bytes) -> dict[str, Any]:
    """The body as a JSON object fit for PostgreSQL (no NUL, no lone surrogates); else 400."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("body is not valid UTF-8") from None
    value = parse_json(text, parse_constant=_reject_constant)
    if not isinstance(value, dict):
        raise InvalidInput("body must be a JSON object")
    cleaned: dict[str, Any] = _clean(value, 1)
    return cleaned


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
    data = section(call.payload, "data")
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
    results = section(section(data, "analysis"), "data_collection_results")
    values = {name: {"value": _short(section(results, name).get("value"))} for name in results}
    kept_data["analysis"] = {"data_collection_results": values}
    minimal["data"] = kept_data
    minimal["trimmed"] = {"dropped": sorted(set(data) - set(kept_data)), "analysis": "values"}
    candidate = {**message, "payload": minimal}
    if _fits(candidate):
        return candidate
    del kept_data["analysis"]
    minimal["trimmed"] = {"dropped": sorted(set(data) - set(kept_data))}
    return {**message, "payload": minimal}


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
    data = {**section(payload, "data"), "transcript": slim[:first] + slim[total - last :][:last]}
    trimmed = {
        "transcript_turns": total,
        "kept_first": first,
        "kept_last": last,
        "turn_keys": list(TURN_KEYS),
        "max_turn_chars": MAX_TURN_CHARS,
    }
    return {**message, "payload": {**payload, "data": data, "trimmed": trimmed}}


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON and PostgreSQL's jsonb refuses them.
    raise ValueError(f"{name} is not JSON")


def _clean(value: Any, depth: int) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(TOO_DEEP_MESSAGE)
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
