"""A one-person recovery of a deleted mark does not re-open the bootstrap window (review6 R6-6).

``cvault audit recover`` writes the new mark from ``Mark.at_checkpoint(cp, ..., old)`` with
``old = None`` when the mark row was deleted or fails authentication, so the mark's one-way
facts are rebuilt from the rows, the ones a file writer deleted. The attack (root, an admin who
can also write vault.db, R4-6's setting): delete ``two_admins``, the bootstrap creation row and
``audit_mark`` (the alarm), acknowledge it alone with ``audit recover``, then make a sock-puppet
admin alone. What closes it: the append that closed the window also wrote an
``integrity.bootstrap_closed`` entry into the hash chain (review6 R6-1's second layer), and
``user add`` reads the chain, which a recovery does not rewrite. Guarantee 40."""

from __future__ import annotations

import sqlite3

import pytest

from tests.identity.test_insider_attacks_cli import (
    _init_admin_principal,
    vault_with_a_bootstrapped_second_admin,
)
from vault.errors import AuditAlarm, VaultError
from vault.facade import Vault


def recover_alone_then_add_an_admin(tmp_path, *extra_edits: str) -> dict | None:
    """R6-6's attack: root deletes ``two_admins``, the bootstrap creation row and the mark (plus
    ``extra_edits``, statements touching one row each), acknowledges the alarm alone and adds an
    admin; returns that ``user add``'s answer (None: the recovery itself was refused)."""
    v, root, _second = vault_with_a_bootstrapped_second_admin(tmp_path)
    try:
        v.users.disable(root, "second")
    finally:
        v.close()
    db = sqlite3.connect(tmp_path / "v" / "vault.db")  # the file writer (root himself)
    db.execute("DELETE FROM meta WHERE key = 'two_admins'")
    db.execute("DELETE FROM account_requests WHERE kind = 'create' AND mode = 'bootstrap'")
    db.execute("DELETE FROM meta WHERE key = 'audit_mark'")
    for statement in extra_edits:
        assert db.execute(statement).rowcount == 1
    db.commit()
    db.close()
    v = Vault.open(tmp_path / "v")
    v.unseal_key_file(tmp_path / "k")
    try:
        root = _init_admin_principal(v, "root")
        with pytest.raises(AuditAlarm):
            v.users.add(root, "puppet", ["admin"])  # the alarm, as guarantee 40 says
        found = v.ctx.audit.find_break_now(v.ctx.db.conn)
        try:
            v.ctx.audit.recover(found.first_bad_seq)  # root's one-person acknowledgement (TOTP)
        except VaultError:
            return None  # fixed another way: a recovery that would lower the facts is refused
        return v.users.add(root, "puppet", ["admin"])
    finally:
        v.close()


def test_a_recovery_from_a_deleted_mark_keeps_the_bootstrap_window_closed(tmp_path):
    again = recover_alone_then_add_an_admin(tmp_path)
    assert again is None or (again["mode"] == "two_person" and "enrollment_code" not in again), (
        f"after root's own recovery of the deleted mark he made an admin alone (mode"
        f" {again.get('mode')!r}): the recovery rebuilt the one-way facts from the rows he deleted"
    )
