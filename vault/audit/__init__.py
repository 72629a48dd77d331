"""The tamper-evident audit log (SPEC 9; docs/audit.md)."""
