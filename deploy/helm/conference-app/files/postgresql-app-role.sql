-- The application's PostgreSQL role: it logs in, owns its schema vote_api and
-- the tables in it (migrations run as it) and nothing else: no superuser, no
-- CREATEDB, no CREATEROLE, no CREATE in public. Run as the superuser by
-- vote-api's init container before every start, so it is idempotent and also
-- upgrades an older install, whose tables the superuser created in public
-- (the app's migration 0005 then moves them into vote_api). psql variables
-- role and db; the password comes from the environment
-- (APP_POSTGRES_PASSWORD), never the command line.
\set ON_ERROR_STOP on
\getenv password APP_POSTGRES_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'password';
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"role";
-- The app's schema, made here: the role may not create schemas itself.
SELECT format('CREATE SCHEMA vote_api AUTHORIZATION %I', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'vote_api') \gexec
ALTER SCHEMA vote_api OWNER TO :"role";
ALTER ROLE :"role" IN DATABASE :"db" SET search_path = vote_api;
-- This script and every other superuser session resolve names through
-- public: nobody but its owner may create objects there. USAGE stays, so
-- that migration 0005 can move an older install's tables out of it.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM :"role";
GRANT USAGE ON SCHEMA public TO :"role";
-- Tables and sequences created before the role existed become its own.
SELECT format('ALTER TABLE %I.%I OWNER TO %I', schemaname, tablename, :'role')
  FROM pg_tables WHERE schemaname IN ('public', 'vote_api') AND tableowner <> :'role' \gexec
SELECT format('ALTER SEQUENCE %I.%I OWNER TO %I', schemaname, sequencename, :'role')
  FROM pg_sequences WHERE schemaname IN ('public', 'vote_api') AND sequenceowner <> :'role' \gexec
