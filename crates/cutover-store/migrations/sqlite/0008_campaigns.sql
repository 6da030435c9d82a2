-- Passkey rollout campaigns and the e-mail outbox (SQLite dialect; issue 8): campaigns (one
-- JSON document each, checked by the core), the lock that serialises their changes, the
-- decisions to send one communication step of one wave, and the outbox that delivers the
-- e-mails those decisions (and test-sends) produce.

-- A campaign: `document` is its definition and its waves' states, JSON text the server checks
-- with the core before writing. `display_name_normalized` (lower-cased by the store's Rust
-- code, so both dialects agree) makes names unique case-insensitively; `modified_at` is the
-- optimistic-concurrency token of an update.
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    display_name_normalized TEXT NOT NULL UNIQUE,
    document TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    modified_at BIGINT NOT NULL
);

-- Exactly one row, locked (no-op UPDATE) first by every change (creation, update, deletion) of
-- a campaign, so the count against the limit, a name's uniqueness and an update's
-- `modified_at` are checked with no other change in between, on any node.
CREATE TABLE campaign_lock (
    id INTEGER PRIMARY KEY,
    changed_at BIGINT NOT NULL
);
INSERT INTO campaign_lock (id, changed_at) VALUES (1, 0);

-- The decision to send one communication step of one wave, written once (its key is unique)
-- in the transaction that writes its outbox rows: a second node, or a run after a restart,
-- finds the key and writes nothing. `skipped` is JSON text ([{userId, reason}]). Deleted with
-- its campaign (its outbox rows stay, as the log of what was sent).
CREATE TABLE campaign_send_decisions (
    decision_key TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    wave_id TEXT NOT NULL,
    step_key TEXT NOT NULL,
    decided_at BIGINT NOT NULL,
    recipients BIGINT NOT NULL CHECK (recipients >= 0),
    skipped TEXT NOT NULL
);
CREATE INDEX campaign_send_decisions_campaign ON campaign_send_decisions(campaign_id, decided_at, decision_key);

-- One e-mail to deliver. `idempotency_key` is unique (e.g. `<decision key>:user:<id>`, or
-- `test:<uuid>` for a test-send), so no message is queued twice. `to_addresses` and
-- `cc_addresses` are JSON lists. States: pending (due at `next_attempt_at`), claimed (a node
-- holds it until `lease_until` and has not started transmitting), transmitting (handed to the
-- SMTP server; if the node's lease runs out now, the message becomes uncertain and is never
-- sent again automatically), sent, failed, uncertain, cancelled (its campaign was deleted
-- before it went out). No foreign keys: the rows outlive their campaign and user as the log of
-- what was sent.
CREATE TABLE outbox_messages (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    campaign_id TEXT,
    wave_id TEXT,
    step_key TEXT,
    user_id TEXT,
    mail_from TEXT NOT NULL,
    to_addresses TEXT NOT NULL,
    cc_addresses TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    message_id TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('pending', 'claimed', 'transmitting', 'sent', 'failed', 'uncertain', 'cancelled')),
    attempts BIGINT NOT NULL CHECK (attempts >= 0),
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    claimed_by TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX outbox_messages_due ON outbox_messages(state, next_attempt_at);
CREATE INDEX outbox_messages_lease ON outbox_messages(state, lease_until);
CREATE INDEX outbox_messages_campaign ON outbox_messages(campaign_id, state);
CREATE INDEX outbox_messages_user ON outbox_messages(user_id);
