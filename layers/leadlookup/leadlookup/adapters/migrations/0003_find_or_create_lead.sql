-- find_or_create_lead: the SELECT / INSERT ... ON CONFLICT DO NOTHING RETURNING / SELECT
-- sequence of a first contact, run inside the server so a new caller costs one network round
-- trip instead of two. Each statement of a PL/pgSQL function takes a fresh snapshot under
-- READ COMMITTED, so when a concurrent first contact wins the insert (ours waits for it, then
-- does nothing) the final SELECT sees its row. A single WITH ... UNION ALL statement would not.
CREATE FUNCTION find_or_create_lead(p_organization_id uuid, p_phone_number text,
                                    p_phone_normalized text)
RETURNS SETOF leads
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
        SELECT * FROM leads
        WHERE organization_id = p_organization_id
          AND phone_number_normalized = p_phone_normalized;
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        INSERT INTO leads (organization_id, phone_number, phone_number_normalized)
        VALUES (p_organization_id, p_phone_number, p_phone_normalized)
        ON CONFLICT (organization_id, phone_number_normalized) DO NOTHING
        RETURNING *;
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT * FROM leads
        WHERE organization_id = p_organization_id
          AND phone_number_normalized = p_phone_normalized;
END
$$;
