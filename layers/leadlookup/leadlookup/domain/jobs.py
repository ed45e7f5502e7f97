"""What travels between the VPC and the responder: reply jobs and their outcomes, as JSON."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from leadlookup.errors import InvalidInput

# One SMS body Twilio accepts (it splits into segments itself; over it: error 21617). Staff
# texts are held to it; every other text is cut to it (:func:`fit_sms`).
MAX_SMS_CHARS = 1600
# A cut on a sentence end keeps at least this share of the limit; else the cut is on a word.
_MIN_SENTENCE_SHARE = 0.5
# The end of a sentence: its mark, closing quotes or brackets, then a space or the end.
_SENTENCE_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*(?=\s|$)")
ELLIPSIS = "\u2026"
# What of the conversation the agent sees: the last few texts, each cut short.
HISTORY_MESSAGES = 10
HISTORY_CHARS = 300


class SenderKind(StrEnum):
    """Who wrote an outbound text (the ``messages.sender_kind`` column)."""

    AGENT = "agent"
    FALLBACK = "fallback"
    STAFF = "staff"
    FOLLOW_UP = "follow_up"


class JobKind(StrEnum):
    """What the responder does: ask the agent, or send a text that is already written."""

    AGENT = "agent"
    STAFF = "staff"
    FOLLOW_UP = "follow_up"


def fit_sms(text: str, limit: int = MAX_SMS_CHARS) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` characters on a sentence or word boundary; whether cut.

    The last sentence end within the limit, if that keeps at least half of it; else the last
    word that fits, followed by an ellipsis (the whole text is never refused for its length).
    """
    if len(text) <= limit:
        return text, False
    best = 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() > limit:
            break
        best = match.end()
    if best >= limit * _MIN_SENTENCE_SHARE:
        return text[:best], True
    room = text[: limit - len(ELLIPSIS) + 1]
    space = max(room.rfind(" "), room.rfind("\n"), room.rfind("\t"))
    cut = room[:space] if space > 0 else room[:-1]
    return cut.rstrip(" \t\n,;:-") + ELLIPSIS, True


def decode(body: str) -> Any:
    """A queue record's JSON body; :class:`InvalidInput` (dead-lettered) when it is not JSON."""
    try:
        return json.loads(body)
    except (TypeError, ValueError, RecursionError):
        raise InvalidInput("queued message is not valid JSON") from None


def reply_key(message_sid: str) -> str:
    """The job key (and outbound ``external_id``) of the reply to one inbound MessageSid."""
    return f"reply:{message_sid}"


@dataclass(frozen=True)
class ReplyJob:
    """One text to send, with the context the agent needs (no database behind the responder).

    ``key`` identifies the job: one send per key, however often the job is delivered.
    """

    key: str
    kind: str
    organization_id: str
    lead_id: str | None
    to_number: str
    from_number: str
    # The customer's text (agent jobs) or the text to send (staff, follow-up).
    body: str
    fallback_text: str = ""
    dynamic_variables: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, str]] = field(default_factory=list)
    in_reply_to: str | None = None
    # time.time() when the inbound text reached the processor: reply latency starts there.
    received_at: float | None = None
    # The store's Twilio Messaging Service (settings ``messaging_service_sid``): sent as
    # MessagingServiceSid instead of From, which then only records the store's number.
    messaging_service_sid: str | None = None
    # Who wrote a staff text ({"sub", "email"}), carried to its outcome and stored with it.
    staff: dict[str, str | None] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the queue message body)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> ReplyJob:
        """A job from a queue message; :class:`InvalidInput` when it is not one."""
        if not isinstance(data, dict):
            raise InvalidInput("reply job must be a JSON object")
        try:
            job = cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})
        except TypeError as exc:
            raise InvalidInput(f"reply job is incomplete: {exc}") from None
        if job.kind not in set(JobKind):
            raise InvalidInput(f"reply job kind {job.kind!r} is unknown")
        for name in ("key", "organization_id", "to_number", "from_number", "body"):
            # An agent job's body is the customer's text, which may have no words (a photo).
            optional = name == "body" and job.kind == JobKind.AGENT
            if not isinstance(getattr(job, name), str) or not (getattr(job, name) or optional):
                raise InvalidInput(f"reply job field {name!r} is required")
        _check_staff(job.staff, "reply job")
        return job


@dataclass(frozen=True)
class ReplyOutcome:
    """What happened to one job: the text sent (or not) and Twilio's answer."""

    key: str
    sender_kind: str
    organization_id: str
    lead_id: str | None
    to_number: str
    from_number: str
    body: str
    # Twilio's Message SID when it accepted the text, else None.
    twilio_sid: str | None
    # Twilio's status (queued, accepted...), or "failed" / "unknown" (sent, answer lost).
    status: str
    error_code: int | None = None
    error_message: str | None = None
    fallback_reason: str | None = None
    in_reply_to: str | None = None
    # The staff member who wrote the text ({"sub", "email"}), from its job.
    staff: dict[str, str | None] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the outcome queue's message body)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> ReplyOutcome:
        """An outcome from a queue message; :class:`InvalidInput` when it is not one."""
        if not isinstance(data, dict):
            raise InvalidInput("reply outcome must be a JSON object")
        try:
            outcome = cls(**{n: data[n] for n in cls.__dataclass_fields__ if n in data})
        except TypeError as exc:
            raise InvalidInput(f"reply outcome is incomplete: {exc}") from None
        if outcome.sender_kind not in set(SenderKind):
            raise InvalidInput(f"reply outcome sender kind {outcome.sender_kind!r} is unknown")
        if not isinstance(outcome.key, str) or not outcome.key:
            raise InvalidInput("reply outcome field 'key' is required")
        _check_staff(outcome.staff, "reply outcome")
        return outcome

    def params(self) -> dict[str, Any]:
        """What is kept in the outbound row's ``params`` beyond its columns."""
        return {
            name: value
            for name, value in (
                ("error_code", self.error_code),
                ("error_message", self.error_message),
                ("fallback_reason", self.fallback_reason),
                ("in_reply_to", self.in_reply_to),
            )
            if value is not None
        }


def _check_staff(staff: object, what: str) -> None:
    if staff is None:
        return
    if not isinstance(staff, dict) or not isinstance(staff.get("sub"), str):
        raise InvalidInput(f"{what} field 'staff' must be an object with a 'sub'")
    if not isinstance(staff.get("email"), str | None):
        raise InvalidInput(f"{what} field 'staff.email' must be a string or null")


def compact_history(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The last texts (oldest first) as ``{"role", "text"}`` for the agent's context."""
    history = []
    for row in reversed(rows[:HISTORY_MESSAGES]):
        if row.get("direction") == "system":
            continue
        role = "customer" if row.get("direction") == "inbound" else "store"
        history.append({"role": role, "text": str(row.get("body") or "")[:HISTORY_CHARS]})
    return history


def agent_history(rows: list[dict[str, Any]]) -> tuple[list[dict[str, str]], str]:
    """(:func:`compact_history`, its :func:`history_text`) of the texts before a reply."""
    history = compact_history(rows)
    return history, history_text(history)


def history_text(history: list[dict[str, str]]) -> str:
    """The history as one line per text, for a dynamic variable (every value is a string)."""
    return "\n".join(f"{item['role']}: {item['text']}" for item in history)
