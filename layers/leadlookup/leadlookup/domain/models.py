"""The layer's records: leads and organizations (with a JSON form for cache and API), and
what the webhooks parse (an inbound SMS, a finished call) on its way to the repository."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from leadlookup.errors import InvalidInput

# What a post-call report was (call_summaries.channel, migration 0007). Only a phone call is
# counted and merged into its lead: every SMS reply opens an ElevenLabs text conversation, and
# a conversation with no phone line (the web widget, a test in the dashboard) is no call either.
PHONE, SMS, WEB = "phone", "sms", "web"
CHANNELS = (PHONE, SMS, WEB)
SENTIMENTS = ("positive", "neutral", "negative")
# The seeded default organization, shipped in the layer: migrations seed it, and degraded
# answers use it when neither the cache nor the database can say more.
DEFAULT_ORGANIZATION_FILE = Path(__file__).parent / "default_organization.json"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


@dataclass(frozen=True)
class Organization:
    """A store: the number customers dial and its settings (time zone, hours, address)."""

    id: str
    name: str
    phone_number: str
    phone_number_normalized: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def timezone(self) -> str:
        """IANA time zone of the store; Vancouver is the chain's home."""
        return str(self.settings.get("timezone") or "America/Vancouver")

    @property
    def spoken_name(self) -> str:
        """The store's name as text-to-speech should say it (setting ``spoken_name``)."""
        spoken = self.settings.get("spoken_name")
        return spoken.strip() if isinstance(spoken, str) and spoken.strip() else self.name

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (cache value and API body)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Organization:
        """Inverse of :meth:`to_json`."""
        return cls(
            id=str(data["id"]),
            name=data["name"],
            phone_number=data["phone_number"],
            phone_number_normalized=data["phone_number_normalized"],
            settings=dict(data.get("settings") or {}),
        )


@dataclass(frozen=True)
class Lead:
    """A caller or texter of one organization, found by (organization, normalized phone)."""

    id: str
    organization_id: str
    phone_number: str
    phone_number_normalized: str
    customer_name: str | None = None
    email: str | None = None
    status: str = "new"
    sentiment: str = "neutral"
    bike_interest: dict[str, Any] = field(default_factory=dict)
    qualification_data: dict[str, Any] = field(default_factory=dict)
    notes: str | None = None
    last_summary: str | None = None
    interaction_count: int = 0
    last_contact_at: datetime | None = None
    opted_out_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 1
    # Orders cached copies (migration 0005): larger after every write; not the ETag.
    write_seq: int = 0
    # Staff took the conversation over: the agent does not answer texts (README.md, "How the
    # lookups behave", every text is answered).
    human_control: bool = False
    # When the customer first asked for a manager to call back (set by a post-call report).
    # Nothing clears it yet: that is for the staff tools.
    callback_requested_at: datetime | None = None
    # Recent calls and texts, newest first, loaded in the same statement as the row so that
    # conversation_context travels with the cached lead: [{"kind": "call" | "inbound" |
    # "outbound", "at": ISO 8601, "text": ..., "classification": ... (calls)}].
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; times as ISO 8601 strings."""
        data = asdict(self)
        for name in _LEAD_TIMES:
            data[name] = _iso(data[name])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lead:
        """Inverse of :meth:`to_json`; also accepts a database row dict."""
        return cls(
            id=str(data["id"]),
            organization_id=str(data["organization_id"]),
            phone_number=data["phone_number"],
            phone_number_normalized=data["phone_number_normalized"],
            customer_name=data.get("customer_name"),
            email=data.get("email"),
            status=data.get("status") or "new",
            sentiment=data.get("sentiment") or "neutral",
            bike_interest=dict(data.get("bike_interest") or {}),
            qualification_data=dict(data.get("qualification_data") or {}),
            notes=data.get("notes"),
            last_summary=data.get("last_summary"),
            interaction_count=int(data.get("interaction_count") or 0),
            last_contact_at=_parse_time(data.get("last_contact_at")),
            opted_out_at=_parse_time(data.get("opted_out_at")),
            created_at=_parse_time(data.get("created_at")),
            updated_at=_parse_time(data.get("updated_at")),
            version=int(data.get("version") or 1),
            write_seq=int(data.get("write_seq") or 0),
            human_control=bool(data.get("human_control") or False),
            callback_requested_at=_parse_time(data.get("callback_requested_at")),
            history=[dict(item) for item in data.get("history") or () if isinstance(item, dict)],
        )


_LEAD_TIMES = (
    "last_contact_at", "opted_out_at", "created_at", "updated_at", "callback_requested_at",
)  # fmt: skip


@dataclass(frozen=True)
class InboundMessage:
    """One inbound SMS as it is stored: its id, parties, text and every field received."""

    message_sid: str
    from_number: str | None
    to_number: str | None
    body: str
    params: dict[str, Any]
    # "out" (STOP and the like), "in" (START...) or None.
    opt_change: str | None = None
    # A keyword Twilio answers itself (opt-out, opt-in, help): the agent stays out.
    keyword: bool = False


@dataclass(frozen=True)
class PostCall:
    """What one ``post_call_transcription`` event says about its call."""

    conversation_id: str
    payload: dict[str, Any]
    lead_id: str | None = None
    external_number: str | None = None
    agent_number: str | None = None
    agent_name: str | None = None
    summary: str | None = None
    classification: str | None = None
    status: str | None = None
    customer_name: str | None = None
    bike_interest: dict[str, Any] = field(default_factory=dict)
    qualification_data: dict[str, Any] = field(default_factory=dict)
    # Decided at the webhook, which has the whole event (a queued copy may lose its transcript
    # and metadata to trimming). Messages queued before these fields existed were all counted
    # as calls: the defaults keep them so.
    channel: str = PHONE
    # A phone call that reached someone: the caller (or callee) said something.
    reached: bool = False
    # The customer asked for a manager to call back.
    callback_requested: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: the post-call queue's message."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> PostCall:
        """Inverse of :meth:`to_json`; ``ValueError`` naming the first field of a wrong type."""
        if not isinstance(data, dict):
            raise ValueError("a post-call message must be a JSON object")
        conversation_id = data.get("conversation_id")
        if not isinstance(conversation_id, str) or not conversation_id:
            raise ValueError("field 'conversation_id' must be a non-empty string")
        values: dict[str, Any] = {"conversation_id": conversation_id}
        for name in _POST_CALL_TEXT:
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"field {name!r} must be a string or null")
            values[name] = value
        for name in ("payload", "bike_interest", "qualification_data"):
            value = data.get(name, {})
            if not isinstance(value, dict):
                raise ValueError(f"field {name!r} must be a JSON object")
            values[name] = value
        channel = data.get("channel", PHONE)
        if channel not in CHANNELS:
            raise ValueError(f"field 'channel' must be one of {', '.join(CHANNELS)}")
        values["channel"] = channel
        for name in ("reached", "callback_requested"):
            value = data.get(name, False)
            if not isinstance(value, bool):
                raise ValueError(f"field {name!r} must be true or false")
            values[name] = value
        return cls(**values)


_POST_CALL_TEXT = (
    "lead_id",
    "external_number",
    "agent_number",
    "agent_name",
    "summary",
    "classification",
    "status",
    "customer_name",
)


@cache
def default_organization_snapshot() -> dict[str, Any]:
    """The seeded default organization as shipped in the layer (JSON fields)."""
    data: dict[str, Any] = json.loads(DEFAULT_ORGANIZATION_FILE.read_text())
    return data


def parse_uuid(raw: object, what: str = "lead id") -> str:
    """A canonical UUID string, or :class:`InvalidInput` naming ``what`` is malformed."""
    if not isinstance(raw, str):
        raise InvalidInput(f"{what} must be a UUID")
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise InvalidInput(f"{what} must be a UUID") from None
