-- Counts exact by construction (docs/contract.md). PostgreSQL keeps the
-- running totals, changed by the same transaction that stores a batch's
-- votes; Redis and every replica only hold copies of these rows.
--
-- The session: its epoch grows with every reset (and starts at the creation
-- time in microseconds, so a re-created database still starts above any
-- epoch a long-lived Redis may remember), and the speaker's hidden flag,
-- which must survive a Redis restart.
CREATE TABLE IF NOT EXISTS poll_state (
    id     BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    epoch  BIGINT  NOT NULL,
    hidden BOOLEAN NOT NULL DEFAULT false
);
INSERT INTO poll_state (epoch)
VALUES ((extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
ON CONFLICT (id) DO NOTHING;

-- One row per shard (src/totals.rs SHARDS): a process adds its batches to
-- one shard, so replicas do not queue on one hot row. `version` only grows;
-- `counts` maps choice keys to totals.
CREATE TABLE IF NOT EXISTS vote_totals (
    shard   INTEGER PRIMARY KEY CHECK (shard >= 0),
    epoch   BIGINT  NOT NULL,
    version BIGINT  NOT NULL DEFAULT 0,
    counts  JSONB   NOT NULL DEFAULT '{}'
);
INSERT INTO vote_totals (shard, epoch)
SELECT s, (SELECT epoch FROM poll_state) FROM generate_series(0, 31) AS s
ON CONFLICT (shard) DO NOTHING;

-- Votes stored before this migration are carried into shard 0.
UPDATE vote_totals
SET counts = (SELECT coalesce(jsonb_object_agg(choice, n), '{}')
              FROM (SELECT choice, count(*) AS n FROM votes GROUP BY choice) AS c),
    version = version + 1
WHERE shard = 0;
