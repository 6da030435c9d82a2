-- Pass-through authentication and smart lockout (PostgreSQL dialect; SPEC §5.3, §7): registered
-- agents, their single-use registration tokens and the lock that serialises registrations,
-- the queue of password checks with the passwords sealed to each agent, and each user's smart
-- lockout state.

-- A registration token, stored only as its hash. Used once: `used_at` and the agent it
-- registered are set in the transaction that registers the agent.
CREATE TABLE pta_registration_tokens (
    token_hash TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    agent_id TEXT
);
CREATE INDEX pta_registration_tokens_expires ON pta_registration_tokens(expires_at);

-- Exactly one row, locked (no-op UPDATE) first by every registration, so the agent count and
-- the token are read with no other registration in between (two cannot both be the 40th).
CREATE TABLE pta_registration_lock (
    id INTEGER PRIMARY KEY,
    changed_at BIGINT NOT NULL
);
INSERT INTO pta_registration_lock (id, changed_at) VALUES (1, 0);

-- A registered agent: its public keys (signing: Ed25519, encryption: HPKE), bumped by one
-- generation at each rotation, and its last heartbeat body (JSON) as sent.
CREATE TABLE pta_agents (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    version TEXT NOT NULL,
    signing_key TEXT NOT NULL,
    encryption_key TEXT NOT NULL,
    key_generation BIGINT NOT NULL,
    enabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    keys_rotated_at BIGINT,
    last_heartbeat BIGINT,
    heartbeat TEXT
);

-- One password check. pending → claimed (by one agent) → done, or → abandoned (the server
-- stopped waiting). `claimed_by` stays set through done and abandoned; no foreign key, so a
-- deleted agent's requests keep their history until purged.
CREATE TABLE pta_requests (
    id TEXT PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    user_principal_name TEXT NOT NULL,
    immutable_id TEXT,
    created_at BIGINT NOT NULL,
    deadline BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'claimed', 'done', 'abandoned')),
    claimed_by TEXT,
    claimed_at BIGINT,
    result TEXT,
    detail TEXT,
    completed_at BIGINT
);
CREATE INDEX pta_requests_pending ON pta_requests(created_at, id) WHERE state = 'pending';
CREATE INDEX pta_requests_deadline ON pta_requests(deadline);
CREATE INDEX pta_requests_claimed ON pta_requests(claimed_by) WHERE state = 'claimed';

-- The password of a request sealed to one agent (opaque text). All of a request's envelopes
-- are deleted when an agent claims it and when it is abandoned, so an agent's envelopes are
-- (nearly) only those of pending requests: the cheap "anything for me?" check of every poll.
CREATE TABLE pta_envelopes (
    request_id TEXT NOT NULL REFERENCES pta_requests(id) ON DELETE CASCADE,
    agent_id TEXT NOT NULL REFERENCES pta_agents(id) ON DELETE CASCADE,
    envelope TEXT NOT NULL,
    PRIMARY KEY (request_id, agent_id)
);
CREATE INDEX pta_envelopes_agent ON pta_envelopes(agent_id, request_id);

-- A user's smart lockout state (cutover_core::lockout::LockoutState as JSON); no row = the
-- default (nothing counted).
CREATE TABLE user_lockout_state (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    state TEXT NOT NULL
);
