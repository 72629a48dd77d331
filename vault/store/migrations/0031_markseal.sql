-- The first checkpoint `cvault upgrade` signs over a log written by a cvault from before the audit
-- high-water mark (independent review S4; docs/audit.md section 3, "A vault from before the mark").
--
-- unproven: the signed JSON {"first_seq", "last_seq"} of the entries that older cvault wrote after
-- its newest signed checkpoint (all of them when it had none): no signature proves them, and
-- `audit verify` says so from then on. NULL on every other checkpoint.
ALTER TABLE audit_checkpoints ADD COLUMN unproven TEXT;
