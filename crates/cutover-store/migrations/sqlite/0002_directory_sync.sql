-- Directory sync (SPEC §5.1–5.2): synced password hashes, the export lease with its fencing
-- epoch, registered sync servers, and the export batches applied (for idempotent retries).

-- A synced user's password: the sync server's one-way wrap of the on-prem hash, sealed under
-- the key-encryption key. NULL for cloud users and for synced users without a usable hash.
ALTER TABLE users ADD COLUMN synced_password TEXT;

-- Exactly one row. holder NULL = no active sync server.
CREATE TABLE sync_lease (
    id INTEGER PRIMARY KEY,
    epoch BIGINT NOT NULL,
    holder TEXT,
    changed_at BIGINT NOT NULL
);
INSERT INTO sync_lease (id, epoch, holder, changed_at) VALUES (1, 0, NULL, 0);

CREATE TABLE sync_servers (
    name TEXT PRIMARY KEY,
    -- The application (client id) the server authenticates as; only it may act for the name.
    client_id TEXT NOT NULL,
    host TEXT NOT NULL,
    version TEXT NOT NULL,
    staging BOOLEAN NOT NULL,
    registered_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    -- Where the server's next delta import starts (JSON, opaque to the store).
    watermark TEXT,
    -- The last run's report and its pending exports (JSON).
    last_report TEXT,
    pending TEXT,
    alert TEXT
);

CREATE TABLE sync_batches (
    server TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    applied_at BIGINT NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (server, batch_id)
);
CREATE INDEX sync_batches_time ON sync_batches(applied_at);
