-- Authenticated policy rows (issue 12; docs/format.md "Row MACs"; vault/store/rowmac.py). Each row a
-- decision reads carries an HMAC-SHA256 under the root-derived "row-mac" key over its table, its
-- ids and the values the policy reads. NULL until the first unseal after the upgrade computes it
-- (the backfill, once per vault); after that a row without a valid MAC is an integrity failure.
ALTER TABLE meta ADD COLUMN mac BLOB;
ALTER TABLE users ADD COLUMN mac BLOB;
ALTER TABLE user_roles ADD COLUMN mac BLOB;
ALTER TABLE sessions ADD COLUMN mac BLOB;
ALTER TABLE assignments ADD COLUMN mac BLOB;
ALTER TABLE clients ADD COLUMN mac BLOB;
ALTER TABLE records ADD COLUMN mac BLOB;
ALTER TABLE record_versions ADD COLUMN mac BLOB;
ALTER TABLE account_requests ADD COLUMN mac BLOB;
ALTER TABLE shred_requests ADD COLUMN mac BLOB;
ALTER TABLE setting_requests ADD COLUMN mac BLOB;
-- Sessions: a keyed MAC of the bearer token under the "session" purpose key, binding the user id
-- (docs/identity.md, "Sessions"); sessions from before it are ended at the backfill.
ALTER TABLE sessions ADD COLUMN token_mac BLOB;
-- `secret get` finds a record by its path tag alone, so a record moved to another client (its
-- client_id edited) is an integrity failure, not "no such record".
CREATE INDEX records_path_tag ON records(path_tag);
