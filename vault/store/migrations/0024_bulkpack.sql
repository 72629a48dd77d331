-- Packed record blobs (issue 20 item 5; docs/format.md section 9). A bulk import writes the new
-- record versions of one client into pack files: each version is still its own type-1 blob (its
-- own key, nonce and header-as-AAD), stored at pack_offset in the pack named by blob_name, and
-- `size` bytes long. NULL for every other version (one blob file of its own, as before): older
-- vaults simply have no packs. The row MAC covers pack_offset when it is not NULL
-- (docs/format.md section 8), so an edited offset or length fails closed.
ALTER TABLE record_versions ADD COLUMN pack_offset INTEGER;
-- A bulk import wrote every record into two random-key indexes of the path tag: UNIQUE
-- (client_id, path_tag) and records_path_tag (0014), which only served the lookup of a tag under
-- any client (a record moved to another client). That lookup now seeks the UNIQUE index once per
-- client, on a miss only (vault/store/records.py find; EXPLAIN QUERY PLAN: SEARCH records USING
-- COVERING INDEX sqlite_autoindex_records_1 (client_id=? AND path_tag=?)).
DROP INDEX IF EXISTS records_path_tag;
