-- Passkeys and TOTP (PostgreSQL dialect): each user's WebAuthn credentials, the server-side
-- state of WebAuthn ceremonies in progress, and each user's TOTP enrolment.

-- A user's passkeys (WebAuthn credentials). `credential_id` (base64url) is unique across all
-- users; `credential` is the WebAuthn library's serialised credential (public key etc.), opaque
-- JSON text. `sign_count` only moves forward, by the conditional UPDATE of a sign-in; the
-- per-user limit is checked in the transaction that inserts, with the user's row locked.
CREATE TABLE passkeys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    credential_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    aaguid TEXT NOT NULL,
    credential TEXT NOT NULL,
    backup_eligible BOOLEAN NOT NULL,
    backed_up BOOLEAN NOT NULL,
    sign_count BIGINT NOT NULL CHECK (sign_count >= 0),
    device_family TEXT NOT NULL,
    attestation_format TEXT NOT NULL,
    attested BOOLEAN NOT NULL,
    transports TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX passkeys_user ON passkeys(user_id, created_at);

-- A WebAuthn ceremony in progress: the state the server must keep between issuing a challenge
-- and checking the browser's answer (opaque JSON). Taken (deleted) exactly once by the answer;
-- purged once expired. `user_id` is NULL for a sign-in that does not name the user yet.
CREATE TABLE webauthn_challenges (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('registration', 'authentication')),
    user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_challenges_expires ON webauthn_challenges(expires_at);
CREATE INDEX webauthn_challenges_user ON webauthn_challenges(user_id);

-- A user's TOTP enrolment: at most one per user (pending until `confirmed_at` is set), a new
-- enrolment replaces the row. The secret arrives sealed by the server. `state` (the verifier's
-- last accepted step and recent failures, opaque JSON) changes only by a compare-and-set on
-- `version`, so a code is accepted once even when nodes race.
CREATE TABLE totp_enrolments (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    id TEXT NOT NULL UNIQUE,
    secret_sealed TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    name TEXT NOT NULL
);
