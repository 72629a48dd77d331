-- Audit checkpoints and per-client audit-detail keys (docs/spec.md §9; docs/audit.md).

-- Signed checkpoints of the audit chain head. The signing input is defined in docs/audit.md
-- section 3; a copy of each checkpoint is also put in the blob store as audit-checkpoint-<seq>.
CREATE TABLE audit_checkpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    seq        INTEGER NOT NULL,     -- sequence number of the head entry signed (0: empty log)
    entry_hash BLOB NOT NULL,        -- that entry's entry_hash (the genesis hash for seq 0)
    at         TEXT NOT NULL,        -- RFC 3339 UTC
    kind       TEXT NOT NULL CHECK (kind IN ('periodic', 'manual', 'prune')),
    base_seq   INTEGER,              -- prune only: the last deleted sequence number
    base_hash  BLOB,                 -- prune only: its entry_hash, the new start of the chain
    signature  BLOB NOT NULL         -- Ed25519 under the vault's audit key
);
CREATE INDEX audit_checkpoints_seq ON audit_checkpoints(seq);

-- One audit-detail key per client: seals the client-revealing detail of audit events (record
-- paths). It survives client-key rotation and is destroyed only when the client is shredded
-- (vault.audit.details.destroy_client_audit_key). No foreign key on purpose: the shred destroys
-- this row and may purge the client row in any order.
CREATE TABLE client_audit_keys (
    client_id   TEXT PRIMARY KEY,    -- clients.id
    wrapped     BLOB NOT NULL,       -- N || AES-256-GCM(K_wrap, N, key, AAD("client-audit-key", vault_id, client_id))
    fingerprint TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE INDEX audit_events_at ON audit_events(at);
