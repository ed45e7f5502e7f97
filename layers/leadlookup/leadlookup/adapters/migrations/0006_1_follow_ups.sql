-- The post-call follow-up that started the current 30-minute window (the conversation id), so
-- a redelivered post-call report claims its own window again instead of being rate limited.
ALTER TABLE leads ADD COLUMN last_automation_key text;
