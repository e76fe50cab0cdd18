-- Exactly-once votes (SPEC §10.2).
-- A client's Idempotency-Key (or the form's vote_id) is stored with its vote;
-- the unique index makes a repeat conflict instead of counting twice, on every
-- replica and across restarts. Votes without a key stay out of the index.
ALTER TABLE votes ADD COLUMN IF NOT EXISTS idempotency_key TEXT
    CHECK (octet_length(idempotency_key) BETWEEN 1 AND 64);
CREATE UNIQUE INDEX IF NOT EXISTS votes_idempotency_key_key
    ON votes (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- One row per group commit, inserted by the same statement as its votes. A
-- retried batch conflicts with (or waits for) its earlier attempt instead of
-- storing the votes twice, and a batch given up on is fenced by inserting its
-- id alone, so an attempt still running on the server can never commit later.
CREATE TABLE IF NOT EXISTS vote_batches (
    batch_id BIGINT PRIMARY KEY
);
