"""The ElevenLabs conversation-initiation answer: organization, caller and store facts.

Every 200 carries exactly the same key set with string values, because ElevenLabs fails a
call whose agent variables are missing; when lookups fail or would pass the deadline, the
answer is the anonymous one (degraded), never an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from leadlookup.auth import INITIATION_SECRET_NAME, require_header_secret
from leadlookup.errors import DeadlineExceeded, LookupServiceError
from leadlookup.http import header, json_object
from leadlookup.models import Lead, Organization
from leadlookup.observability import logger
from leadlookup.phones import mask_phone
from leadlookup.secretsmanager import deadline_scope
from leadlookup.service import LookupService

RESPONSE_TYPE = "conversation_initiation_client_data"
DYNAMIC_VARIABLE_KEYS = (
    "customer_name",
    "has_customer_name",
    "customer_phone",
    "lead_id",
    "lead_status",
    "bike_interest",
    "previous_summary",
    "interaction_count",
    "organization_id",
    "organization_name",
    "store_is_open",
    "business_hours_today",
    "current_day",
    "current_time",
    "timezone",
)
# Kept back from the deadline to compose and send the answer after the last lookup.
ANSWER_RESERVE_S = 0.05
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _clock_text(value: datetime) -> str:
    return value.strftime("%I:%M %p").lstrip("0")


def _hours_today(org: Organization, now: datetime) -> tuple[bool, str]:
    hours = (org.settings.get("business_hours") or {}).get(_WEEKDAYS[now.weekday()])
    if not isinstance(hours, dict) or not hours.get("open") or not hours.get("close"):
        return False, "Closed"
    try:
        opens = datetime.strptime(str(hours["open"]), "%H:%M").time()
        closes = datetime.strptime(str(hours["close"]), "%H:%M").time()
    except ValueError:
        return False, "Closed"
    today = now.date()
    text = (
        f"{_clock_text(datetime.combine(today, opens))} - "
        f"{_clock_text(datetime.combine(today, closes))}"
    )
    return opens <= now.time() < closes, text


def _zone(org: Organization) -> ZoneInfo:
    try:
        return ZoneInfo(org.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("America/Vancouver")


def dynamic_variables(org: Organization, lead: Lead | None, now_utc: datetime) -> dict[str, str]:
    """The agent's variables: every key of :data:`DYNAMIC_VARIABLE_KEYS`, every value a string."""
    zone = _zone(org)
    local = now_utc.astimezone(zone)
    is_open, hours_today = _hours_today(org, local)
    name = (lead.customer_name or "").strip() if lead else ""
    return {
        "customer_name": name,
        "has_customer_name": "true" if name else "false",
        "customer_phone": f"+{lead.phone_number_normalized}" if lead else "",
        "lead_id": lead.id if lead else "",
        "lead_status": lead.status if lead else "new",
        "bike_interest": str((lead.bike_interest or {}).get("type") or "") if lead else "",
        "previous_summary": (lead.last_summary or "") if lead else "",
        "interaction_count": str(lead.interaction_count) if lead else "0",
        "organization_id": org.id,
        "organization_name": org.name,
        "store_is_open": "true" if is_open else "false",
        "business_hours_today": hours_today,
        "current_day": local.strftime("%A"),
        "current_time": _clock_text(local),
        "timezone": zone.key,
    }


def answer(org: Organization, lead: Lead | None, now_utc: datetime) -> dict[str, Any]:
    """The webhook's JSON answer, with a first-message override only where enabled."""
    body: dict[str, Any] = {
        "type": RESPONSE_TYPE,
        "dynamic_variables": dynamic_variables(org, lead, now_utc),
    }
    first_message = org.settings.get("first_message_override")
    # ElevenLabs rejects overrides the agent does not allow, so they are opt-in per store.
    if isinstance(first_message, str) and first_message.strip():
        body["conversation_config_override"] = {"agent": {"first_message": first_message}}
    return body


def initiate(
    service: LookupService,
    request: dict[str, Any],
    now_utc: datetime,
    deadline_ms: int,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any], bool]:
    """Find the organization and lead for a call; (answer, degraded)."""
    deadline = clock() + deadline_ms / 1000 - ANSWER_RESERVE_S
    caller = request.get("caller_id")
    called = request.get("called_number")
    try:
        org = service.get_organization_by_phone(called, deadline)
        lead = None
        if service.normalize(caller) is not None:
            lead = service.find_or_create_lead(caller, org.id, deadline)
        return answer(org, lead, now_utc), False
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
    return answer(org, None, now_utc), True


def utc_now() -> datetime:
    """The current time in UTC (a seam for tests)."""
    return datetime.now(UTC)


def respond(
    event: dict[str, Any], service: LookupService, clock: Callable[[], float] = time.monotonic
) -> dict[str, Any]:
    """Authenticate and answer one initiation webhook event (401/400/413, else 200).

    The deadline runs from here: reading the webhook secret and the data stores' credentials,
    signing tokens and TLS connects all spend it (design section 9). A secret that Secrets
    Manager does not deliver in time gets the degraded answer, which holds no caller data.
    """
    settings = service.settings
    started = clock()
    deadline = started + settings.initiation_deadline_ms / 1000
    with deadline_scope(deadline - ANSWER_RESERVE_S):
        provided = header(event, settings.initiation_secret_header)
        try:
            require_header_secret(
                settings, INITIATION_SECRET_NAME, settings.initiation_secret_header, provided
            )
        except DeadlineExceeded:
            logger.warning("initiation secret not read in time; answering degraded")
            service.record_degraded()
            request = _lenient_object(event, settings.max_body_bytes)
            org = service.cached_organization(request.get("called_number"))
            return answer(org or service.default_organization(), None, utc_now())
        request = json_object(event, settings.max_body_bytes)
        left_ms = max(1, int((deadline - clock()) * 1000))
        body, _degraded = initiate(service, request, utc_now(), left_ms, clock)
    return body


def _lenient_object(event: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    # Unauthenticated: only used to pick the store for the degraded answer.
    try:
        return json_object(event, max_bytes)
    except LookupServiceError:
        return {}
