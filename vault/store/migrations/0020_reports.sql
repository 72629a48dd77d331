-- The reviewer's report as SQL aggregates (issue 20 item 6; docs/audit.md section 8): every
-- section of `audit report` is a range scan of the window in this one index, which holds every
-- column the aggregates group by (at, action, outcome, actor, client), so a million-event window
-- is counted without reading the table's rows (reasons of refusals are read for the deny rows
-- only). It replaces audit_events_at, its prefix: the same time-range queries still use it.
DROP INDEX IF EXISTS audit_events_at;
CREATE INDEX IF NOT EXISTS audit_events_at_report ON audit_events(at, action, outcome, actor, client);
