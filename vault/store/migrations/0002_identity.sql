-- cvault identity and access (docs/spec.md §5, §6; docs/identity.md). Times are integer Unix seconds, UTC.
-- No password, TOTP secret, code or session token is stored in plaintext: passwords as Argon2id
-- PHC strings, TOTP secrets sealed under the root-derived "totp-seal" key (AAD binds the user id),
-- enrollment and recovery codes as keyed HMAC-SHA256, session tokens as SHA-256.

CREATE TABLE users (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    name                 TEXT NOT NULL UNIQUE,
    password_hash        TEXT,              -- Argon2id PHC string; NULL until enrolled
    totp_sealed          BLOB,              -- TOTP secret sealed (totp-seal, user id); NULL until enrolled
    totp_active          INTEGER NOT NULL DEFAULT 0,  -- 1 after the first login with a valid code
    totp_last_step       INTEGER,           -- last accepted RFC 6238 time step (replay guard)
    failed_count         INTEGER NOT NULL DEFAULT 0,  -- consecutive failed attempts
    locked_until         INTEGER,
    training_valid_until INTEGER,
    disabled             INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL,
    created_by           TEXT NOT NULL,
    enrolled_at          INTEGER
);

CREATE TABLE user_roles (
    user_id    INTEGER NOT NULL REFERENCES users(id),
    role       TEXT NOT NULL CHECK (role IN ('admin', 'account_manager', 'engineer', 'security_reviewer')),
    granted_at INTEGER NOT NULL,
    granted_by TEXT NOT NULL,
    PRIMARY KEY (user_id, role)
);

-- One-time enrollment code per user (24 h), stored as a keyed hash.
CREATE TABLE enrollment (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id),
    code_hash  BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE recovery_codes (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id   INTEGER NOT NULL REFERENCES users(id),
    code_hash BLOB NOT NULL,
    used_at   INTEGER
);
CREATE INDEX recovery_codes_user ON recovery_codes(user_id);

-- Failed authentication attempts, for the rolling-hour cap (docs/spec.md §5: <= 100 per hour).
CREATE TABLE auth_failures (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id),
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL
);
CREATE INDEX auth_failures_user_at ON auth_failures(user_id, at);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,      -- hex SHA-256 of the 256-bit random token
    user_id    INTEGER NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    stepup_at  INTEGER,               -- last TOTP (or recovery code) verified in this session
    ended_at   INTEGER,
    origin     TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

-- Need-to-know assignments of engineers to clients; ended rows are kept for the audit report.
CREATE TABLE assignments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id  TEXT NOT NULL,         -- clients.id (no FK: a shredded client's row may be purged)
    user_id    INTEGER NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    ends_at    INTEGER,               -- optional end date chosen at assignment
    ended_at   INTEGER,               -- set by unassign
    ended_by   TEXT
);
CREATE UNIQUE INDEX assignments_open ON assignments(client_id, user_id) WHERE ended_at IS NULL;
CREATE INDEX assignments_user ON assignments(user_id);
