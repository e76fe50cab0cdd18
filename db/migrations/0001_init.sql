-- Votes are the source of truth; Redis only mirrors their counts.
CREATE TABLE IF NOT EXISTS votes (
    id            BIGSERIAL PRIMARY KEY,
    choice        TEXT NOT NULL CHECK (choice IN ('print', 'stare', 'ai', 'revert', 'restart')),
    referral_code TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Group-commit token: lets the writer tell, after a connection died during
    -- COMMIT, whether the batch landed (exactly-once without an index).
    batch_id      BIGINT
);

CREATE TABLE IF NOT EXISTS referral_partners (
    id         BIGSERIAL PRIMARY KEY,
    code       TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The original scanned 500,000 rows per referral; a unique index makes it one probe.
CREATE UNIQUE INDEX IF NOT EXISTS referral_partners_code_key ON referral_partners (code);
