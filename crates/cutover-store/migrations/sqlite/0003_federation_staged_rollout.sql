-- Federation and staged rollout (SQLite dialect; SPEC §2, §3, §4): upstream identity providers,
-- feature rollout policies with their groups, the lock that serialises every policy change
-- across nodes, and each user's effective staged-rollout state.

-- An upstream OpenID Connect provider. The client secret is stored sealed by the server.
CREATE TABLE identity_providers (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_secret_sealed TEXT NOT NULL,
    -- JSON list of scope names (besides openid).
    scopes TEXT NOT NULL,
    immutable_id_claim TEXT NOT NULL,
    upn_fallback_claim TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- At most one policy per feature (the rule is checked first; the constraint is the backstop).
CREATE TABLE feature_rollout_policies (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    description TEXT,
    feature TEXT NOT NULL UNIQUE,
    is_enabled BOOLEAN NOT NULL,
    is_applied_to_organization BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A policy's groups, in the order they were added. Deleting the policy or the group (also
-- through a sync batch) removes the row.
CREATE TABLE feature_rollout_groups (
    policy_id TEXT NOT NULL REFERENCES feature_rollout_policies(id) ON DELETE CASCADE,
    group_id TEXT NOT NULL REFERENCES directory_groups(id) ON DELETE CASCADE,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (policy_id, group_id)
);
CREATE INDEX feature_rollout_groups_group ON feature_rollout_groups(group_id);

-- Exactly one row, locked (no-op UPDATE) first by every transaction that changes a policy or
-- its groups, so the rules are checked against a state no other node is changing.
CREATE TABLE feature_rollout_lock (
    id INTEGER PRIMARY KEY,
    changed_at BIGINT NOT NULL
);
INSERT INTO feature_rollout_lock (id, changed_at) VALUES (1, 0);

-- The features that route a user's sign-ins now (JSON list of feature names); no row = none,
-- never changed.
CREATE TABLE user_staged_state (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    effective TEXT NOT NULL,
    changed_at BIGINT
);
