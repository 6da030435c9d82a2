-- Cutover foundation schema (PostgreSQL dialect). Times are Unix milliseconds; ids are UUID text;
-- secrets appear only as keyed hashes or one-way password hashes.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    authentication_type TEXT NOT NULL,
    federation TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    upn TEXT NOT NULL,
    upn_normalized TEXT NOT NULL UNIQUE,
    domain TEXT NOT NULL REFERENCES domains(name),
    source TEXT NOT NULL,
    immutable_id TEXT UNIQUE,
    display_name TEXT NOT NULL,
    mail TEXT,
    department TEXT,
    manager_id TEXT,
    account_enabled BOOLEAN NOT NULL,
    break_glass BOOLEAN NOT NULL,
    password_hash TEXT,
    password_changed_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX users_domain ON users(domain);

CREATE TABLE directory_groups (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    description TEXT,
    source TEXT NOT NULL,
    immutable_id TEXT UNIQUE,
    membership_kind TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES directory_groups(id) ON DELETE CASCADE,
    member_kind TEXT NOT NULL,
    member_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, member_kind, member_id)
);
CREATE INDEX group_members_member ON group_members(member_id);

CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    client_type TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    client_app_type TEXT NOT NULL,
    secret_hash TEXT,
    app_roles TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE sign_in_transactions (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE sso_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    methods TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sso_sessions_user ON sso_sessions(user_id);

CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT,
    scopes TEXT NOT NULL,
    auth_time BIGINT,
    methods TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT
);
CREATE INDEX grants_user ON grants(user_id);

CREATE TABLE auth_codes (
    code_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES grants(id),
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    nonce TEXT,
    code_challenge TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    consumed_at BIGINT
);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES grants(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated_at BIGINT
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens(grant_id);

CREATE TABLE sign_in_log (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    user_id TEXT,
    user_principal_name TEXT,
    client_id TEXT,
    result TEXT NOT NULL,
    route TEXT,
    record TEXT NOT NULL
);
CREATE INDEX sign_in_log_time ON sign_in_log(created_at);
CREATE INDEX sign_in_log_user ON sign_in_log(user_id, created_at);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    correlation_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    target_name TEXT,
    before_state TEXT,
    after_state TEXT
);
CREATE INDEX audit_log_time ON audit_log(created_at);
CREATE INDEX audit_log_target ON audit_log(target_id, created_at);
