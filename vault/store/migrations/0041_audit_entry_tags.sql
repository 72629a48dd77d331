-- An unsealed process's audit entries are provably its own (review6 R6-1; docs/audit.md section 3).
--
-- mark_tag: HMAC under a root-derived key over (vault id, seq, entry_hash) (vault.keys.Keyring.
-- audit_entry_tag), written by every unsealed append in the same transaction that moves the sealed
-- high-water mark past the entry. An entry after the mark's head with a valid tag shows the mark is
-- an older copy put back: the integrity alarm. NULL on entries a sealed process wrote (and on every
-- entry from before this migration). Not part of the hash chain.
ALTER TABLE audit_events ADD COLUMN mark_tag BLOB;
