-- Moving in (issue 18): imports from other tools, teams, and SLA dates from a PSA.
-- Times are integer Unix seconds, UTC. Nothing here holds a secret value in clear.

-- Which records an import wrote, and the version it wrote or last confirmed unchanged: a re-run
-- skips a record whose content is unchanged, updates one the file changed (if nobody edited it
-- in cvault since) and reports the rest as conflicts (docs/import.md, "Writing"). Gone with the
-- record (purge, shred).
CREATE TABLE import_origins (
    record_id   INTEGER PRIMARY KEY REFERENCES records(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    source      TEXT NOT NULL,      -- the format (bitwarden, keepass, 1password, itglue, hudu, csv)
    imported_at INTEGER NOT NULL,
    imported_by TEXT NOT NULL
);

-- Teams: need-to-know for a group of engineers at once (docs/identity.md, "Teams"). Membership and
-- team assignments keep their ended rows for the audit report, like assignments.
CREATE TABLE teams (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    removed_at  INTEGER,
    removed_by  TEXT,
    mac         BLOB                -- row MAC (issue 12), when the vault has one
);
CREATE UNIQUE INDEX teams_live_name ON teams(name) WHERE removed_at IS NULL;

CREATE TABLE team_members (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id    INTEGER NOT NULL REFERENCES teams(id),
    user_id    INTEGER NOT NULL REFERENCES users(id),
    added_at   INTEGER NOT NULL,
    added_by   TEXT NOT NULL,
    removed_at INTEGER,
    removed_by TEXT,
    mac        BLOB
);
CREATE UNIQUE INDEX team_members_open ON team_members(team_id, user_id) WHERE removed_at IS NULL;
CREATE INDEX team_members_user ON team_members(user_id);

CREATE TABLE team_assignments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id  TEXT NOT NULL,       -- clients.id (no FK: like assignments)
    team_id    INTEGER NOT NULL REFERENCES teams(id),
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    ends_at    INTEGER,
    ended_at   INTEGER,
    ended_by   TEXT,
    mac        BLOB
);
CREATE UNIQUE INDEX team_assignments_open ON team_assignments(client_id, team_id) WHERE ended_at IS NULL;
CREATE INDEX team_assignments_team ON team_assignments(team_id);

-- PSA integrations calling POST /v1/sla/contract-events (docs/sla.md, "Contract events"): the
-- HMAC secret is sealed under the vault's integration purpose key, shown once at creation.
CREATE TABLE integrations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    secret_sealed BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    disabled_at   INTEGER,
    disabled_by   TEXT,
    mac           BLOB
);

-- Event ids seen, for replay protection; rows older than the accepted clock skew can be pruned.
CREATE TABLE integration_events (
    integration_id INTEGER NOT NULL REFERENCES integrations(id),
    event_id       TEXT NOT NULL,
    received_at    INTEGER NOT NULL,
    PRIMARY KEY (integration_id, event_id)
);
