-- SLA lifecycle and crypto-shredding (docs/spec.md §7; docs/sla.md). Times are integer Unix seconds, UTC.

-- "Nothing due" is one indexed range query (docs/sla.md, sweep): live clients by the moment their
-- grace period ends. The expression must stay identical to the one in vault/sla/service.py.
CREATE INDEX clients_shred_due ON clients(sla_end + grace_days * 86400) WHERE shred_state IS NULL;
CREATE INDEX clients_sla_end ON clients(sla_end) WHERE shred_state IS NULL;

-- Early shred requests: requested by an account manager, approved by a second person (two-person
-- rule). At most one open request (not cancelled, not executed) per client.
CREATE TABLE shred_requests (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id        TEXT NOT NULL REFERENCES clients(id),
    requested_by     TEXT NOT NULL,
    requested_at     INTEGER NOT NULL,
    reason           TEXT NOT NULL,
    approved_by      TEXT,
    approved_at      INTEGER,
    orig_sla_end     INTEGER,          -- SLA end and grace before the approval ended the SLA
    orig_grace_days  INTEGER,
    cancelled_by     TEXT,
    cancelled_at     INTEGER,
    cancel_reason    TEXT,
    executed_at      INTEGER           -- set when the shred it triggered started
);
CREATE UNIQUE INDEX shred_requests_open ON shred_requests(client_id)
    WHERE cancelled_at IS NULL AND executed_at IS NULL;

-- The persisted shred state machine: one row per client, resumable after kill -9 at any point.
-- step: started -> keys_destroyed -> scrubbed -> blobs_deleted -> purged -> certified -> done
CREATE TABLE shred_jobs (
    client_id         TEXT PRIMARY KEY REFERENCES clients(id),
    step              TEXT NOT NULL CHECK (step IN ('started', 'keys_destroyed', 'scrubbed',
                          'blobs_deleted', 'purged', 'certified', 'done')),
    trigger           TEXT NOT NULL CHECK (trigger IN ('sla', 'early')),
    request_id        INTEGER REFERENCES shred_requests(id),
    performed_by      TEXT NOT NULL,
    sla_end           INTEGER NOT NULL,
    grace_days        INTEGER NOT NULL,
    manifest          TEXT NOT NULL,   -- JSON: what will be destroyed (key ids, fingerprints, counts)
    result            TEXT,            -- JSON: what each step found and did
    started_at        INTEGER NOT NULL,
    keys_destroyed_at INTEGER,
    scrubbed_at       INTEGER,
    blobs_deleted_at  INTEGER,
    purged_at         INTEGER,
    certified_at      INTEGER,
    done_at           INTEGER
);
CREATE INDEX shred_jobs_open ON shred_jobs(step) WHERE step <> 'done';

-- Opaque names of the blobs of a shredded client (keyed hashes; they reveal nothing), kept so that
-- local deletion can resume and the certificate can report remote deletes still pending.
CREATE TABLE shred_blobs (
    client_id  TEXT NOT NULL REFERENCES clients(id),
    blob_name  TEXT NOT NULL,
    PRIMARY KEY (client_id, blob_name)
) WITHOUT ROWID;

-- Exactly one signed certificate per shredded client.
CREATE TABLE shred_certificates (
    client_id   TEXT PRIMARY KEY REFERENCES clients(id),
    body        TEXT NOT NULL,        -- canonical JSON, the exact bytes that were signed (after the label)
    signature   BLOB NOT NULL,        -- Ed25519 over b"cvault/v1/shred-certificate\x00" || body
    digest      TEXT NOT NULL,        -- SHA-256 hex of body
    issued_at   INTEGER NOT NULL
);
