-- Separation of duties (issue 11; docs/identity.md "Separation of duties"). Times are Unix seconds.

-- Every creation and factor reset of an account, with who asked and who approved it. A row with
-- approved_at NULL is pending: the account cannot enroll (no code exists yet). The account's
-- lineage (who may not grant it roles, record its training or assign it) is derived from its latest
-- 'create' row and its latest reset row; a full reset ('reset') suspends the account's roles and
-- assignments until confirmed_at is set by someone outside that lineage.
-- mode: two_person (requested, then approved by a second admin), bootstrap (fewer than two enrolled
-- admins: the first admin's code at once; listed by doctor and the audit report forever),
-- single_operator (a vault made with init --single-operator), init (the first admin).
CREATE TABLE account_requests (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    kind         TEXT NOT NULL CHECK (kind IN ('create', 'reset', 'reset_totp')),
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    approved_by  TEXT,
    approved_at  INTEGER,
    mode         TEXT NOT NULL CHECK (mode IN ('two_person', 'bootstrap', 'single_operator', 'init')),
    confirmed_by TEXT,
    confirmed_at INTEGER
);
CREATE INDEX account_requests_user ON account_requests(user_id, id);

-- Accounts made before this migration: their creation row (mode init, no approver).
INSERT INTO account_requests (user_id, kind, requested_by, requested_at, approved_by, approved_at, mode)
    SELECT id, 'create', created_by, created_at, created_by, created_at, 'init' FROM users;

-- Two-person changes of vault settings (the minimum grace period): pending until a second person
-- (outside the requester's lineage) approves.
CREATE TABLE setting_requests (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL CHECK (name IN ('min_grace_days')),
    value        INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    approved_by  TEXT,
    approved_at  INTEGER,
    cancelled_at INTEGER
);

-- Who last set a client's SLA end and grace period, and when (the shred certificate shows it).
ALTER TABLE clients ADD COLUMN sla_set_by TEXT;
ALTER TABLE clients ADD COLUMN sla_set_at INTEGER;
UPDATE clients SET sla_set_by = created_by, sla_set_at = created_at;
