"""The only module that speaks SQL: named statements over :class:`leadlookup.db.Database`."""

from __future__ import annotations

from typing import Any, Protocol

from leadlookup.errors import Conflict
from leadlookup.models import InboundMessage, Lead, Organization, PostCall

_STATUS_LADDER = "ARRAY['new', 'contacted', 'qualified', 'hot', 'customer']"

LEAD_COLUMNS = (
    "id, organization_id, phone_number, phone_number_normalized, customer_name, email, status, "
    "sentiment, bike_interest, qualification_data, notes, last_summary, interaction_count, "
    "last_contact_at, opted_out_at, created_at, updated_at, version, write_seq"
)
ORG_COLUMNS = "id, name, phone_number, phone_number_normalized, settings"

SELECT_LEAD_BY_PHONE = f"""
SELECT {LEAD_COLUMNS} FROM leads
WHERE organization_id = :organization_id AND phone_number_normalized = :phone_normalized"""

# One round trip for a first contact: the migration-defined function runs the SELECT, then
# INSERT ... ON CONFLICT DO NOTHING RETURNING, then SELECT again (see 0003_*.sql for why).
FIND_OR_CREATE_LEAD = f"""
SELECT {LEAD_COLUMNS}
FROM find_or_create_lead(:organization_id, :phone_number, :phone_normalized)"""

SELECT_LEAD_BY_ID = f"SELECT {LEAD_COLUMNS} FROM leads WHERE id = :id"

# One statement: the normalized number, then the raw stored format with its punctuation
# dropped (legacy rows such as '778-652-8784' or '17786528784'), else the default
# organization. The fallback scans organizations, a table of one row per store.
SELECT_ORGANIZATION_BY_PHONE = f"""
SELECT {ORG_COLUMNS} FROM organizations
WHERE phone_number_normalized = :phone_normalized
   OR regexp_replace(phone_number, '[^0-9]', '', 'g') IN (:phone_normalized, :national)
   OR id = :default_id
ORDER BY CASE
    WHEN phone_number_normalized = :phone_normalized THEN 0
    WHEN id = :default_id THEN 2
    ELSE 1 END
LIMIT 1"""

SELECT_ORGANIZATION_BY_ID = f"SELECT {ORG_COLUMNS} FROM organizations WHERE id = :id"

UPSERT_ORGANIZATION = f"""
INSERT INTO organizations (id, name, phone_number, phone_number_normalized, settings)
VALUES (:id, :name, :phone_number, :phone_normalized, :settings::jsonb)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name,
    phone_number = EXCLUDED.phone_number,
    phone_number_normalized = EXCLUDED.phone_number_normalized,
    settings = EXCLUDED.settings,
    updated_at = now()
RETURNING {ORG_COLUMNS}, (SELECT phone_number_normalized FROM organizations WHERE id = :id)
    AS previous_phone_normalized"""

# Optimistic concurrency: the row is written only if nobody changed it since it was read.
UPDATE_LEAD = f"""
UPDATE leads SET
    customer_name = :customer_name, email = :email, status = :status, sentiment = :sentiment,
    bike_interest = :bike_interest::jsonb, qualification_data = :qualification_data::jsonb,
    notes = :notes, version = version + 1, updated_at = now()
WHERE id = :id AND version = :version
RETURNING {LEAD_COLUMNS}"""

# Messages and call summaries go with the lead (ON DELETE CASCADE).
DELETE_LEAD = """
DELETE FROM leads WHERE id = :id RETURNING organization_id, phone_number_normalized"""

# Storage first and exactly once: the message row is unique on the MessageSid, and the lead is
# touched only when this delivery inserted it, so a redelivery changes nothing. The touched
# row comes back so that the cache can be given the committed value (write-through).
INSERT_INBOUND_MESSAGE = f"""
WITH ins AS (
    INSERT INTO messages (organization_id, lead_id, external_id, direction, from_number,
                          to_number, body, params)
    VALUES (:organization_id, :lead_id, :external_id, 'inbound', :from_number, :to_number,
            :body, :params::jsonb)
    ON CONFLICT (external_id) DO NOTHING
    RETURNING lead_id
), upd AS (
    UPDATE leads SET
        last_contact_at = now(),
        opted_out_at = CASE :opt_change
            WHEN 'out' THEN COALESCE(opted_out_at, now())
            WHEN 'in' THEN NULL
            ELSE opted_out_at END
    WHERE id = (SELECT lead_id FROM ins)
    RETURNING {LEAD_COLUMNS}
)
SELECT (SELECT count(*) FROM ins) AS inserted, upd.*
FROM (SELECT 1) AS one LEFT JOIN upd ON true"""

# The summary row is unique on conversation_id; the lead changes only if this delivery inserted
# it (one statement, so one transaction). Status only moves up the ladder; 'closed' is final
# here (array_position gives NULL for it, and NULL never compares greater).
INSERT_CALL_SUMMARY = f"""
WITH ins AS (
    INSERT INTO call_summaries (organization_id, lead_id, conversation_id, summary,
                                classification, payload)
    VALUES (:organization_id, :lead_id, :conversation_id, :summary, :classification,
            :payload::jsonb)
    ON CONFLICT (conversation_id) DO NOTHING
    RETURNING lead_id
), upd AS (
    UPDATE leads SET
        interaction_count = interaction_count + 1,
        last_summary = COALESCE(:summary, last_summary),
        customer_name = COALESCE(:customer_name, customer_name),
        bike_interest = bike_interest || :bike_interest::jsonb,
        qualification_data = qualification_data || :qualification_data::jsonb,
        status = CASE
            WHEN array_position({_STATUS_LADDER}, :status::text)
                 > array_position({_STATUS_LADDER}, status)
            THEN :status ELSE status END,
        last_contact_at = now(),
        version = version + 1,
        updated_at = now()
    WHERE id = (SELECT lead_id FROM ins)
    RETURNING {LEAD_COLUMNS}
)
SELECT (SELECT count(*) FROM ins) AS inserted, upd.*
FROM (SELECT 1) AS one LEFT JOIN upd ON true"""

PURGE_OLD_ROWS = """
WITH old_messages AS (
    DELETE FROM messages WHERE created_at < now() - make_interval(days => :days) RETURNING 1
), old_summaries AS (
    DELETE FROM call_summaries WHERE created_at < now() - make_interval(days => :days)
    RETURNING 1
)
SELECT (SELECT count(*) FROM old_messages) AS messages,
       (SELECT count(*) FROM old_summaries) AS call_summaries"""


class Queryable(Protocol):
    """What the repository needs from :class:`leadlookup.db.Database`."""

    def query(
        self,
        sql: str,
        params: dict[str, Any] | None = None,
        *,
        deadline: float | None = None,
        retry: bool = True,
    ) -> list[dict[str, Any]]: ...


class Repository:
    """Leads and organizations in PostgreSQL; one round trip per method call unless noted."""

    def __init__(self, db: Queryable) -> None:
        self.db = db

    def find_lead(
        self, organization_id: str, phone_normalized: str, deadline: float | None = None
    ) -> Lead | None:
        """The lead of this organization and number, if any."""
        rows = self.db.query(
            SELECT_LEAD_BY_PHONE,
            {"organization_id": organization_id, "phone_normalized": phone_normalized},
            deadline=deadline,
        )
        return Lead.from_json(rows[0]) if rows else None

    def find_or_create_lead(
        self,
        organization_id: str,
        phone_number: str,
        phone_normalized: str,
        deadline: float | None = None,
    ) -> Lead | None:
        """The lead of this organization and number, created if missing (one round trip)."""
        rows = self.db.query(
            FIND_OR_CREATE_LEAD,
            {
                "organization_id": organization_id,
                "phone_number": phone_number,
                "phone_normalized": phone_normalized,
            },
            deadline=deadline,
        )
        return Lead.from_json(rows[0]) if rows else None

    def get_lead(self, lead_id: str) -> Lead | None:
        """The lead with this id, if any."""
        rows = self.db.query(SELECT_LEAD_BY_ID, {"id": lead_id})
        return Lead.from_json(rows[0]) if rows else None

    def organization_for_phone(
        self,
        phone_normalized: str,
        national: str,
        default_id: str,
        deadline: float | None = None,
    ) -> Organization | None:
        """The organization dialled, else the default one (None only if that is missing)."""
        rows = self.db.query(
            SELECT_ORGANIZATION_BY_PHONE,
            {"phone_normalized": phone_normalized, "national": national, "default_id": default_id},
            deadline=deadline,
        )
        return Organization.from_json(rows[0]) if rows else None

    def organization(
        self, organization_id: str, deadline: float | None = None
    ) -> Organization | None:
        """The organization with this id, if any."""
        rows = self.db.query(SELECT_ORGANIZATION_BY_ID, {"id": organization_id}, deadline=deadline)
        return Organization.from_json(rows[0]) if rows else None

    def upsert_organization(self, org: Organization) -> tuple[Organization, str | None]:
        """Create or replace an organization; also returns its previous normalized number."""
        try:
            rows = self.db.query(
                UPSERT_ORGANIZATION,
                {
                    "id": org.id,
                    "name": org.name,
                    "phone_number": org.phone_number,
                    "phone_normalized": org.phone_number_normalized,
                    "settings": org.settings,
                },
                retry=False,
            )
        except Conflict:
            # The id is the upsert's conflict target, so only a number can collide.
            raise Conflict("field 'phone_number' belongs to another organization") from None
        row = rows[0]
        return Organization.from_json(row), row["previous_phone_normalized"]

    def update_lead(self, lead: Lead, expected_version: int) -> Lead | None:
        """Write ``lead``'s editable fields if its version is still ``expected_version``."""
        rows = self.db.query(
            UPDATE_LEAD,
            {
                "id": lead.id,
                "version": expected_version,
                "customer_name": lead.customer_name,
                "email": lead.email,
                "status": lead.status,
                "sentiment": lead.sentiment,
                "bike_interest": lead.bike_interest,
                "qualification_data": lead.qualification_data,
                "notes": lead.notes,
            },
            retry=False,
        )
        return Lead.from_json(rows[0]) if rows else None

    def delete_lead(self, lead_id: str) -> tuple[str, str] | None:
        """Erase the lead and (by cascade) its messages and summaries; its cache identity."""
        rows = self.db.query(DELETE_LEAD, {"id": lead_id})
        if not rows:
            return None
        return str(rows[0]["organization_id"]), rows[0]["phone_number_normalized"]

    def insert_inbound_message(
        self, message: InboundMessage, organization_id: str, lead_id: str | None
    ) -> tuple[bool, Lead | None]:
        """Store an inbound SMS once; (inserted, the lead as updated)."""
        row = self.db.query(
            INSERT_INBOUND_MESSAGE,
            {
                "organization_id": organization_id,
                "lead_id": lead_id,
                "external_id": message.message_sid,
                "from_number": message.from_number,
                "to_number": message.to_number,
                "body": message.body,
                "params": message.params,
                "opt_change": message.opt_change,
            },
        )[0]
        return bool(row["inserted"]), _lead_or_none(row)

    def insert_call_summary(
        self, call: PostCall, organization_id: str | None, lead_id: str | None
    ) -> tuple[bool, Lead | None]:
        """Store a call summary once and merge it into the lead; (inserted, the lead as merged)."""
        row = self.db.query(
            INSERT_CALL_SUMMARY,
            {
                "conversation_id": call.conversation_id,
                "organization_id": organization_id,
                "lead_id": lead_id,
                "summary": call.summary,
                "classification": call.classification,
                "payload": call.payload,
                "customer_name": call.customer_name,
                "bike_interest": call.bike_interest,
                "qualification_data": call.qualification_data,
                "status": call.status,
            },
        )[0]
        return bool(row["inserted"]), _lead_or_none(row)

    def purge(self, retention_days: int) -> dict[str, int]:
        """Delete messages and call summaries older than the retention period."""
        row = self.db.query(PURGE_OLD_ROWS, {"days": retention_days})[0]
        return {"messages": int(row["messages"]), "call_summaries": int(row["call_summaries"])}


def _lead_or_none(row: dict[str, Any]) -> Lead | None:
    # A LEFT JOIN row: the lead's columns are NULL when no lead was written.
    return Lead.from_json(row) if row.get("id") is not None else None
