-- Conditional Access (SQLite dialect; SPEC §8, §10): policies and named locations (opaque
-- JSON that the core checks; the store keeps a few columns beside it), the lock that serialises
-- their changes, each sign-in's result per policy in a table of its own so the sign-in log can
-- be filtered by it, and the last drill of each break-glass account.

-- A Conditional Access policy: `policy` is the whole policy as JSON text.
-- `display_name_normalized` (the name lower-cased by the store's Rust code, so both dialects
-- agree) makes names unique case-insensitively. `state_changed_at` is when `state` last
-- changed (the enforcement gate reads how long a policy has been report-only); `modified_at` is
-- the optimistic-concurrency token of an update.
CREATE TABLE ca_policies (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    display_name_normalized TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL
        CHECK (state IN ('enabled', 'disabled', 'enabledForReportingButNotEnforced')),
    policy TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    modified_at BIGINT NOT NULL,
    state_changed_at BIGINT NOT NULL
);

-- A named location (IP ranges etc. as JSON text in `location`), trusted or not; names unique
-- case-insensitively as for policies.
CREATE TABLE named_locations (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    display_name_normalized TEXT NOT NULL UNIQUE,
    location TEXT NOT NULL,
    is_trusted BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    modified_at BIGINT NOT NULL
);

-- Exactly one row, locked (no-op UPDATE) first by every change (creation, update, deletion) of
-- a policy or a named location, so a count against the limit, a name's uniqueness and an
-- update's `modified_at` are checked with no other change in between (two creations cannot
-- both be the last one allowed; two updates from one read cannot both succeed).
CREATE TABLE conditional_access_lock (
    id INTEGER PRIMARY KEY,
    changed_at BIGINT NOT NULL
);
INSERT INTO conditional_access_lock (id, changed_at) VALUES (1, 0);

-- One row per sign-in and policy (the policy's result in that sign-in, as in the record's
-- `conditionalAccess`), written in the transaction that inserts the sign-in. `created_at` and
-- `user_id` are the sign-in's, copied so a policy's results over a window (and per user) are
-- found from this table's index without reading the log. No foreign key to the policy: results
-- outlive a deleted policy. They go with their sign-in (nothing purges the sign-in log yet; a
-- retention purge of it cascades here).
CREATE TABLE sign_in_ca_results (
    sign_in_id TEXT NOT NULL REFERENCES sign_in_log(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    policy_id TEXT NOT NULL,
    result TEXT NOT NULL,
    user_id TEXT,
    PRIMARY KEY (sign_in_id, policy_id)
);
CREATE INDEX sign_in_ca_results_policy ON sign_in_ca_results(policy_id, created_at, sign_in_id);

-- The last successful drill of each break-glass account (a later drill replaces it; one
-- recorded out of order never moves it back). Every drill is also in the audit log.
CREATE TABLE break_glass_drills (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    drilled_at BIGINT NOT NULL
);
