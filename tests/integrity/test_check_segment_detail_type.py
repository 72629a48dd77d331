"""review8 R8-3 (low): vault.audit.mark.check_segment (the re-hash before signing a checkpoint, and
``find_break_now``'s segment for ``audit recover``) still reads ``detail_sealed`` with
``bytes(row[8])`` outside its try: a file writer's text is a TypeError and a big INTEGER a
MemoryError (review7 R7-4's class), not the integrity alarm. Fixed: a detail that is not a BLOB is
the alarm (entry N is malformed). Guarantee 48."""

from __future__ import annotations

import sqlite3

import pytest

from vault.errors import VaultError
from vault.facade import Vault


@pytest.mark.parametrize("value", ["zz", 10**13])
def test_a_wrong_type_detail_after_the_checkpoint_is_the_integrity_failure(tmp_path, value):
    v, _ = Vault.init(
        tmp_path / "v", key_file=tmp_path / "k", admin="root", admin_password="root-password-12"
    )
    v.close()
    db = sqlite3.connect(tmp_path / "v" / "vault.db")
    head = db.execute("SELECT max(seq) FROM audit_events").fetchone()[0]
    db.execute("UPDATE audit_events SET detail_sealed = ? WHERE seq = ?", (value, head))
    db.commit()
    db.close()
    v = Vault.open(tmp_path / "v")
    v.unseal_key_file(tmp_path / "k")
    try:
        try:
            found = v.ctx.audit.find_break_now(v.ctx.db.conn)
        except VaultError:
            return
        assert found is None or "malformed" in str(found) or "modified" in str(found)
    finally:
        v.close()
