-- Indexes for the reviewer's filters on a large log (issue 20; docs/audit.md section 7): the first
-- page of `audit log --client C` or `--user U` over a million events reads the index backwards
-- instead of scanning the table.
CREATE INDEX IF NOT EXISTS audit_events_client_seq ON audit_events(client, seq);
CREATE INDEX IF NOT EXISTS audit_events_actor_seq ON audit_events(actor, seq);
