-- The incident timeline (SPEC §10.3). Each process counts vote outcomes in
-- memory and adds them here about once a second, one statement per flush.
CREATE TABLE IF NOT EXISTS timeline_counts (
    second  BIGINT NOT NULL,  -- Unix time of the 1 s bucket
    version TEXT   NOT NULL,  -- APP_VERSION of the process that answered
    outcome TEXT   NOT NULL CHECK (outcome IN
        ('accepted', 'referral_cache_exhausted', 'invalid', 'db_unavailable', 'overloaded')),
    n       BIGINT NOT NULL,
    PRIMARY KEY (second, version, outcome)
);

-- One row per process (replica, restart, the speaker's mirrord build): when
-- it first answered a vote in this session. Version markers come from here.
CREATE TABLE IF NOT EXISTS timeline_processes (
    process       TEXT   PRIMARY KEY,
    version       TEXT   NOT NULL,
    first_seen_ms BIGINT NOT NULL
);
