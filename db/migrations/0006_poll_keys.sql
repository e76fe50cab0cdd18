-- Your own poll (docs/contract.md): the choices come from the poll file, so
-- the app checks a vote's choice against the active poll and PostgreSQL only
-- keeps the key's form (src/poll.rs: 1-32 characters of a-z, 0-9 and -).
-- Votes for keys no longer in the poll stay stored and are not shown.
ALTER TABLE votes DROP CONSTRAINT IF EXISTS votes_choice_check;
ALTER TABLE votes DROP CONSTRAINT IF EXISTS votes_choice_key_form;
ALTER TABLE votes ADD CONSTRAINT votes_choice_key_form CHECK (choice ~ '^[a-z0-9-]{1,32}$');
