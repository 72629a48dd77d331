-- `secret list` from the sealed search index (issue 20 item 6; docs/performance.md): the listing
-- believes the index only while it lists exactly the client's live records' (path tag, current
-- version, updated_at), read in one query (vault.store.records.live_records). With these two
-- indexes it reads the client's records rows in table order (records_client: by client, then
-- rowid, so the rows come page after page, not one random page each as through the unique
-- (client_id, path_tag) index), the current version row's existence from the primary key of
-- record_versions, and whether it is a delete marker from the partial index of the markers.
-- Both are cheap to keep: a new record appends to records_client, and only delete markers are
-- written to record_versions_markers (a bulk import's versions are not).
CREATE INDEX IF NOT EXISTS records_client ON records(client_id);
CREATE INDEX IF NOT EXISTS record_versions_markers ON record_versions(record_id, version) WHERE blob_name IS NULL;
