-- Records engineers can live with (issue 16; docs/format.md, "Search index and attachments").
-- Times are integer Unix seconds, UTC. Nothing here holds a record's content in clear.

-- One sealed search index per client: the non-secret terms of its records (path, kind, tags,
-- host, URL, username, SSID, site, custom field names and non-secret custom values), sealed under
-- the client key of key_version (AAD: vault id, client id, key version). A cache, rebuilt from the
-- records' sealed metadata when missing or when the key rotated; destroyed with the client (shred)
-- and useless without its key. Any change to a client's records, by whatever code, deletes the
-- client's index in the same transaction (the triggers below), so it is never stale.
CREATE TABLE search_index (
    client_id   TEXT PRIMARY KEY REFERENCES clients(id),
    key_version INTEGER NOT NULL,
    sealed      BLOB NOT NULL,
    built_at    INTEGER NOT NULL
);
-- (each trigger on one line: the migration runner splits statements at a ';' ending a line)
CREATE TRIGGER search_index_stale_insert AFTER INSERT ON records BEGIN DELETE FROM search_index WHERE client_id = NEW.client_id; END;
CREATE TRIGGER search_index_stale_update AFTER UPDATE ON records BEGIN DELETE FROM search_index WHERE client_id IN (OLD.client_id, NEW.client_id); END;
CREATE TRIGGER search_index_stale_delete AFTER DELETE ON records BEGIN DELETE FROM search_index WHERE client_id = OLD.client_id; END;

-- Which attachment blobs each kept record version refers to. The attachment's key and name live
-- only inside the record version's encrypted document; this table lets pruning, purge and shred
-- find the blobs no kept version uses any more without decrypting anything.
CREATE TABLE attachment_refs (
    record_id INTEGER NOT NULL REFERENCES records(id),
    version   INTEGER NOT NULL,
    blob_name TEXT NOT NULL,
    size      INTEGER NOT NULL,
    PRIMARY KEY (record_id, version, blob_name)
);
CREATE INDEX attachment_refs_blob ON attachment_refs(blob_name);
