-- Custody (docs/sla.md section 6, docs/format.md section 2 "custody"): the secrets S(c, n) that
-- the keys of client c depend on live with a custodian outside the vault folder. This database
-- keeps only references to them. Times are integer Unix seconds, UTC.

-- The custodians this vault has used: one current (retired_at NULL), older ones kept until every
-- custody version they held is destroyed. config: JSON, non-secret (where the custody file is, or
-- which Key Vault and app registration; never a credential).
CREATE TABLE custodians (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('local', 'azure-keyvault')),
    config      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);

-- One row per custody version of a client. state: pending (recorded before the custodian is
-- asked to make it, so a crash never leaves a secret the vault does not know of), current (the
-- version wrapping the client's keys), retired (replaced; its destruction is due), destroyed.
CREATE TABLE client_custody (
    client_id     TEXT NOT NULL REFERENCES clients(id),
    version       INTEGER NOT NULL,
    custodian_id  INTEGER NOT NULL REFERENCES custodians(id),
    state         TEXT NOT NULL CHECK (state IN ('pending', 'current', 'retired', 'destroyed')),
    fingerprint   TEXT,             -- of S(c, n): identifies it, reveals nothing
    key_id        TEXT,             -- Key Vault custodian: the key id (kid) that wrapped S
    wrapped       BLOB,             -- Key Vault custodian: wrapKey(S); NULL once destroyed
    created_at    INTEGER NOT NULL,
    destroyed_at  INTEGER,
    receipt       TEXT,             -- JSON: the custodian's destruction receipt
    PRIMARY KEY (client_id, version)
) WITHOUT ROWID;
CREATE UNIQUE INDEX client_custody_current ON client_custody(client_id) WHERE state = 'current';

-- Persisted, resumable custody rotations (a record purge, a client-key rotation, a change of
-- custodian): step started -> created -> rewrapped -> retired (then the row is deleted).
CREATE TABLE custody_jobs (
    client_id           TEXT PRIMARY KEY REFERENCES clients(id),
    reason              TEXT NOT NULL CHECK (reason IN ('purge', 'rotate', 'custodian')),
    from_version        INTEGER,
    to_version          INTEGER NOT NULL,
    rotate_client_key   INTEGER NOT NULL,
    step                TEXT NOT NULL CHECK (step IN ('started', 'created', 'rewrapped', 'retired')),
    started_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

-- The shred gains a step: custody destroyed (after the database keys, before the scrub).
CREATE TABLE shred_jobs_v2 (
    client_id            TEXT PRIMARY KEY REFERENCES clients(id),
    step                 TEXT NOT NULL CHECK (step IN ('started', 'keys_destroyed', 'custody_destroyed',
                             'scrubbed', 'blobs_deleted', 'purged', 'certified', 'done')),
    trigger              TEXT NOT NULL CHECK (trigger IN ('sla', 'early')),
    request_id           INTEGER REFERENCES shred_requests(id),
    performed_by         TEXT NOT NULL,
    sla_end              INTEGER NOT NULL,
    grace_days           INTEGER NOT NULL,
    manifest             TEXT NOT NULL,
    result               TEXT,
    started_at           INTEGER NOT NULL,
    keys_destroyed_at    INTEGER,
    custody_destroyed_at INTEGER,
    scrubbed_at          INTEGER,
    blobs_deleted_at     INTEGER,
    purged_at            INTEGER,
    certified_at         INTEGER,
    done_at              INTEGER
);
INSERT INTO shred_jobs_v2 (client_id, step, trigger, request_id, performed_by, sla_end, grace_days,
    manifest, result, started_at, keys_destroyed_at, scrubbed_at, blobs_deleted_at, purged_at,
    certified_at, done_at)
SELECT client_id, step, trigger, request_id, performed_by, sla_end, grace_days, manifest, result,
    started_at, keys_destroyed_at, scrubbed_at, blobs_deleted_at, purged_at, certified_at, done_at
FROM shred_jobs;
DROP TABLE shred_jobs;
ALTER TABLE shred_jobs_v2 RENAME TO shred_jobs;
CREATE INDEX shred_jobs_open ON shred_jobs(step) WHERE step <> 'done';
