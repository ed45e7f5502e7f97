-- Post-call reports as the store's live agent sends them.
--
-- ElevenLabs sends a post-call report for every conversation of the workspace, and every SMS
-- reply opens a text conversation: a report is a phone call only when it has a phone line.
-- The others are kept (staff can read what the agent learned) but are not calls: they are not
-- counted, not merged into the lead and not shown as calls in its history. Rows stored before
-- this migration were all counted as calls, so they stay 'phone'.
ALTER TABLE call_summaries ADD COLUMN channel text NOT NULL DEFAULT 'phone'
    CHECK (channel IN ('phone', 'sms', 'web'));

-- The customer asked for a manager to call back: set by the post-call processor (with a
-- 'system' row in the lead's messages), kept at the first request until staff clear it.
ALTER TABLE leads ADD COLUMN callback_requested_at timestamptz;
