"""ElevenLabs post-call webhook (design section 3.3): payload, merge into the lead.

The signature is checked by :mod:`leadlookup.auth` before anything here reads the body.

Only ``post_call_transcription`` events are stored. The summary row is unique on
``conversation_id`` and the lead changes only when this delivery inserted it, so ElevenLabs'
redeliveries change nothing.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from leadlookup.auth import verified_elevenlabs_body
from leadlookup.errors import InvalidInput, NotFound
from leadlookup.http import MAX_JSON_DEPTH
from leadlookup.models import Lead, Organization, PostCall
from leadlookup.observability import logger
from leadlookup.phones import mask_phone
from leadlookup.service import LookupService, parse_uuid

TRANSCRIPTION = "post_call_transcription"

# Only statuses on the upgrade ladder; 'closed' is set by staff (PATCH), never by a call.
CALL_STATUSES = ("new", "contacted", "qualified", "hot", "customer")
# What analysis models write when they did not learn the value: never worth storing.
PLACEHOLDERS = frozenset(
    {
        "", "-", "?", "n/a", "na", "none", "null", "nil", "unknown", "unknown caller",
        "not provided", "not given", "not mentioned", "not specified", "not stated",
        "not available", "unspecified", "undefined", "anonymous", "no name", "customer",
        "the customer", "caller", "the caller", "user", "the user",
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
    type are ignored (ElevenLabs disables a webhook that keeps failing).
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

    classification = _text(_result(results, "call_classification"), MAX_CLASSIFICATION_CHARS)
    status = classification.casefold() if classification else None
    bike_type = _text(_result(results, "bike_type"), MAX_VALUE_CHARS)
    qualification = {
        column: value
        for column, name in (("budget_range", "budget_range"), ("timeline", "purchase_timeline"))
        if (value := _scalar(_result(results, name))) is not None
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
        status=status if status in CALL_STATUSES else None,
        customer_name=_text(_result(results, "customer_name"), MAX_NAME_CHARS),
        bike_interest={"type": bike_type} if bike_type else {},
        qualification_data=qualification,
    )


def receive_post_call(
    event: dict[str, Any], service: LookupService, now: float | None = None
) -> str:
    """Verify, parse and store one delivery: ``"ok"``, or ``"ignored"`` for other event types."""
    now = wall_clock() if now is None else now
    body = parse_body(verified_elevenlabs_body(event, service.settings, now))
    call = parse_post_call(body)
    if call is None:
        kind = body.get("type")
        logger.info(
            "post-call event ignored", event_type=kind[:64] if isinstance(kind, str) else None
        )
        return "ignored"
    store_post_call(call, service)
    return "ok"


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
    )
    if lead is not None:
        # Stored first; then the follow-up text the store enables (on every delivery: the job
        # key is the conversation's, so a redelivery cannot text twice).
        from leadlookup.replies.wiring import pipeline_for

        decision = pipeline_for(service).after_call(
            lead, call.conversation_id, call.payload, organization
        )
        logger.info("follow-up decision", conversation_id=call.conversation_id, decision=decision)
    return inserted


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
    if text is None or _fold(text) in PLACEHOLDERS or not any(c.isalnum() for c in text):
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
