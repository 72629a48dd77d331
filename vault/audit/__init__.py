"""The tamper-evident audit log (docs/spec.md §9; docs/audit.md)."""
