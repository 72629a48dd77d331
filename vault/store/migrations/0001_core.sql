-- cvault core schema. Every value that reveals a client's configuration is stored only encrypted
-- (docs/format.md). Times are integer Unix seconds, UTC.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- Unseal slots: each one an AES-256-GCM wrap of the root key (docs/spec.md §3).
CREATE TABLE unseal_slots (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL CHECK (kind IN ('passphrase', 'keyfile', 'recovery')),
    label        TEXT NOT NULL,
    kdf_params   TEXT,            -- JSON, passphrase slots only
    salt         BLOB NOT NULL,
    wrapped_root BLOB NOT NULL,   -- nonce || ciphertext || tag
    created_at   INTEGER NOT NULL
);

CREATE TABLE clients (
    id                  TEXT PRIMARY KEY,        -- 32 hex chars, random
    name                TEXT NOT NULL UNIQUE,
    created_at          INTEGER NOT NULL,
    created_by          TEXT NOT NULL,
    sla_end             INTEGER NOT NULL,
    grace_days          INTEGER NOT NULL,
    current_key_version INTEGER NOT NULL,
    shred_state         TEXT CHECK (shred_state IN ('shredding', 'shredded'))
);

CREATE TABLE client_keys (
    client_id   TEXT NOT NULL REFERENCES clients(id),
    version     INTEGER NOT NULL,
    wrapped     BLOB NOT NULL,      -- client key wrapped under the root-derived wrapping key
    fingerprint TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (client_id, version)
);

CREATE TABLE records (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id       TEXT NOT NULL REFERENCES clients(id),
    path_tag        BLOB NOT NULL,   -- HMAC of the path under the client's name-tag key
    meta_sealed     BLOB NOT NULL,   -- {"path", "kind"} sealed under the client key
    current_version INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (client_id, path_tag)
);

CREATE TABLE record_versions (
    record_id   INTEGER NOT NULL REFERENCES records(id),
    version     INTEGER NOT NULL,
    key_version INTEGER NOT NULL,    -- client-key version wrapping this DEK
    wrapped_dek BLOB,                -- NULL for a delete marker
    blob_name   TEXT,                -- NULL for a delete marker
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (record_id, version)
);
CREATE INDEX record_versions_blob ON record_versions(blob_name);

-- Persistent outbox of blob operations for remote replicas (docs/spec.md §8).
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    op              TEXT NOT NULL CHECK (op IN ('put', 'delete')),
    blob_name       TEXT NOT NULL,
    queued_at       INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX outbox_blob ON outbox(blob_name);

-- Audit events, hash-chained (docs/spec.md §9; docs/audit.md).
CREATE TABLE audit_events (
    seq            INTEGER PRIMARY KEY,
    at             TEXT NOT NULL,        -- RFC 3339 UTC
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    client         TEXT,
    outcome        TEXT NOT NULL CHECK (outcome IN ('allow', 'deny', 'ok', 'error')),
    reason         TEXT,
    origin         TEXT NOT NULL,
    detail_sealed  BLOB,                 -- client-revealing detail sealed under the client key
    detail_key     TEXT,                 -- "client_id:key_version" that sealed it
    prev_hash      BLOB NOT NULL,
    entry_hash     BLOB NOT NULL
);
