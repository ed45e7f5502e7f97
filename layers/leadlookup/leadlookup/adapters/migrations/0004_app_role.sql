-- The application role (design section 4): serving functions log in as bici_app, which can
-- read and write rows and call the functions, but cannot change the schema and owns nothing.
-- The migrations keep running as the owner (the master user, MigrateFunction only).
--
-- Roles belong to the whole cluster while this file runs once per database, so every step is
-- "create or leave as is": several databases of one cluster (tests, staging) share the role.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bici_app') THEN
        BEGIN
            CREATE ROLE bici_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
                NOBYPASSRLS CONNECTION LIMIT -1;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database's migration created it at the same moment
        END;
    END IF;
    -- RDS has rds_iam: membership makes RDS (and RDS Proxy with IAMAuth) accept an IAM token
    -- instead of a password. The local PostgreSQL has no such role, and needs none.
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam')
       AND NOT pg_has_role('bici_app', 'rds_iam', 'MEMBER') THEN
        GRANT rds_iam TO bici_app;
    END IF;
    -- Per role, not per session: a session SET would pin RDS Proxy connections. Only written
    -- when different, because concurrent ALTER ROLE of one role can fail on a busy cluster.
    IF NOT EXISTS (
        SELECT FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
        WHERE r.rolname = 'bici_app' AND s.setdatabase = 0
          AND s.setconfig @> ARRAY['statement_timeout=5s', 'lock_timeout=2s',
                                   'idle_in_transaction_session_timeout=10s']
    ) THEN
        ALTER ROLE bici_app SET statement_timeout = '5s';
        ALTER ROLE bici_app SET lock_timeout = '2s';
        ALTER ROLE bici_app SET idle_in_transaction_session_timeout = '10s';
    END IF;
END
$$;

-- No DDL: PostgreSQL before 15 lets every role create objects in public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO bici_app;

GRANT SELECT, INSERT, UPDATE, DELETE
    ON organizations, leads, messages, call_summaries TO bici_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO bici_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO bici_app;

-- Tables, sequences and functions that later migrations create (as this same owner) get the
-- same rights without each migration repeating these grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO bici_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO bici_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO bici_app;

-- The migrations' ledger is the owner's alone (a default privilege above would not reach it:
-- it exists already, and later migrations do not recreate it).
REVOKE ALL ON schema_migrations FROM bici_app
