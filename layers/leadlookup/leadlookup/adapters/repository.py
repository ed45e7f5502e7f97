"""The only module that speaks SQL: named statements over :class:`~.db.Database`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from leadlookup.domain import inbox, status
from leadlookup.domain.delivery import FAILED_STATUSES
from leadlookup.domain.models import (
    PHONE,
    SMS,
    InboundMessage,
    Lead,
    Organization,
    PostCall,
)
from leadlookup.errors import Conflict

LEAD_COLUMNS = (
    "id, organization_id, phone_number, phone_number_normalized, customer_name, email, status, "
    "sentiment, bike_interest, qualification_data, notes, last_summary, interaction_count, "
    "last_contact_at, opted_out_at, created_at, updated_at, version, write_seq, human_control, "
    "callback_requested_at"
)
ORG_COLUMNS = "id, name, phone_number, phone_number_normalized, settings"


def lead_history(lead_id: str, new_calls: str = "", new_messages: str = "") -> str:
    """The ``history`` column of a lead row (SQL text): its recent calls and texts, newest first.

    One json column of the statement that returns the row, so that a cache miss stays one
    round trip and the cached (or written-through) lead carries its conversation_context:
    the last three call summaries and the last inbound and outbound texts, each cut to 300
    characters (the rendered context is capped at 1500). Only phone calls are calls: the
    reports of text conversations stay out. ``lead_id`` is the SQL expression of the row's id.
    A statement that inserts a summary or message in a CTE passes that CTE's rows as
    ``new_calls`` (created_at, summary, classification, channel) or ``new_messages``
    (direction, created_at, body): the statement's own snapshot does not see them in the
    tables.
    """
    calls = (
        "SELECT created_at, summary, classification, channel FROM call_summaries "
        f"WHERE lead_id = {lead_id}"
    )
    messages = f"SELECT direction, created_at, body FROM messages WHERE lead_id = {lead_id}"
    if new_calls:
        calls += f" UNION ALL {new_calls}"
    if new_messages:
        messages += f" UNION ALL {new_messages}"
    texts = [
        f"""(SELECT '{direction}', m.created_at, left(m.body, 300), NULL
         FROM ({messages}) AS m WHERE m.direction = '{direction}' AND m.body <> ''
         ORDER BY m.created_at DESC LIMIT 1)"""
        for direction in ("inbound", "outbound")
    ]
    return f"""COALESCE((
    SELECT json_agg(h ORDER BY h.at DESC) FROM (
        (SELECT 'call' AS kind, c.created_at AS at, left(c.summary, 300) AS text,
                c.classification
         FROM ({calls}) AS c WHERE c.summary <> '' AND c.channel = '{PHONE}'
         ORDER BY c.created_at DESC LIMIT 3)
        UNION ALL {texts[0]}
        UNION ALL {texts[1]}
    ) AS h), '[]'::json) AS history"""


# What a statement reading a lead from `leads` (or a row source aliased so) selects.
LEAD_ROW = f"{LEAD_COLUMNS}, {lead_history('leads.id')}"

SELECT_LEAD_BY_PHONE = f"""
SELECT {LEAD_ROW} FROM leads
WHERE organization_id = :organization_id AND phone_number_normalized = :phone_normalized"""

# One round trip for a first contact: the migration-defined function runs the SELECT, then
# INSERT ... ON CONFLICT DO NOTHING RETURNING, then SELECT again (see 0003_*.sql for why).
# ``created``: the row was inserted by this statement (its created_at is this transaction's
# start; a row found is older), so the store's inbox changed.
FIND_OR_CREATE_LEAD = f"""
SELECT {LEAD_ROW}, leads.created_at = now() AS created
FROM find_or_create_lead(:organization_id, :phone_number, :phone_normalized) AS leads"""

SELECT_LEAD_BY_ID = f"SELECT {LEAD_ROW} FROM leads WHERE id = :id"

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
# One statement, so one transaction: the fields, the version (it is the ETag) and the notes
# of what changed (:notes, a JSON list of {text, params}: take over, hand back, edits, a
# cleared callback request), each a 'system' row of the history with who did it.
UPDATE_LEAD = f"""
WITH upd AS (
    UPDATE leads SET
        customer_name = :customer_name, email = :email, status = :status,
        sentiment = :sentiment, bike_interest = :bike_interest::jsonb,
        qualification_data = :qualification_data::jsonb, notes = :notes,
        human_control = :human_control,
        callback_requested_at = CAST(:callback_requested_at AS timestamptz),
        version = version + 1, updated_at = now()
    WHERE id = :id AND version = :version
    RETURNING {LEAD_COLUMNS}
), note AS (
    INSERT INTO messages (organization_id, lead_id, external_id, direction, sender_kind, body,
                          params, staff_sub, staff_email)
    SELECT upd.organization_id, upd.id, 'system:' || gen_random_uuid(), 'system', 'system',
           n.value ->> 'text', CAST(n.value -> 'params' AS jsonb), :staff_sub, :staff_email
    FROM upd CROSS JOIN json_array_elements(CAST(:note_list AS json)) AS n
    RETURNING 1
)
SELECT upd.*, {lead_history("upd.id")} FROM upd"""

# Messages and call summaries go with the lead (ON DELETE CASCADE).
# An erasure by a staff member is recorded (lead_erasures, migration 0009) in the same
# transaction, without anything of the customer. :organization_id, when given, is the store
# the caller was allowed to erase in.
DELETE_LEAD = """
WITH del AS (
    DELETE FROM leads
    WHERE id = :id
      AND (CAST(:organization_id AS uuid) IS NULL
           OR organization_id = CAST(:organization_id AS uuid))
    RETURNING id, organization_id, phone_number_normalized
), erasure AS (
    INSERT INTO lead_erasures (organization_id, lead_id, staff_sub, staff_email)
    SELECT organization_id, id, :staff_sub, :staff_email FROM del
    WHERE CAST(:staff_sub AS text) IS NOT NULL
    RETURNING 1
)
SELECT organization_id, phone_number_normalized FROM del"""

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
    RETURNING lead_id, direction, created_at, body
), upd AS (
    UPDATE leads SET
        last_contact_at = now(),
        last_activity_at = GREATEST(last_activity_at, now()),
        opted_out_at = CASE :opt_change
            WHEN 'out' THEN COALESCE(opted_out_at, now())
            WHEN 'in' THEN NULL
            ELSE opted_out_at END
    WHERE id = (SELECT lead_id FROM ins)
    RETURNING {LEAD_COLUMNS}
)
SELECT (SELECT count(*) FROM ins) AS inserted, upd.*,
    {lead_history("upd.id", new_messages="SELECT direction, created_at, body FROM ins")}
FROM (SELECT 1) AS one LEFT JOIN upd ON true"""

_NEW_CALL = "SELECT created_at, summary, classification, channel FROM ins"
# The summary row is unique on conversation_id; the lead changes only if this delivery inserted
# it (one statement, so one transaction). Status only moves up the ladder; 'closed' is final
# here (array_position gives NULL for it, and NULL never compares greater). A text
# conversation (:calls 0) touches the lead only to flag a callback request. A callback
# request also leaves a 'system' row in the lead's messages, keyed by the conversation
# (PostgreSQL runs a data-modifying CTE whether or not the query reads it).
INSERT_CALL_SUMMARY = f"""
WITH ins AS (
    INSERT INTO call_summaries (organization_id, lead_id, conversation_id, summary,
                                classification, payload, channel)
    VALUES (:organization_id, :lead_id, :conversation_id, :summary, :classification,
            :payload::jsonb, :channel)
    ON CONFLICT (conversation_id) DO NOTHING
    RETURNING lead_id, created_at, summary, classification, channel
), upd AS (
    UPDATE leads SET
        interaction_count = interaction_count + :calls,
        last_summary = COALESCE(:lead_summary, last_summary),
        customer_name = COALESCE(:customer_name, customer_name),
        bike_interest = bike_interest || :bike_interest::jsonb,
        qualification_data = qualification_data || :qualification_data::jsonb,
        status = {status.sql_upgrade("status", ":status")},
        callback_requested_at = CASE WHEN :callback
            THEN COALESCE(callback_requested_at, now()) ELSE callback_requested_at END,
        last_contact_at = CASE WHEN :calls > 0 THEN now() ELSE last_contact_at END,
        last_activity_at = CASE WHEN :calls > 0 THEN GREATEST(last_activity_at, now())
                                ELSE last_activity_at END,
        version = version + 1,
        updated_at = now()
    WHERE id = (SELECT lead_id FROM ins) AND (:calls > 0 OR :callback)
    RETURNING {LEAD_COLUMNS}
), note AS (
    INSERT INTO messages (organization_id, lead_id, external_id, direction, sender_kind, body,
                          params)
    SELECT organization_id, id, :note_key, 'system', 'system', :note, :note_params::jsonb
    FROM upd WHERE :callback
    ON CONFLICT (external_id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS inserted, upd.*,
    {lead_history("upd.id", new_calls=_NEW_CALL)}
FROM (SELECT 1) AS one LEFT JOIN upd ON true"""
# The history row of a callback request (what staff read in GET /leads/{id}/messages).
CALLBACK_NOTE = "Customer asked for a manager callback"

PURGE_OLD_ROWS = """
WITH old_messages AS (
    DELETE FROM messages WHERE created_at < now() - make_interval(days => :days) RETURNING 1
), old_summaries AS (
    DELETE FROM call_summaries WHERE created_at < now() - make_interval(days => :days)
    RETURNING 1
)
SELECT (SELECT count(*) FROM old_messages) AS messages,
       (SELECT count(*) FROM old_summaries) AS call_summaries"""


# -- SMS replies ------------------------------------------------------------------------------

MESSAGE_COLUMNS = (
    "id, lead_id, external_id, direction, sender_kind, from_number, to_number, body, "
    "twilio_sid, status, error_code, status_updated_at, created_at, staff_sub, staff_email"
)

# What the reply decision needs, in one round trip: the lead's flags, whether this inbound
# text was already answered (a redelivery), and the texts before it, newest first (the
# history's notes are no texts).
SELECT_REPLY_CONTEXT = """
SELECT l.opted_out_at IS NOT NULL AS opted_out, l.human_control,
       EXISTS (SELECT 1 FROM messages WHERE external_id = :reply_key) AS replied,
       COALESCE((
           SELECT json_agg(json_build_object('direction', h.direction, 'body', h.body)
                           ORDER BY h.created_at DESC, h.id DESC)
           FROM (SELECT direction, body, created_at, id FROM messages
                 WHERE lead_id = l.id AND external_id <> :external_id
                   AND direction <> 'system'
                 ORDER BY created_at DESC, id DESC LIMIT :history) AS h
       ), '[]'::json) AS history
FROM leads l WHERE l.id = :lead_id"""

# external_id is the job key, so an outcome delivered twice is stored once. A stored text
# rewrites its lead (its last activity; the trigger gives it a new write_seq) and returns it
# with that text in its history, so the cached lead's conversation_context shows it.
INSERT_OUTBOUND_MESSAGE = f"""
WITH ins AS (
    INSERT INTO messages (organization_id, lead_id, external_id, direction, sender_kind,
                          from_number, to_number, body, params, twilio_sid, status, error_code,
                          staff_sub, staff_email)
    VALUES (:organization_id, :lead_id, :external_id, 'outbound', :sender_kind, :from_number,
            :to_number, :body, :params::jsonb, :twilio_sid, :status,
            CAST(:error_code AS integer), :staff_sub, :staff_email)
    ON CONFLICT (external_id) DO NOTHING
    RETURNING lead_id, direction, created_at, body
), upd AS (
    UPDATE leads SET last_activity_at = GREATEST(last_activity_at, now())
    WHERE id = (SELECT lead_id FROM ins)
    RETURNING {LEAD_COLUMNS}
)
SELECT (SELECT count(*) FROM ins) AS inserted, upd.*,
    {lead_history("upd.id", new_messages="SELECT direction, created_at, body FROM ins")}
FROM (SELECT 1) AS one LEFT JOIN upd ON true"""

# Twilio refused a text because the recipient opted out (error 21610): mirror it on the lead.
MARK_OPTED_OUT = f"""
UPDATE leads SET opted_out_at = now()
WHERE id = :id AND opted_out_at IS NULL
RETURNING {LEAD_ROW}"""

# Newest first; the cursor is the (created_at, id) of the last row of the previous page.
SELECT_MESSAGES_PAGE = f"""
SELECT {MESSAGE_COLUMNS} FROM messages
WHERE lead_id = :lead_id
  AND (CAST(:before_at AS timestamptz) IS NULL
       OR (created_at, id) < (CAST(:before_at AS timestamptz), CAST(:before_id AS uuid)))
ORDER BY created_at DESC, id DESC
LIMIT :limit"""

# -- the staff inbox and timeline (domain/inbox.py: parameters, cursors, attention) -----------

_FAILED = ", ".join(f"'{name}'" for name in sorted(FAILED_STATUSES))
# Why a lead needs attention, in domain/inbox.py's order: the first reason that holds.
_ATTENTION = f"""
    CASE WHEN l.opted_out_at IS NULL AND unanswered.since IS NOT NULL
              THEN '{inbox.UNANSWERED_TEXT}'
         WHEN l.callback_requested_at IS NOT NULL THEN '{inbox.CALLBACK_REQUESTED}'
         WHEN l.opted_out_at IS NULL AND last_out.status IN ({_FAILED})
              THEN '{inbox.DELIVERY_FAILED}'
         WHEN l.opted_out_at IS NULL AND last_out.sender_kind = 'fallback'
              THEN '{inbox.FALLBACK_SENT}'
    END AS reason,
    CASE WHEN l.opted_out_at IS NULL AND unanswered.since IS NOT NULL THEN unanswered.since
         WHEN l.callback_requested_at IS NOT NULL THEN l.callback_requested_at
         WHEN l.opted_out_at IS NULL AND last_out.status IN ({_FAILED})
              THEN COALESCE(last_out.status_updated_at, last_out.created_at)
         WHEN l.opted_out_at IS NULL AND last_out.sender_kind = 'fallback'
              THEN last_out.created_at
    END AS since"""

_TROUBLE = f"m.direction = 'outbound' AND (m.sender_kind = 'fallback' OR m.status IN ({_FAILED}))"


def list_leads_sql(scope: str) -> str:
    """One page of the inbox in one round trip; ``scope`` is the SQL condition on ``l`` of
    the stores it covers (:func:`Repository.list_leads`).

    Leads needing attention first, then newest activity (``leads.last_activity_at``, kept by
    the statements that store texts and calls), then id: the cursor is that key of the
    page's last row. Only the few leads that can need attention are looked at closely: those
    under human control or asking for a callback, and those with a fallback or a failed
    delivery among their texts (leads_attention_idx, messages_outbound_trouble_idx); the rest
    of the page is an index scan in activity order (leads_inbox_idx), so a page costs about
    the same in a store of a thousand leads as in one of a hundred thousand (BENCHMARKS.md,
    "The staff inbox").
    """
    filters = """
      AND (CAST(:statuses AS json) IS NULL
           OR l.status IN (SELECT json_array_elements_text(CAST(:statuses AS json))))
      AND (CAST(:phone AS text) IS NULL OR l.phone_number_normalized = :phone)
      AND (CAST(:name_like AS text) IS NULL
           OR l.customer_name ILIKE :name_like
           OR (CAST(:digits_like AS text) IS NOT NULL
               AND l.phone_number_normalized LIKE :digits_like))"""
    return f"""
WITH needing AS (
    SELECT l.id, l.last_activity_at, attention.reason, attention.since
    FROM (
        SELECT l.id FROM leads l
        WHERE {scope} AND (l.human_control OR l.callback_requested_at IS NOT NULL)
        UNION
        SELECT m.lead_id FROM messages m
        WHERE {scope.replace("l.", "m.")} AND {_TROUBLE}
    ) AS candidate
    -- One index lookup per candidate: OFFSET 0 keeps the planner from turning the lookups
    -- into a hash join over every lead of the table.
    CROSS JOIN LATERAL (SELECT * FROM leads WHERE leads.id = candidate.id OFFSET 0) AS l
    LEFT JOIN LATERAL (
        SELECT m.created_at, m.sender_kind, m.status, m.status_updated_at FROM messages m
        WHERE m.lead_id = l.id AND m.direction = 'outbound'
        ORDER BY m.created_at DESC, m.id DESC LIMIT 1
    ) AS last_out ON true
    LEFT JOIN LATERAL (
        SELECT m.created_at AS since FROM messages m
        WHERE l.human_control AND m.lead_id = l.id AND m.direction = 'inbound'
          AND m.created_at > COALESCE(last_out.created_at, '-infinity')
        ORDER BY m.created_at, m.id LIMIT 1
    ) AS unanswered ON true
    CROSS JOIN LATERAL (SELECT {_ATTENTION}) AS attention
    WHERE attention.reason IS NOT NULL {filters}
), page AS (
    (SELECT id AS page_id, last_activity_at, reason, since FROM needing
     WHERE CAST(:attention AS boolean) IS DISTINCT FROM false
       AND (CAST(:after_flag AS integer) IS NULL
            OR (CAST(:after_flag AS integer) = 1
                AND (last_activity_at, id)
                    < (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid))))
     ORDER BY last_activity_at DESC, id DESC LIMIT :limit)
    UNION ALL
    (SELECT l.id, l.last_activity_at, NULL, NULL FROM leads l
     WHERE CAST(:attention AS boolean) IS DISTINCT FROM true AND {scope} {filters}
       AND l.id NOT IN (SELECT id FROM needing)
       AND (CAST(:after_flag AS integer) IS DISTINCT FROM 0
            OR (l.last_activity_at, l.id)
               < (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid)))
     ORDER BY l.last_activity_at DESC, l.id DESC LIMIT :limit)
)
SELECT lead.*, page.last_activity_at, page.reason AS attention_reason,
       page.since AS attention_since
FROM page CROSS JOIN LATERAL (
    SELECT {LEAD_ROW} FROM leads WHERE leads.id = page.page_id OFFSET 0
) AS lead
ORDER BY page.reason IS NOT NULL DESC, page.last_activity_at DESC, lead.id DESC
LIMIT :limit"""


_BEFORE = """(CAST(:before_at AS timestamptz) IS NULL
           OR ({at}, {id}) < (CAST(:before_at AS timestamptz), CAST(:before_id AS uuid)))"""
# One page of a lead's timeline, newest first, in one round trip: its texts and notes
# (messages) and its calls (call_summaries), each side cut to the page before they are
# merged. The first column is the lead's store (NULL: no such lead), for the caller's
# authorization; a lead without items still gives that one row. A call's direction and
# duration come from the stored report (missing or malformed: NULL), its transcript only when
# asked for.
TIMELINE_PAGE = f"""
WITH lead AS (
    SELECT id, organization_id FROM leads WHERE id = :lead_id
), items AS (
    (SELECT CASE WHEN m.direction = 'system' THEN 'note' ELSE 'text' END AS kind,
            m.id, m.created_at AS at, m.direction, m.sender_kind, m.body, m.status,
            m.error_code, NULL AS channel, NULL::numeric AS duration_seconds,
            NULL AS classification, NULL AS summary, NULL AS conversation_id,
            NULL::jsonb AS transcript, m.staff_sub, m.staff_email
     FROM messages m
     WHERE m.lead_id = (SELECT id FROM lead)
       AND {_BEFORE.format(at="m.created_at", id="m.id")}
     ORDER BY m.created_at DESC, m.id DESC LIMIT :limit)
    UNION ALL
    (SELECT 'call', c.id, c.created_at,
            CASE WHEN c.payload #>> '{{data,metadata,phone_call,direction}}' = 'outbound'
                 THEN 'outbound' ELSE 'inbound' END,
            NULL, NULL, NULL, NULL, c.channel,
            CASE WHEN jsonb_typeof(c.payload #> '{{data,metadata,call_duration_secs}}')
                      = 'number'
                 THEN CAST(c.payload #>> '{{data,metadata,call_duration_secs}}' AS numeric)
            END,
            c.classification, c.summary, c.conversation_id,
            CASE WHEN CAST(:transcripts AS boolean)
                 THEN c.payload #> '{{data,transcript}}' END,
            c.staff_sub, c.staff_email
     FROM call_summaries c
     WHERE c.lead_id = (SELECT id FROM lead) AND c.channel <> '{SMS}'
       AND {_BEFORE.format(at="c.created_at", id="c.id")}
     ORDER BY c.created_at DESC, c.id DESC LIMIT :limit)
)
SELECT lead.organization_id AS lead_organization_id, page.*
FROM (SELECT 1) AS one
LEFT JOIN lead ON true
LEFT JOIN LATERAL (SELECT * FROM items ORDER BY at DESC, id DESC LIMIT :limit) AS page
    ON lead.id IS NOT NULL
ORDER BY page.at DESC, page.id DESC"""

# A status callback, applied only if it ranks above the stored status. The ranking travels
# as a parameter (:ranks, replies.delivery.STATUS_RANK as JSON), so it is defined once;
# callbacks arriving late or twice change nothing. The rank condition is on the row itself,
# so concurrent callbacks of one message are ordered by its row lock and the higher wins.
UPDATE_DELIVERY_STATUS = """
WITH upd AS (
    UPDATE messages SET
        status = :status,
        error_code = COALESCE(CAST(:error_code AS integer), error_code),
        status_updated_at = now()
    WHERE twilio_sid = :twilio_sid AND direction = 'outbound'
      AND COALESCE((CAST(:ranks AS jsonb) ->> status)::integer, 0)
          < (CAST(:ranks AS jsonb) ->> CAST(:status AS text))::integer
    RETURNING lead_id, organization_id
)
SELECT EXISTS (SELECT 1 FROM messages
               WHERE twilio_sid = :twilio_sid AND direction = 'outbound') AS found,
       (SELECT count(*) FROM upd) AS updated,
       (SELECT lead_id FROM upd LIMIT 1) AS lead_id,
       (SELECT organization_id FROM upd LIMIT 1) AS organization_id"""

# The follow-up rate limit as one atomic claim: one automation per lead per window, never to
# an opted-out number or a lead staff have taken over. The same key (a redelivered report)
# claims its own window again.
CLAIM_AUTOMATION = f"""
UPDATE leads SET
    last_automation_at = CASE WHEN last_automation_key IS NOT DISTINCT FROM :key
                              THEN last_automation_at ELSE now() END,
    last_automation_key = :key
WHERE id = :id AND opted_out_at IS NULL AND NOT human_control
  AND (last_automation_at IS NULL
       OR last_automation_at < now() - make_interval(secs => :window_seconds)
       OR last_automation_key = :key)
RETURNING {LEAD_ROW}"""


class Queryable(Protocol):
    """What the repository needs from :class:`leadlookup.adapters.db.Database`."""

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
    ) -> tuple[Lead, bool] | None:
        """The lead of this organization and number, created if missing, and whether this
        call created it (one round trip)."""
        rows = self.db.query(
            FIND_OR_CREATE_LEAD,
            {
                "organization_id": organization_id,
                "phone_number": phone_number,
                "phone_normalized": phone_normalized,
            },
            deadline=deadline,
        )
        return (Lead.from_json(rows[0]), bool(rows[0]["created"])) if rows else None

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

    def update_lead(
        self,
        lead: Lead,
        expected_version: int,
        notes: list[dict[str, Any]],
        actor: Mapping[str, str | None] | None = None,
    ) -> Lead | None:
        """Write ``lead``'s editable fields if its version is still ``expected_version``, with
        ``notes`` ({text, params}) in its history, signed by ``actor`` ({sub, email})."""
        rows = self.db.query(
            UPDATE_LEAD,
            {
                "note_list": notes,
                "staff_sub": (actor or {}).get("sub"),
                "staff_email": (actor or {}).get("email"),
                "human_control": lead.human_control,
                "callback_requested_at": lead.callback_requested_at,
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

    def delete_lead(
        self,
        lead_id: str,
        organization_id: str | None = None,
        actor: Mapping[str, str | None] | None = None,
    ) -> tuple[str, str] | None:
        """Erase the lead (of ``organization_id``, when given) and by cascade its messages and
        summaries; ``actor``'s erasure is recorded. Its cache identity, or None."""
        rows = self.db.query(
            DELETE_LEAD,
            {
                "id": lead_id,
                "organization_id": organization_id,
                "staff_sub": (actor or {}).get("sub"),
                "staff_email": (actor or {}).get("email"),
            },
        )
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
        """Store a call summary once and merge it into the lead; (inserted, the lead as merged).

        Only a phone call is merged and counted; the report of a text conversation is stored
        and leaves the lead as it is, unless it asks for a callback. The lead comes back only
        when it was written.
        """
        is_call = call.channel == PHONE
        row = self.db.query(
            INSERT_CALL_SUMMARY,
            {
                "conversation_id": call.conversation_id,
                "organization_id": organization_id,
                "lead_id": lead_id,
                "summary": call.summary,
                "classification": call.classification,
                "payload": call.payload,
                "channel": call.channel,
                "calls": 1 if is_call else 0,
                "lead_summary": call.summary if is_call else None,
                "customer_name": call.customer_name if is_call else None,
                "bike_interest": call.bike_interest if is_call else {},
                "qualification_data": call.qualification_data if is_call else {},
                "status": call.status if is_call else None,
                "callback": call.callback_requested,
                "note_key": f"callback:{call.conversation_id}",
                "note": CALLBACK_NOTE,
                "note_params": {
                    "callback_requested": True,
                    "conversation_id": call.conversation_id,
                },
            },
        )[0]
        return bool(row["inserted"]), _lead_or_none(row)

    def purge(self, retention_days: int) -> dict[str, int]:
        """Delete messages and call summaries older than the retention period."""
        row = self.db.query(PURGE_OLD_ROWS, {"days": retention_days})[0]
        return {"messages": int(row["messages"]), "call_summaries": int(row["call_summaries"])}

    # -- SMS replies ----------------------------------------------------------------------

    def reply_context(
        self, lead_id: str, external_id: str, reply_key: str, history: int
    ) -> dict[str, Any] | None:
        """The lead's opt-out and control flags, whether it was answered, the texts before."""
        rows = self.db.query(
            SELECT_REPLY_CONTEXT,
            {
                "lead_id": lead_id,
                "external_id": external_id,
                "reply_key": reply_key,
                "history": history,
            },
        )
        return rows[0] if rows else None

    def insert_outbound_message(self, **fields: Any) -> tuple[bool, Lead | None]:
        """Store an outbound text once (keyed by its job key); (new, its rewritten lead).

        ``staff_sub`` and ``staff_email`` name who wrote a staff text (absent: nobody)."""
        row = self.db.query(
            INSERT_OUTBOUND_MESSAGE, {"staff_sub": None, "staff_email": None, **fields}
        )[0]
        return bool(row["inserted"]), _lead_or_none(row)

    def update_delivery_status(
        self, twilio_sid: str, status: str, error_code: int | None, ranks: Mapping[str, int]
    ) -> tuple[bool, str | None, str | None] | None:
        """Raise the outbound text's status to ``status`` if it ranks higher in ``ranks``.

        None when no outbound text has that SID; else (whether it changed, its lead id, its
        store's id).
        """
        row = self.db.query(
            UPDATE_DELIVERY_STATUS,
            {
                "twilio_sid": twilio_sid,
                "status": status,
                "error_code": error_code,
                "ranks": dict(ranks),
            },
        )[0]
        if not row["found"]:
            return None
        lead_id, organization_id = row["lead_id"], row["organization_id"]
        return (
            bool(row["updated"]),
            str(lead_id) if lead_id is not None else None,
            str(organization_id) if organization_id is not None else None,
        )

    def mark_opted_out(self, lead_id: str) -> Lead | None:
        """Set the lead's opt-out (if not set yet); the lead when it changed."""
        rows = self.db.query(MARK_OPTED_OUT, {"id": lead_id})
        return Lead.from_json(rows[0]) if rows else None

    def messages_page(
        self, lead_id: str, limit: int, before: tuple[Any, ...] | None
    ) -> list[dict[str, Any]]:
        """One page of a lead's history, newest first."""
        return self.db.query(
            SELECT_MESSAGES_PAGE,
            {
                "lead_id": lead_id,
                "limit": limit,
                "before_at": before[0] if before else None,
                "before_id": before[1] if before else None,
            },
        )

    def list_leads(
        self,
        stores: frozenset[str] | None,
        where: inbox.LeadFilter,
        limit: int,
        after: tuple[Any, ...] | None,
    ) -> list[dict[str, Any]]:
        """One page of the inbox of ``stores`` (None: every store): lead rows with
        ``last_activity_at``, ``attention_reason`` and ``attention_since``."""
        # One store is an equality the index's order serves; several, a list.
        if stores is None:
            scope = "true"
        elif len(stores) == 1:
            scope = "l.organization_id = CAST(:store AS uuid)"
        else:
            scope = "l.organization_id = ANY(CAST(:store_list AS uuid[]))"
        flag, at, row_id = after if after is not None else (None, None, None)
        ordered = sorted(stores or ())
        return self.db.query(
            list_leads_sql(scope),
            {
                "store": ordered[0] if ordered else None,
                "store_list": "{" + ",".join(ordered) + "}",
                "statuses": list(where.statuses) if where.statuses is not None else None,
                "phone": where.phone,
                "name_like": where.name_like,
                "digits_like": where.digits_like,
                "attention": where.attention,
                "after_flag": flag,
                "after_at": at,
                "after_id": row_id,
                "limit": limit,
            },
        )

    def timeline_page(
        self, lead_id: str, limit: int, before: tuple[Any, ...] | None, transcripts: bool
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """The lead's store (None: no such lead) and one page of its timeline, newest first."""
        rows = self.db.query(
            TIMELINE_PAGE,
            {
                "lead_id": lead_id,
                "limit": limit,
                "before_at": before[0] if before else None,
                "before_id": before[1] if before else None,
                "transcripts": transcripts,
            },
        )
        organization_id = rows[0]["lead_organization_id"] if rows else None
        if organization_id is None:
            return None, []
        return str(organization_id), [row for row in rows if row["id"] is not None]

    def claim_automation(self, lead_id: str, key: str, window_seconds: int) -> Lead | None:
        """The lead if the follow-up ``key`` may go out now (its window starts), else None."""
        rows = self.db.query(
            CLAIM_AUTOMATION,
            {"id": lead_id, "key": key, "window_seconds": window_seconds},
            retry=False,
        )
        return Lead.from_json(rows[0]) if rows else None


def _lead_or_none(row: dict[str, Any]) -> Lead | None:
    # A LEFT JOIN row: the lead's columns are NULL when no lead was written.
    return Lead.from_json(row) if row.get("id") is not None else None
