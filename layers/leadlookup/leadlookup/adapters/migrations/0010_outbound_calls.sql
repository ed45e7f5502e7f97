-- Outbound calls staff ask for (POST /leads/{lead_id}/calls): one row per call, from queued
-- through dialing to completed (its post-call report arrived), failed or expired.
CREATE TABLE outbound_calls (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Erasing a lead erases its calls.
    lead_id uuid NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'dialing', 'failed', 'completed', 'expired')),
    -- The client's Idempotency-Key (or one we drew): the same key, the same call.
    idempotency_key text NOT NULL,
    -- Who asked for it (the signed-in staff member).
    staff_sub text NOT NULL,
    staff_email text,
    -- ElevenLabs' conversation (its post-call report names it) and Twilio's CallSid.
    conversation_id text,
    call_sid text,
    -- Why it failed, in a few words.
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (lead_id, idempotency_key)
);
-- At most one call per lead in progress, enforced here rather than by a read-then-write: a
-- second request inserts nothing (ON CONFLICT DO NOTHING), however close the two come.
CREATE UNIQUE INDEX outbound_calls_one_active_idx ON outbound_calls (lead_id)
    WHERE status IN ('queued', 'dialing');
-- A post-call report finds its call by conversation.
CREATE INDEX outbound_calls_conversation_idx ON outbound_calls (conversation_id)
    WHERE conversation_id IS NOT NULL;

-- One round trip for a call request (p_id: the new call's id, drawn by the caller, which also
-- names its note p_note_key), in this order: the same key answers the call it made;
-- a refusal (p_refusal: opted out, no callable number, no agent number) inserts nothing; calls
-- of this lead still active after p_stale_seconds expire; then the call is inserted unless the
-- lead opted out meanwhile or another call is in progress, with its 'system' note in the
-- lead's history, signed by the staff member (migration 0009). outcome: created, existing, refused, in_progress, opted_out or gone; id and
-- status are the call's (the one in progress for in_progress).
CREATE FUNCTION request_outbound_call(
    p_id uuid,
    p_lead_id uuid,
    p_key text,
    p_staff_sub text,
    p_staff_email text,
    p_refusal text,
    p_stale_seconds integer,
    p_note_key text,
    p_note text,
    p_note_params jsonb
) RETURNS TABLE (outcome text, id uuid, status text)
LANGUAGE plpgsql
AS $$
DECLARE
    v_id uuid;
    v_status text;
    v_org uuid;
BEGIN
    SELECT c.id, c.status INTO v_id, v_status FROM outbound_calls c
    WHERE c.lead_id = p_lead_id AND c.idempotency_key = p_key;
    IF FOUND THEN
        RETURN QUERY SELECT 'existing'::text, v_id, v_status;
        RETURN;
    END IF;
    IF p_refusal IS NOT NULL THEN
        RETURN QUERY SELECT 'refused'::text, NULL::uuid, NULL::text;
        RETURN;
    END IF;
    UPDATE outbound_calls c SET status = 'expired', updated_at = now(),
        error = COALESCE(c.error, 'no outcome or report within the time a call takes')
    WHERE c.lead_id = p_lead_id AND c.status IN ('queued', 'dialing')
      AND c.created_at < now() - make_interval(secs => p_stale_seconds);
    INSERT INTO outbound_calls AS c (id, lead_id, organization_id, idempotency_key, staff_sub,
                                     staff_email)
    SELECT p_id, l.id, l.organization_id, p_key, p_staff_sub, p_staff_email
    FROM leads l WHERE l.id = p_lead_id AND l.opted_out_at IS NULL
    ON CONFLICT DO NOTHING
    RETURNING c.id, c.status, c.organization_id INTO v_id, v_status, v_org;
    IF FOUND THEN
        INSERT INTO messages (organization_id, lead_id, external_id, direction, sender_kind,
                              body, params, staff_sub, staff_email)
        VALUES (v_org, p_lead_id, p_note_key, 'system', 'system', p_note, p_note_params,
                p_staff_sub, p_staff_email);
        RETURN QUERY SELECT 'created'::text, v_id, v_status;
        RETURN;
    END IF;
    -- Nothing inserted. A concurrent request with the same key won the race...
    SELECT c.id, c.status INTO v_id, v_status FROM outbound_calls c
    WHERE c.lead_id = p_lead_id AND c.idempotency_key = p_key;
    IF FOUND THEN
        RETURN QUERY SELECT 'existing'::text, v_id, v_status;
        RETURN;
    END IF;
    -- ...or another call is in progress...
    SELECT c.id, c.status INTO v_id, v_status FROM outbound_calls c
    WHERE c.lead_id = p_lead_id AND c.status IN ('queued', 'dialing');
    IF FOUND THEN
        RETURN QUERY SELECT 'in_progress'::text, v_id, v_status;
        RETURN;
    END IF;
    -- ...or the lead opted out, or was erased, since it was read.
    IF EXISTS (SELECT 1 FROM leads l WHERE l.id = p_lead_id) THEN
        RETURN QUERY SELECT 'opted_out'::text, NULL::uuid, NULL::text;
    ELSE
        RETURN QUERY SELECT 'gone'::text, NULL::uuid, NULL::text;
    END IF;
END
$$;
