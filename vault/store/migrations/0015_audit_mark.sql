-- The checkpoint chain and recovery checkpoints (issue 12 item 3; docs/audit.md section 3).
--
-- prev_checkpoint: the digest (SHA-256 of the signing input) of the checkpoint written before this
-- one, signed with it; NULL for checkpoints written before this migration.
-- recovery: for a checkpoint written by `cvault audit recover`, the signed JSON of the alarm it
-- acknowledges ({"first_bad_seq", "mark_seq", "problem"}); NULL otherwise.
-- The high-water mark itself is the meta row 'audit_mark' (sealed under the audit purpose key);
-- a raised alarm is the meta row 'audit_alarm'.
ALTER TABLE audit_checkpoints ADD COLUMN prev_checkpoint BLOB;
ALTER TABLE audit_checkpoints ADD COLUMN recovery TEXT;
