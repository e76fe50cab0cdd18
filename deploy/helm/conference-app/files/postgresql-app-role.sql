-- The application's PostgreSQL role: it logs in, owns its tables in schema
-- public (migrations run as it) and nothing else: no superuser, no CREATEDB,
-- no CREATEROLE. Run as the superuser by vote-api's init container before
-- every start, so it is idempotent and also upgrades a v1 install, whose
-- tables the superuser created. psql variables role and db; the password
-- comes from the environment (APP_POSTGRES_PASSWORD), never the command line.
\set ON_ERROR_STOP on
\getenv password APP_POSTGRES_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'password';
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"role";
GRANT USAGE, CREATE ON SCHEMA public TO :"role";
-- Tables and sequences created before the role existed become its own.
SELECT format('ALTER TABLE public.%I OWNER TO %I', tablename, :'role')
  FROM pg_tables WHERE schemaname = 'public' AND tableowner <> :'role' \gexec
SELECT format('ALTER SEQUENCE public.%I OWNER TO %I', sequencename, :'role')
  FROM pg_sequences WHERE schemaname = 'public' AND sequenceowner <> :'role' \gexec
