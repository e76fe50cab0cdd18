-- The key every replica signs screen tickets and device cookies with
-- (src/signing.rs), unless DEVICE_KEY is given: the first replica to start
-- stores a random one, INSERT ... ON CONFLICT DO NOTHING keeps the first of
-- two replicas starting together, and both read back the one stored.
CREATE TABLE IF NOT EXISTS signing_keys (
    name       TEXT PRIMARY KEY,
    key        BYTEA NOT NULL CHECK (octet_length(key) >= 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One vote per device (ONE_VOTE_PER_DEVICE=yes): a device's vote is one row,
-- changed in place when the device votes again, so SELECT choice, count(*)
-- FROM votes stays equal to the totals. `shard` names the vote_totals row
-- that counts it, so a change takes the old choice off the right row. A
-- reset truncates votes: devices are forgotten with them.
ALTER TABLE votes ADD COLUMN IF NOT EXISTS device_id TEXT
    CHECK (device_id ~ '^[0-9a-f]{32}$');
ALTER TABLE votes ADD COLUMN IF NOT EXISTS shard INT;
CREATE UNIQUE INDEX IF NOT EXISTS votes_device_id_key
    ON votes (device_id) WHERE device_id IS NOT NULL;
