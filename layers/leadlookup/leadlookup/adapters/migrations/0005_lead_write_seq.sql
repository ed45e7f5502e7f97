-- write_seq orders the cached copies of a lead (design section 6, write-through): every write
-- of a row gives it a new, larger value, and the cache keeps a copy only if its write_seq is
-- larger than the one it holds, so an older fill or a slower writer never overwrites a newer
-- value. It is distinct from `version` (the ETag), which only PATCH and post-call bump.
--
-- A trigger rather than each statement: every UPDATE bumps it, including writes added later.
-- The values come from one sequence instead of OLD.write_seq + 1 so that they also order a
-- lead erased and created again for the same number: the new row starts above every write of
-- the old one. BEFORE UPDATE runs once the row is locked, so for one row the values follow
-- the commit order of its writers.
CREATE SEQUENCE lead_write_seq AS bigint;

-- A constant default first: adding the column does not rewrite the table; rows already there
-- start at 0 (their cached copies are of the previous format, i.e. misses anyway).
ALTER TABLE leads ADD COLUMN write_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE leads ALTER COLUMN write_seq SET DEFAULT nextval('lead_write_seq');

CREATE FUNCTION bump_lead_write_seq() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.write_seq := nextval('lead_write_seq');
    RETURN NEW;
END
$$;

CREATE TRIGGER leads_bump_write_seq BEFORE UPDATE ON leads
    FOR EACH ROW EXECUTE FUNCTION bump_lead_write_seq();
