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
