-- The shred job row is a decision row (independent review R11): its step says which destructions
-- are done, its manifest what to destroy, its result the custodian's receipts. It carries a row MAC
-- (vault/store/rowmac.py, coverage 3; docs/format.md "Row MACs").
ALTER TABLE shred_jobs ADD COLUMN mac BLOB;
