-- Who did what (README.md, "Staff API"): every staff action keeps the signed-in staff
-- member's subject (the token's `sub`) and email with the row that records it.
--
-- Texts and notes (take over, hand back, edits, a cleared callback request) are rows of
-- `messages`: a staff text is an outbound row of sender_kind 'staff', a note a 'system' row.
-- Rows written by the agent, the customer or the system have no staff member.
ALTER TABLE messages ADD COLUMN staff_sub text;
ALTER TABLE messages ADD COLUMN staff_email text;
-- A call a staff member placed: who placed it, shown with its report in the timeline.
ALTER TABLE call_summaries ADD COLUMN staff_sub text;
ALTER TABLE call_summaries ADD COLUMN staff_email text;

-- An erasure takes the lead, its texts and its calls with it (ON DELETE CASCADE), so its
-- record lives apart and keeps nothing of the customer: no number, no name, no text; only
-- which store, the lead's random id (which now names nothing), who erased it and when.
CREATE TABLE lead_erasures (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    lead_id uuid NOT NULL,
    staff_sub text NOT NULL,
    staff_email text,
    erased_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lead_erasures_organization_idx ON lead_erasures (organization_id, erased_at DESC);

-- The timeline reads a lead's calls newest first, a page at a time, like its texts
-- (messages_lead_history_idx); the inbox reads each lead's newest call.
CREATE INDEX call_summaries_lead_history_idx ON call_summaries (lead_id, created_at DESC, id DESC);

-- The inbox's order (README.md, "Staff API"): each lead's newest text or phone call, kept on
-- the row by the statements that store them (adapters/repository.py), so that a page of a
-- store's inbox reads an index instead of every lead's history. A lead's creation counts.
ALTER TABLE leads ADD COLUMN last_activity_at timestamptz;
UPDATE leads SET last_activity_at = GREATEST(
    created_at,
    last_contact_at,
    (SELECT max(m.created_at) FROM messages m
     WHERE m.lead_id = leads.id AND m.direction <> 'system'),
    (SELECT max(c.created_at) FROM call_summaries c
     WHERE c.lead_id = leads.id AND c.channel = 'phone'));
ALTER TABLE leads ALTER COLUMN last_activity_at SET DEFAULT now();
ALTER TABLE leads ALTER COLUMN last_activity_at SET NOT NULL;
CREATE INDEX leads_inbox_idx ON leads (organization_id, last_activity_at DESC, id DESC);
-- The few leads that may need attention: under human control or asking for a callback, and
-- those whose texts went wrong (a fallback sent, a delivery failed).
CREATE INDEX leads_attention_idx ON leads (organization_id)
    WHERE human_control OR callback_requested_at IS NOT NULL;
CREATE INDEX messages_outbound_trouble_idx ON messages (organization_id, lead_id)
    WHERE direction = 'outbound' AND (sender_kind = 'fallback' OR status IN ('failed', 'undelivered'));
