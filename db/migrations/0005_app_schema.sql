-- The app's tables live in a schema of their own, owned by the app's role,
-- and nobody but public's owner creates objects in public (SPEC §11.6): the
-- superuser's scripts resolve unqualified names through public, so a role
-- that could create there could plant a function or table for them to use.
--
-- Every table in public moves (whatever migration made it: this list is
-- never kept by hand), its indexes, constraints and owned sequences with
-- it; standalone sequences follow. Objects of extensions stay. Run by
-- migrate.rs in one transaction, as the app's role: it must own the tables
-- (the chart's init script makes it so) and, when vote_api is missing, may
-- create schemas (a fresh database as its owner; the chart creates the
-- schema itself, for a role that may not).
DO $$
DECLARE
    obj record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'vote_api') THEN
        CREATE SCHEMA vote_api;
    END IF;
    FOR obj IN
        SELECT c.relname, c.relkind
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public'
           AND c.relkind IN ('r', 'p', 'S')
           AND NOT EXISTS (SELECT FROM pg_depend d
                            WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                              AND d.deptype = 'e')
         -- Tables first: their owned sequences move with them.
         ORDER BY c.relkind = 'S', c.relname
    LOOP
        IF obj.relkind = 'S' THEN
            -- Skip a sequence that already moved with its table.
            IF EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'public' AND c.relname = obj.relname) THEN
                EXECUTE format('ALTER SEQUENCE public.%I SET SCHEMA vote_api', obj.relname);
            END IF;
        ELSE
            EXECUTE format('ALTER TABLE public.%I SET SCHEMA vote_api', obj.relname);
        END IF;
    END LOOP;
    -- Every later session of this role in this database, and this one
    -- (migrate.rs records the migration next, in the moved table).
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET search_path = vote_api',
                   current_user, current_database());
    PERFORM set_config('search_path', 'vote_api', false);
    -- Only public's owner (or the superuser) can revoke; for the chart's
    -- role, which is neither, the init script does it as the superuser.
    IF pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'public'), 'USAGE') THEN
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    END IF;
END
$$;
