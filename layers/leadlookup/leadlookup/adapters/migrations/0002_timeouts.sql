-- Server-side time limits for every session of this database. Set here instead of with a
-- session SET, which would make RDS Proxy pin each client to one database connection.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET statement_timeout = %L', current_database(), '5s');
    EXECUTE format('ALTER DATABASE %I SET lock_timeout = %L', current_database(), '2s');
    EXECUTE format(
        'ALTER DATABASE %I SET idle_in_transaction_session_timeout = %L',
        current_database(), '10s'
    );
END
$$;
