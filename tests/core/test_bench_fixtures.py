"""The benchmarks' synthetic fixtures follow the schema: a fixture that writes rows by hand (the
1,000,000-entry log of ``bench/audit_verify.py``, reused by ``bench/audit_report.py``) broke
silently when migration 0035 added a checkpoint column, and two issues' benchmarks measured
nothing. Built small here, the fixture must give a log that ``audit verify``'s walk accepts."""

from __future__ import annotations

import os

from bench.audit_verify import build, verify_run
from vault import crypto
from vault.store.db import Database


def test_audit_verify_fixture_builds_a_log_that_verifies(tmp_path):
    vault_id = os.urandom(16)
    private, public = crypto.ed25519_generate()
    db = Database(tmp_path / "vault.db", create=True)
    try:
        db.migrate()
        canon = build(db, 250, vault_id, private)
        assert len(canon) == 250
        assert db.one("SELECT count(*) FROM audit_checkpoints")[0] == 2
        verify_run(db, vault_id, public, all_signatures=True)  # SystemExit if it does not verify
    finally:
        db.close()
