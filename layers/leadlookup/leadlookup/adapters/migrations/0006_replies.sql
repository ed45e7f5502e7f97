-- SMS replies, human takeover and follow-ups (design section 3.2a).
-- A lead under human control gets no agent replies until staff hand it back.
ALTER TABLE leads ADD COLUMN human_control boolean NOT NULL DEFAULT false;
-- When the last post-call follow-up was sent: at most one automation per lead per 30 minutes.
ALTER TABLE leads ADD COLUMN last_automation_at timestamptz;

-- A change of control is neither inbound nor outbound: it is a 'system' row of the history.
ALTER TABLE messages DROP CONSTRAINT messages_direction_check;
ALTER TABLE messages ADD CONSTRAINT messages_direction_check
    CHECK (direction IN ('inbound', 'outbound', 'system'));
-- Who wrote the row. Inbound rows stored before this migration are the customer's.
ALTER TABLE messages ADD COLUMN sender_kind text NOT NULL DEFAULT 'customer'
    CHECK (sender_kind IN ('customer', 'agent', 'fallback', 'staff', 'follow_up', 'system'));
-- The Twilio Message SID of an outbound text (external_id is our own job key for those, so
-- a redelivered outcome is stored once) and its status as Twilio reported it, or 'failed'.
ALTER TABLE messages ADD COLUMN twilio_sid text;
ALTER TABLE messages ADD COLUMN status text;
-- The conversation history is read newest first, one lead at a time.
CREATE INDEX messages_lead_history_idx ON messages (lead_id, created_at DESC, id DESC);
