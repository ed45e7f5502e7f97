"""Outbound calls staff place from the console: when one may be placed, its job, its outcome.

``POST /leads/{lead_id}/calls`` stores a call (``queued``) and queues a :class:`CallJob`; the
outbound-call function, outside the VPC, asks ElevenLabs to dial (its Twilio outbound call)
and puts a :class:`CallOutcome` on the outcome queue: ``dialing`` with ElevenLabs'
``conversation_id`` and Twilio's ``callSid``, or ``failed`` with the reason. The outcome
function stores it, and the call's post-call report (matched by ``conversation_id``) completes
it. A status only moves up :data:`CALL_STATUS_RANK`, so outcomes delivered twice or late change
nothing. At most one call per lead is active (``queued`` or ``dialing``: a unique index of
migration 0010); one older than :data:`STALE_AFTER_SECONDS` is ``expired`` when the next call
is asked for, so a lost outcome or report never blocks a lead's calls for good.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from leadlookup.domain.models import Lead, Organization
from leadlookup.domain.phones import callable_number
from leadlookup.errors import InvalidInput

QUEUED, DIALING, FAILED, COMPLETED, EXPIRED = (
    "queued",
    "dialing",
    "failed",
    "completed",
    "expired",
)
# The statuses of a call still in progress: one per lead at a time.
ACTIVE_STATUSES = (QUEUED, DIALING)
# A stored status changes only to one ranked higher. A report completes an expired call (it
# was only late), a late failure replaces expiry too; failed and completed are final.
CALL_STATUS_RANK: dict[str, int] = {QUEUED: 1, DIALING: 2, EXPIRED: 3, FAILED: 4, COMPLETED: 4}
# A call still active this long after it was asked for has lost its outcome or its report:
# a store's sales call is over well before.
STALE_AFTER_SECONDS = 30 * 60
# The outcome queue's message kind of a call outcome (a text's outcome has no kind).
OUTCOME_KIND = "call_outcome"
# The store setting naming the ElevenLabs phone number (its imported Twilio number) to call from.
AGENT_PHONE_SETTING = "agent_phone_number_id"
MAX_KEY_CHARS = 100
MAX_ERROR_CHARS = 500
_PHONE_NUMBER_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")


def call_key(raw: str | None) -> str:
    """The call's idempotency key: the client's ``Idempotency-Key``, else a new one.

    400 when the header is empty or over :data:`MAX_KEY_CHARS` characters.
    """
    if raw is None:
        return str(uuid.uuid4())
    key = raw.strip()
    if not key or len(raw) > MAX_KEY_CHARS:
        raise InvalidInput(f"header 'Idempotency-Key' must be 1 to {MAX_KEY_CHARS} characters")
    return key


def agent_phone_number_id(org: Organization) -> str | None:
    """The store's ``agent_phone_number_id`` setting, or None when it has no usable one."""
    value = org.settings.get(AGENT_PHONE_SETTING)
    if isinstance(value, str) and _PHONE_NUMBER_ID.fullmatch(value.strip()):
        return value.strip()
    return None


def refusal(lead: Lead, org: Organization) -> str | None:
    """Why no call may be placed to ``lead`` now (a 409's message), or None.

    The lead opted out, its number is not a mobile or landline number, or the store has no
    number to call from. A call already in progress is the database's to tell (unique index).
    """
    if lead.opted_out_at is not None:
        return "lead opted out: no calls or texts are sent to it"
    if callable_number(lead.phone_number_normalized) is None:
        return "lead has no callable phone number (not a valid mobile or landline number)"
    if agent_phone_number_id(org) is None:
        return f"the store has no '{AGENT_PHONE_SETTING}' setting: outbound calls are off for it"
    return None


def in_progress_message(call_id: str) -> str:
    """The 409's message when the lead already has an active call."""
    return f"a call to this lead is already in progress (call {call_id})"


def requested_note(actor: dict[str, str | None]) -> str:
    """The history's system note of a call asked for."""
    return f"Call requested by {actor.get('email') or actor.get('sub') or 'a staff member'}"


def failed_note(error: str | None) -> str:
    """The history's system note of a call that could not be placed."""
    return f"Call could not be placed: {error or 'unknown reason'}"


def note_key(call_id: str, event: str) -> str:
    """The ``external_id`` of a call's note in the lead's history (``requested``, ``failed``)."""
    return f"call:{call_id}:{event}"


def note_params(call_id: str) -> dict[str, Any]:
    """What a call's note keeps beside its text (who asked is in its staff columns)."""
    return {"call_id": call_id}


def rank(status: str | None) -> int:
    """The status's place in :data:`CALL_STATUS_RANK` (0 for none)."""
    return CALL_STATUS_RANK.get(status or "", 0)


def _text(data: dict[str, Any], name: str, what: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if not required:
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"{what} field {name!r} must be a string or null")
        return value or None
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} field {name!r} is required")
    return value


@dataclass(frozen=True)
class CallJob:
    """One call to place, with everything ElevenLabs needs (no database behind the caller)."""

    call_id: str
    organization_id: str
    lead_id: str
    # E.164, the lead's number.
    to_number: str
    agent_phone_number_id: str
    # The agent's variables for this outbound call (domain.variables, is_outbound "true").
    dynamic_variables: dict[str, str] = field(default_factory=dict)
    # time.time() when staff asked: the latency of placing the call starts there.
    requested_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the call queue's message body)."""
        return {
            "call_id": self.call_id,
            "organization_id": self.organization_id,
            "lead_id": self.lead_id,
            "to_number": self.to_number,
            "agent_phone_number_id": self.agent_phone_number_id,
            "dynamic_variables": dict(self.dynamic_variables),
            "requested_at": self.requested_at,
        }

    @classmethod
    def from_json(cls, data: object) -> CallJob:
        """A job from a queue message; :class:`InvalidInput` (dead-lettered) when it is not one."""
        if not isinstance(data, dict):
            raise InvalidInput("call job must be a JSON object")
        texts = {
            name: _text(data, name, "call job")
            for name in (
                "call_id",
                "organization_id",
                "lead_id",
                "to_number",
                "agent_phone_number_id",
            )
        }
        variables = data.get("dynamic_variables", {})
        if not isinstance(variables, dict) or not all(
            isinstance(v, str) for v in variables.values()
        ):
            raise InvalidInput("call job field 'dynamic_variables' must map names to strings")
        requested_at = data.get("requested_at")
        if requested_at is not None and (
            isinstance(requested_at, bool) or not isinstance(requested_at, int | float)
        ):
            raise InvalidInput("call job field 'requested_at' must be a number")
        return cls(
            call_id=str(texts["call_id"]),
            organization_id=str(texts["organization_id"]),
            lead_id=str(texts["lead_id"]),
            to_number=str(texts["to_number"]),
            agent_phone_number_id=str(texts["agent_phone_number_id"]),
            dynamic_variables=dict(variables),
            requested_at=float(requested_at) if requested_at is not None else None,
        )


@dataclass(frozen=True)
class CallOutcome:
    """What placing one call did: dialing (ElevenLabs' and Twilio's ids) or failed (why)."""

    call_id: str
    status: str
    conversation_id: str | None = None
    call_sid: str | None = None
    # Why it failed: a short reason the history's note and the staff read.
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the outcome queue's message body, with its ``kind``)."""
        return {
            "kind": OUTCOME_KIND,
            "call_id": self.call_id,
            "status": self.status,
            "conversation_id": self.conversation_id,
            "call_sid": self.call_sid,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: object) -> CallOutcome:
        """An outcome from a queue message; :class:`InvalidInput` when it is not one."""
        if not isinstance(data, dict) or data.get("kind") != OUTCOME_KIND:
            raise InvalidInput(f"call outcome must be a JSON object of kind '{OUTCOME_KIND}'")
        call_id = _text(data, "call_id", "call outcome")
        try:
            uuid.UUID(str(call_id))
        except ValueError:
            raise InvalidInput("call outcome field 'call_id' must be a UUID") from None
        status = data.get("status")
        if status not in (DIALING, FAILED):
            raise InvalidInput("call outcome field 'status' must be dialing or failed")
        optional = {
            name: _text(data, name, "call outcome", required=False)
            for name in ("conversation_id", "call_sid", "error")
        }
        error = optional["error"]
        return cls(
            call_id=str(uuid.UUID(str(call_id))),
            status=str(status),
            conversation_id=optional["conversation_id"],
            call_sid=optional["call_sid"],
            error=error[:MAX_ERROR_CHARS] if error else None,
        )


def is_call_outcome(body: object) -> bool:
    """Whether an outcome queue message is a call outcome."""
    return isinstance(body, dict) and body.get("kind") == OUTCOME_KIND
