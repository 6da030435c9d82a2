-- Temporary Access Pass (PostgreSQL dialect; SPEC §6.3): each user's pass, stored as the hash of
-- its secret, and the cap on the lifetime of a grant obtained with one.

-- A user's Temporary Access Pass: at most one per user, a new pass replaces the row. A one-time
-- pass is spent by the conditional UPDATE that sets `used_at`; a multi-use pass is never
-- marked. Purged a day after it expires.
CREATE TABLE temporary_access_passes (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    id TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    starts_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    one_time BOOLEAN NOT NULL,
    used_at BIGINT,
    created_by TEXT NOT NULL
);
CREATE INDEX temporary_access_passes_expires ON temporary_access_passes(expires_at);

-- The end of a grant's tokens (NULL: no cap). A grant obtained with a pass is capped at the
-- pass's expiry.
ALTER TABLE grants ADD COLUMN not_after BIGINT;
