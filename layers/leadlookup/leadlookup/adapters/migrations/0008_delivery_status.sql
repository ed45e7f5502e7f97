-- Delivery status of outbound texts: Twilio posts each change of a message's status to the
-- StatusCallback of its send, and the update is stored on the outbound row it names.
-- The Twilio error code of the last failure (a send refused at once, or a delivery that
-- failed later: 30003-30008, 30034, 21610), and when the status last changed.
ALTER TABLE messages ADD COLUMN error_code integer;
ALTER TABLE messages ADD COLUMN status_updated_at timestamptz;
-- Status callbacks find their row by Twilio's Message SID; inbound rows have none.
CREATE INDEX messages_twilio_sid_idx ON messages (twilio_sid) WHERE twilio_sid IS NOT NULL;
