"""Staff: read a lead's history, take it over or hand it back (PATCH), text as themselves.

Staff texts go out through the replies' job queue and the responder, like the agent's, so
they are sent once and their outcome and delivery status are stored the same way.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from leadlookup.domain.jobs import MAX_SMS_CHARS, JobKind, ReplyJob
from leadlookup.domain.models import Lead, Organization
from leadlookup.errors import Conflict, InvalidInput, NotFound
from leadlookup.usecases.lookups import LookupService
from leadlookup.usecases.replies import ReplyPipeline, store_sender

PAGE_DEFAULT, PAGE_MAX = 50, 200


def _cursor(row: dict[str, Any]) -> str:
    created = row["created_at"]
    text = created.isoformat() if isinstance(created, datetime) else str(created)
    return base64.urlsafe_b64encode(f"{text}|{row['id']}".encode()).decode().rstrip("=")


def _parse_cursor(raw: str | None) -> tuple[str, str] | None:
    if not raw:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        created, row_id = text.split("|", 1)
        datetime.fromisoformat(created)
        return created, str(uuid.UUID(row_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("query parameter 'before' is not a cursor from this API") from None


def _message_json(row: dict[str, Any]) -> dict[str, Any]:
    created = row["created_at"]
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
        "created_at": created.isoformat() if isinstance(created, datetime) else created,
    }


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class Staff:
    """What staff do to a lead, over the lookup service and the replies' job queue."""

    def __init__(
        self,
        service: LookupService,
        replies: ReplyPipeline,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.replies = replies
        self._wall = wall_clock

    def _lead_and_org(self, lead_id: object) -> tuple[Lead, Organization]:
        lead = self.service.get_lead(lead_id)
        org = self.service.organization(lead.organization_id)
        if org is None:
            raise NotFound("lead's organization not found")
        return lead, org

    def send_staff_text(self, lead_id: object, body: object, key: str | None = None) -> str:
        """Queue a staff member's text to the lead; its job key.

        400 on an empty or over-long body, 404 for an unknown lead, 409 when it opted out.
        ``key`` (the client's ``Idempotency-Key``) makes a retried request send once.
        """
        if not isinstance(body, str) or not body.strip():
            raise InvalidInput("field 'body' must be a non-empty string")
        if len(body) > MAX_SMS_CHARS:
            raise InvalidInput(f"field 'body' is longer than {MAX_SMS_CHARS} characters")
        if key is not None and (not key.strip() or len(key) > 100):
            raise InvalidInput("header 'Idempotency-Key' must be 1 to 100 characters")
        lead, org = self._lead_and_org(lead_id)
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
        )
        self.replies.emit(job)
        return job.key

    def patch_lead(self, lead_id: object, body: Any, if_match: int | None) -> Lead:
        """PATCH /leads/{id}: every field, ``human_control`` included, in one commit."""
        return self.service.update_lead(lead_id, body, if_match)

    def messages(
        self, lead_id: object, limit: object = None, before: str | None = None
    ) -> dict[str, Any]:
        """GET /leads/{id}/messages: newest first, ``limit`` per page, ``next`` cursor."""
        lead = self.service.get_lead(lead_id)
        try:
            size = PAGE_DEFAULT if limit in (None, "") else int(str(limit))
        except ValueError:
            raise InvalidInput("query parameter 'limit' must be a whole number") from None
        if not 1 <= size <= PAGE_MAX:
            raise InvalidInput(f"query parameter 'limit' must be 1 to {PAGE_MAX}")
        rows = self.service.messages_page(lead.id, size + 1, _parse_cursor(before))
        page = rows[:size]
        return {
            "messages": [_message_json(row) for row in page],
            "next": _cursor(page[-1]) if len(rows) > size else None,
        }
