-- Custody rows are decision rows (row-MAC coverage 4; docs/format.md "Row MACs"): a custody job's
-- step and versions say which custody secret the rotation creates, re-wraps under and destroys;
-- a custody version's state says which secret opens a client's keys and which the shred destroys;
-- a custodian's row says where a secret is created and destroyed. Each carries a row MAC
-- (vault/store/rowmac.py). client_custody was a WITHOUT ROWID table: row MACs are written by
-- rowid (a row planted for a key not used yet never gets one), so it is rebuilt with a rowid.
ALTER TABLE custody_jobs ADD COLUMN mac BLOB;
ALTER TABLE custodians ADD COLUMN mac BLOB;
CREATE TABLE client_custody_v2 (
    client_id     TEXT NOT NULL REFERENCES clients(id),
    version       INTEGER NOT NULL,
    custodian_id  INTEGER NOT NULL REFERENCES custodians(id),
    state         TEXT NOT NULL CHECK (state IN ('pending', 'current', 'retired', 'destroyed')),
    fingerprint   TEXT,
    key_id        TEXT,
    wrapped       BLOB,
    created_at    INTEGER NOT NULL,
    destroyed_at  INTEGER,
    receipt       TEXT,
    mac           BLOB,
    PRIMARY KEY (client_id, version)
);
INSERT INTO client_custody_v2 (client_id, version, custodian_id, state, fingerprint, key_id, wrapped,
    created_at, destroyed_at, receipt)
SELECT client_id, version, custodian_id, state, fingerprint, key_id, wrapped, created_at,
    destroyed_at, receipt
FROM client_custody;
DROP TABLE client_custody;
ALTER TABLE client_custody_v2 RENAME TO client_custody;
CREATE UNIQUE INDEX client_custody_current ON client_custody(client_id) WHERE state = 'current';
