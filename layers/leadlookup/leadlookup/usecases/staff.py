"""Staff: the inbox, a lead's timeline and history, edits, take over and hand back, texts, erasure.

Every method takes the signed-in :class:`~leadlookup.domain.access.StaffMember` first, and
checks the lead's store through it before anything is read out, written or sent: a lead of
another store is a 404, as if it did not exist (domain/access.py). Every action is signed with
:meth:`StaffMember.actor` (who did it). Staff texts go out through the replies' job queue and
the responder, like the agent's, so they are sent once and their outcome and delivery status
are stored the same way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leadlookup.domain import inbox
from leadlookup.domain.access import StaffMember
from leadlookup.domain.jobs import MAX_SMS_CHARS, JobKind, ReplyJob
from leadlookup.domain.models import Lead, Organization, parse_uuid
from leadlookup.errors import Conflict, InvalidInput, NotFound
from leadlookup.usecases.lookups import LookupService
from leadlookup.usecases.replies import ReplyPipeline, store_sender


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _staff(row: Mapping[str, Any]) -> dict[str, Any] | None:
    if not row.get("staff_sub"):
        return None
    return {"sub": row["staff_sub"], "email": row.get("staff_email")}


def _message_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "direction": row["direction"],
        "sender_kind": row["sender_kind"],
        "body": row["body"],
        "from_number": row["from_number"],
        "to_number": row["to_number"],
        "twilio_sid": row["twilio_sid"],
        "status": row["status"],
        "error_code": row["error_code"],
        "status_updated_at": _iso(row["status_updated_at"]),
        "external_id": row["external_id"],
        "created_at": _iso(row["created_at"]),
        "staff": _staff(row),
    }


def _lead_item(row: dict[str, Any]) -> dict[str, Any]:
    """A row of the inbox: the lead's JSON, its last activity and why it needs attention."""
    item = Lead.from_json(row).to_json()
    item["last_activity_at"] = _iso(row["last_activity_at"])
    reason = row.get("attention_reason")
    item["attention"] = (
        {"reason": reason, "since": _iso(row["attention_since"])} if reason else None
    )
    return item


def _duration(value: Any) -> int | float | None:
    if value is None:
        return None
    number = float(value)
    return int(number) if number.is_integer() else number


def _transcript(value: Any) -> list[dict[str, Any]]:
    # The stored report's turns, as ElevenLabs names their parts (a trimmed report keeps them).
    turns = value if isinstance(value, list) else []
    return [
        {
            "role": turn.get("role"),
            "message": turn.get("message"),
            "time_in_call_secs": turn.get("time_in_call_secs"),
        }
        for turn in turns
        if isinstance(turn, dict)
    ]


def _timeline_item(row: dict[str, Any], transcripts: bool) -> dict[str, Any]:
    base = {"kind": row["kind"], "id": str(row["id"]), "at": _iso(row["at"])}
    if row["kind"] == "note":
        return {**base, "text": row["body"], "staff": _staff(row)}
    if row["kind"] == "text":
        return {
            **base,
            "direction": row["direction"],
            "sender_kind": row["sender_kind"],
            "body": row["body"],
            "status": row["status"],
            "error_code": row["error_code"],
            "staff": _staff(row),
        }
    call = {
        **base,
        "channel": row["channel"],
        "direction": row["direction"],
        "duration_seconds": _duration(row["duration_seconds"]),
        "classification": row["classification"],
        "summary": row["summary"],
        "conversation_id": row["conversation_id"],
        "staff": _staff(row),
    }
    if transcripts:
        call["transcript"] = _transcript(row["transcript"])
    return call


@dataclass(frozen=True)
class LeadPage:
    """``GET /leads``'s answer: ``body`` None means 304 (unchanged); ``etag`` None means the
    change counters could not be read (no ETag is sent)."""

    body: dict[str, Any] | None
    etag: str | None


class Staff:
    """What staff do, each action checked against the member's stores and signed by them."""

    def __init__(
        self,
        service: LookupService,
        replies: ReplyPipeline,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.replies = replies
        self._wall = wall_clock

    # -- one lead ---------------------------------------------------------------------------

    def lead(self, member: StaffMember, lead_id: object) -> Lead:
        """GET /leads/{id}: the lead, if the member sees its store (else 404)."""
        lead = self.service.get_lead(lead_id)
        member.require(lead.organization_id)
        return lead

    def _lead_and_org(self, member: StaffMember, lead_id: object) -> tuple[Lead, Organization]:
        lead = self.lead(member, lead_id)
        org = self.service.organization(lead.organization_id)
        if org is None:
            raise NotFound("lead not found")
        return lead, org

    def patch_lead(
        self, member: StaffMember, lead_id: object, body: Any, if_match: int | None
    ) -> Lead:
        """PATCH /leads/{id}: every field, ``human_control`` included, in one commit; the
        store is checked on the row read before the write."""
        return self.service.update_lead(
            lead_id, body, if_match, require_store=member.require, actor=member.actor()
        )

    def delete_lead(self, member: StaffMember, lead_id: object) -> None:
        """DELETE /leads/{id}: erase the lead; the erasure is recorded with who did it."""
        lead = self.lead(member, lead_id)
        self.service.delete_lead(
            lead.id, organization_id=lead.organization_id, actor=member.actor()
        )

    def send_staff_text(
        self, member: StaffMember, lead_id: object, body: object, key: str | None = None
    ) -> str:
        """Queue a staff member's text to the lead; its job key.

        400 on an empty or over-long body, 404 for an unknown lead (or one of another store),
        409 when it opted out. ``key`` (the client's ``Idempotency-Key``) makes a retried
        request send once.
        """
        if not isinstance(body, str) or not body.strip():
            raise InvalidInput("field 'body' must be a non-empty string")
        if len(body) > MAX_SMS_CHARS:
            raise InvalidInput(f"field 'body' is longer than {MAX_SMS_CHARS} characters")
        if key is not None and (not key.strip() or len(key) > 100):
            raise InvalidInput("header 'Idempotency-Key' must be 1 to 100 characters")
        lead, org = self._lead_and_org(member, lead_id)
        if lead.opted_out_at is not None:
            raise Conflict("lead opted out of texts")
        sender, service = store_sender(org)
        job = ReplyJob(
            key=f"staff:{lead.id}:{key.strip() if key else uuid.uuid4()}",
            kind=JobKind.STAFF,
            organization_id=org.id,
            lead_id=lead.id,
            to_number=f"+{lead.phone_number_normalized}",
            from_number=sender,
            messaging_service_sid=service,
            body=body,
            received_at=self._wall(),
            staff=member.actor(),
        )
        self.replies.emit(job)
        return job.key

    def messages(
        self,
        member: StaffMember,
        lead_id: object,
        limit: str | None = None,
        after: str | None = None,
    ) -> dict[str, Any]:
        """GET /leads/{id}/messages: newest first, ``limit`` per page, ``next`` cursor."""
        size = inbox.page_size(limit, inbox.MESSAGES_LIMIT)
        before = inbox.decode_cursor(after, "tu")
        lead = self.lead(member, lead_id)
        rows = self.service.messages_page(lead.id, size + 1, before)
        page = rows[:size]
        last = page[-1] if page else None
        return {
            "messages": [_message_json(row) for row in page],
            "next": inbox.encode_cursor(last["created_at"], last["id"])
            if last is not None and len(rows) > size
            else None,
        }

    def timeline(
        self,
        member: StaffMember,
        lead_id: object,
        params: Mapping[str, str],
    ) -> dict[str, Any]:
        """GET /leads/{id}/timeline: texts, calls and notes, newest first, one round trip."""
        size = inbox.page_size(params.get("limit"), inbox.TIMELINE_LIMIT)
        before = inbox.decode_cursor(params.get("next"), "tu")
        transcripts = bool(inbox.flag(params.get("transcripts"), "transcripts"))
        organization_id, rows = self.service.timeline_page(
            parse_uuid(lead_id), size + 1, before, transcripts
        )
        if organization_id is None:
            raise NotFound("lead not found")
        member.require(organization_id)
        page = rows[:size]
        last = page[-1] if page else None
        return {
            "items": [_timeline_item(row, transcripts) for row in page],
            "next": inbox.encode_cursor(last["at"], last["id"])
            if last is not None and len(rows) > size
            else None,
        }

    # -- the inbox --------------------------------------------------------------------------

    def leads(
        self, member: StaffMember, params: Mapping[str, str], if_none_match: str | None = None
    ) -> LeadPage:
        """GET /leads: the member's leads (one store, or all they see), attention first.

        Unchanged since ``If-None-Match``: a 304 from one Redis round trip (the stores'
        change counters) and no database round trip. Else one database round trip; with
        Redis unavailable, the page comes without an ETag.
        """
        scope = member.scope(params.get("organization_id"))
        stores = None if scope is None else frozenset(str(store) for store in scope)
        phone = None
        if params.get("phone"):
            phone = self.service.normalize(params["phone"])
            if phone is None:
                raise InvalidInput("query parameter 'phone' is not a phone number")
        where = inbox.lead_filter(params, phone)
        size = inbox.page_size(params.get("limit"), inbox.LIST_LIMIT)
        after = inbox.decode_cursor(params.get("next"), "ftu")
        counters = self.service.change_counters(stores)
        etag = None
        if counters is not None:
            scope_names = sorted(stores) if stores is not None else ["*"]
            etag = inbox.list_etag(counters, scope_names, [where.key(), size, after])
            if inbox.etag_matches(if_none_match, etag):
                return LeadPage(None, etag)
        rows = self.service.list_leads(stores, where, size + 1, after)
        page = rows[:size]
        last = page[-1] if page else None
        return LeadPage(
            {
                "leads": [_lead_item(row) for row in page],
                "next": inbox.encode_cursor(
                    1 if last["attention_reason"] else 0, last["last_activity_at"], last["id"]
                )
                if last is not None and len(rows) > size
                else None,
            },
            etag,
        )
