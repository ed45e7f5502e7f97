"""The ElevenLabs conversation-initiation answer: organization, caller and store facts.

Every 200 carries exactly the same key set with string values (see
:mod:`leadlookup.domain.variables`), because ElevenLabs fails a call whose agent variables are
missing; when lookups fail or would pass the deadline, the answer is the anonymous one
(degraded), never an error.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any

# Every initiation parses a phone number and, with the cache on, talks to Redis: both
# libraries load during init rather than inside the first call's deadline.
import phonenumbers  # noqa: F401

import leadlookup.adapters.cache.redis_backend  # noqa: F401
from leadlookup.adapters.aws.secretsmanager import deadline_scope
from leadlookup.api.auth import INITIATION_SECRET_NAME, require_header_secret
from leadlookup.api.http import JsonText, header, json_object, json_text
from leadlookup.domain.models import Lead, Organization
from leadlookup.domain.phones import mask_phone
from leadlookup.domain.variables import DYNAMIC_VARIABLE_KEYS, build_variables
from leadlookup.errors import DeadlineExceeded, LookupServiceError
from leadlookup.observability import logger
from leadlookup.usecases.lookups import LookupService

RESPONSE_TYPE = "conversation_initiation_client_data"
DEFAULT_DEADLINE_MS = 1500
# Kept back from the deadline to compose and send the answer after the last lookup. Measured
# in the rehearsal (a cold container, the handler's logger and metrics wrappers around it):
# 20-50 ms on a loaded 2-core machine, so 150 ms leaves room for a slower one. A deadline
# tuned far below the default keeps an eighth of itself instead, so that the lookups still
# get most of it (at 400 ms: 50 ms kept, 350 ms for one Redis timeout and a database query).
ANSWER_RESERVE_S = 0.15


# The answer's JSON with its names written once, values by %s in DYNAMIC_VARIABLE_KEYS
# order: encoding the whole answer was the largest single cost of a warm request (~123k of
# ~470k instructions, ``python -m devkit.bench.instructions``); this saves about a third.
_ANSWER_JSON = (
    f'{{"type":{json.dumps(RESPONSE_TYPE)},"dynamic_variables":{{'.replace("%", "%%")
    + ",".join(f"{json.dumps(key).replace('%', '%%')}:%s" for key in DYNAMIC_VARIABLE_KEYS)
    + "}}"
)


def answer_reserve_s(deadline_ms: int) -> float:
    """Seconds of a ``deadline_ms`` budget kept back for composing the answer."""
    return min(ANSWER_RESERVE_S, deadline_ms / 8000)


def answer(
    org: Organization,
    lead: Lead | None,
    now_utc: datetime,
    call_id: str = "",
    outbound: bool = False,
) -> dict[str, Any]:
    """The webhook's JSON answer, with a first-message override only where enabled."""
    body: dict[str, Any] = {
        "type": RESPONSE_TYPE,
        "dynamic_variables": build_variables(
            org, lead, now_utc, call_id=call_id, outbound=outbound
        ),
    }
    first_message = org.settings.get("first_message_override")
    # ElevenLabs rejects overrides the agent does not allow, so they are opt-in per store.
    if isinstance(first_message, str) and first_message.strip():
        body["conversation_config_override"] = {"agent": {"first_message": first_message}}
    return body


def answer_json(body: dict[str, Any]) -> JsonText:
    """An :func:`answer` as JSON text: the text ``json.dumps`` writes (compact), sooner.

    The answer of every call has the same names in the same order and only string values,
    so just the values are encoded; anything else (a first-message override) is encoded
    whole.
    """
    variables = body.get("dynamic_variables")
    if (
        len(body) == 2
        and body.get("type") == RESPONSE_TYPE
        and type(variables) is dict
        and tuple(variables) == DYNAMIC_VARIABLE_KEYS
    ):
        try:
            values = tuple(map(encode_basestring_ascii, variables.values()))
        except TypeError:  # a value that is not a string: not an answer build_variables wrote
            return json_text(body)
        return JsonText(_ANSWER_JSON % values)
    return json_text(body)


def initiate(
    service: LookupService,
    request: dict[str, Any],
    now_utc: datetime,
    deadline_ms: int,
) -> tuple[dict[str, Any], bool]:
    """Find the organization and lead for a call; (answer, degraded)."""
    deadline = time.monotonic() + deadline_ms / 1000 - answer_reserve_s(deadline_ms)
    caller = request.get("caller_id")
    called = request.get("called_number")
    call_id = _call_id(request)
    try:
        org, customer, outbound = _parties(service, caller, called, deadline)
        lead = None
        if service.normalize(customer) is not None:
            lead = service.find_or_create_lead(customer, org.id, deadline)
        return answer(org, lead, now_utc, call_id, outbound), False
    except LookupServiceError as exc:
        logger.warning(
            "initiation degraded to the anonymous answer",
            reason=type(exc).__name__,
            caller=mask_phone(caller),
        )
    except Exception as exc:
        # A ringing phone is answered whatever broke; the type is logged, never the message
        # (database errors can quote personal data).
        logger.error("initiation lookup failed unexpectedly", error_type=type(exc).__name__)
    service.record_degraded()
    org = service.cached_organization(called) or service.default_organization()
    return answer(org, None, now_utc, call_id), True


def _call_id(request: dict[str, Any]) -> str:
    """The call's id (Twilio's CallSid), which fixes the greeting variation of its retries."""
    call_sid = request.get("call_sid")
    return call_sid if isinstance(call_sid, str) else ""


def _parties(
    service: LookupService, caller: object, called: object, deadline: float
) -> tuple[Organization, object, bool]:
    """(organization, the customer's number, outbound) of a call.

    Inbound calls dial a store. When the dialled number is no store's, the call may be one
    the agent placed (the store's number is the caller id): then the customer is the number
    called. Only that rarer case costs a second organization lookup.
    """
    org = service.get_organization_by_phone(called, deadline)
    if service.is_number_of(org, called):
        return org, caller, False
    if service.normalize(caller) is not None:
        calling = service.get_organization_by_phone(caller, deadline)
        if service.is_number_of(calling, caller):
            return calling, called, True
    return org, caller, False


def utc_now() -> datetime:
    """The current time in UTC (a seam for tests)."""
    return datetime.now(UTC)


def respond(event: dict[str, Any], service_for: Callable[[], LookupService]) -> JsonText:
    """Authenticate and answer one initiation webhook event (401/400/413, else 200).

    The deadline runs from here, before the container's service exists: building it,
    reading the webhook secret and the data stores' credentials, signing tokens and TLS
    connects all spend it, so a cold container answers in time too. A webhook secret that
    Secrets Manager does not deliver in time gets the degraded answer, which holds no caller
    data.
    """
    deadline_ms = _deadline_ms()
    deadline = time.monotonic() + deadline_ms / 1000
    with deadline_scope(deadline - answer_reserve_s(deadline_ms)):
        service = service_for()
        settings = service.settings
        provided = header(event, settings.initiation_secret_header)
        try:
            require_header_secret(
                settings, INITIATION_SECRET_NAME, settings.initiation_secret_header, provided
            )
        except DeadlineExceeded:
            logger.warning("initiation secret not read in time; answering degraded")
            service.record_degraded()
            request = _lenient_object(event, settings.max_body_bytes)
            # The deadline is spent: no Redis round trip (a first one would also connect).
            org = service.cached_organization(request.get("called_number"), in_process=True)
            org = org or service.default_organization()
            return answer_json(answer(org, None, utc_now(), _call_id(request)))
        request = json_object(event, settings.max_body_bytes)
        left_ms = max(1, int((deadline - time.monotonic()) * 1000))
        body, _degraded = initiate(service, request, utc_now(), left_ms)
    return answer_json(body)


def _deadline_ms() -> int:
    # Read before Settings exist (they are built with the service, inside the deadline); a
    # malformed value fails right after, where Settings.from_env names it.
    try:
        return max(1, int(os.environ.get("INITIATION_DEADLINE_MS") or DEFAULT_DEADLINE_MS))
    except ValueError:
        return DEFAULT_DEADLINE_MS


def _lenient_object(event: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    # Unauthenticated: only used to pick the store for the degraded answer.
    try:
        return json_object(event, max_bytes)
    except LookupServiceError:
        return {}
