-- A prune checkpoint closes the checkpoint chain at its base (review5 R5-2; docs/audit.md section 3).
--
-- base_checkpoint: the digest (as prev_checkpoint) of the newest checkpoint the prune deletes, signed
-- in the prune checkpoint: the first checkpoint kept after the base must sign it as its prev, so a
-- kept checkpoint deleted after a prune is a missing link. NULL on every other checkpoint.
ALTER TABLE audit_checkpoints ADD COLUMN base_checkpoint BLOB;
