"""review7 R7-3: 9b03109's second layer against review6 R6-1
(``vault.identity.facts.bootstrap_closed_in_log``) reads the ``integrity.bootstrap_closed`` entry
by its ``action`` and ``outcome`` columns only. Nothing on the path of ``user add`` recomputes an
entry's hash from its columns (``find_break`` compares the ``entry_hash`` *column* at the mark's
cp_seq and head_seq, and looks for valid tags after the head), so the file writer who already
runs R6-1's steps (older mark put back, newer checkpoints deleted, tags stripped: the third test of
tests/integrity/test_r6_1_old_mark_with_newer_checkpoints_deleted.py) also edits one column of
that one entry (here ``outcome``; deleting the row works as well). ``user add puppet --role
admin`` is a bootstrap step again: root alone gets a second admin and its enrolment code.

``audit verify`` reports the edited entry afterwards (root has its admin by then). Deleting the
entry and re-chaining the entries after it hides it from verify as well, but that is the
documented non-guarantee (guarantee 40's last sentence, 7a); the point here is that no rebuild is
needed for the bootstrap step itself.

The second test is simpler still: review6 R6-6's steps as 63a3a33 replays them (delete
``two_admins``, the bootstrap creation row and ``audit_mark``; root's own one-person ``audit
recover``), plus the same one-column edit: no older mark, no checkpoint deleted, no tag stripped.
Both failed on main 63a3a33. Fixed (vault.audit.log.AuditLog.chain_proven): when every row says
the window is open, ``user add`` re-hashes the chain against the sealed mark first (a break is the
integrity alarm; a bad entry inside a range an ``audit recover`` acknowledged keeps the window
closed), and an ``integrity.bootstrap_closed`` entry of any outcome closes it. The ``action``
variants below need the chain proof (the entry no longer reads as that action at all)."""

from __future__ import annotations

import pytest

from tests.identity.test_insider_attacks_cli import (
    _init_admin_principal,
    vault_with_a_bootstrapped_second_admin,
)
from tests.integrity.test_r6_1_old_mark_with_newer_checkpoints_deleted import (
    bootstrapped_admin_disabled,
    put_back_older_mark,
)
from tests.integrity.test_recovery_keeps_one_way_facts import recover_alone_then_add_an_admin
from vault.errors import AuditAlarm
from vault.facade import Vault


def _r6_1_steps(tmp_path):
    """review6 R6-1's attack as its third test replays it; returns (home, open connection)."""
    home, old_mark, checkpoint_then = bootstrapped_admin_disabled(tmp_path)
    return home, put_back_older_mark(home, old_mark, checkpoint_then, strip_tags=True)


def _bootstrap_step(home, tmp_path) -> dict:
    v = Vault.open(home)
    v.unseal_key_file(tmp_path / "k")
    try:
        root = _init_admin_principal(v, "root")
        try:
            return v.users.add(root, "puppet", ["admin"])
        except AuditAlarm:
            return {"mode": "alarm"}  # fixed: the edited log is the alarm
    finally:
        v.close()


EDITS = {
    "outcome": "UPDATE audit_events SET outcome = 'error' WHERE action = 'integrity.bootstrap_closed'",
    "action": "UPDATE audit_events SET action = 'user.add' WHERE action = 'integrity.bootstrap_closed'",
}


@pytest.mark.parametrize("column", sorted(EDITS))
def test_editing_the_bootstrap_closed_entry_does_not_reopen_the_bootstrap_window(tmp_path, column):
    home, db = _r6_1_steps(tmp_path)
    # R7-3: the one more edit: the second layer's entry no longer reads as "closed"
    edited = db.execute(EDITS[column]).rowcount
    db.commit()
    db.close()
    assert edited == 1
    again = _bootstrap_step(home, tmp_path)
    assert again["mode"] in ("two_person", "alarm") and "enrollment_code" not in again, (
        f"root alone made an admin (mode {again.get('mode')!r}) after R6-1's steps plus one"
        " edited column of the integrity.bootstrap_closed entry"
    )
    if again["mode"] == "alarm":  # recorded: root's acknowledgement recovers, the window stays closed
        v = Vault.open(home)
        v.unseal_key_file(tmp_path / "k")
        try:
            alarm = v.ctx.audit.alarm()
            assert alarm is not None and alarm["authentic"], alarm
            v.ctx.audit.recover(alarm["first_bad_seq"])
        finally:
            v.close()
        after = _bootstrap_step(home, tmp_path)
        assert after["mode"] == "two_person" and "enrollment_code" not in after, after


@pytest.mark.parametrize("column", sorted(EDITS))
def test_a_recovery_with_the_entry_edited_keeps_the_bootstrap_window_closed(tmp_path, column):
    again = recover_alone_then_add_an_admin(tmp_path, EDITS[column])
    assert again is None or (again["mode"] == "two_person" and "enrollment_code" not in again), (
        f"after R6-6's steps plus one edited column of the integrity.bootstrap_closed entry and"
        f" root's own recovery, root made an admin alone (mode {again.get('mode')!r})"
    )


def test_user_add_with_two_admins_never_walks_the_log(tmp_path, monkeypatch):
    """The chain proof costs only in the rare case (every row says the window is open): with two
    enrolled admins ``user add --role admin`` never re-hashes the log."""
    from vault.audit.log import AuditLog

    v, root, _second = vault_with_a_bootstrapped_second_admin(tmp_path)
    walked: list[int] = []
    monkeypatch.setattr(AuditLog, "chain_proven", lambda self, conn: walked.append(1) or True)
    try:
        again = v.users.add(root, "third", ["admin"])
    finally:
        v.close()
    assert again["mode"] == "two_person" and walked == []


def test_a_new_vaults_bootstrap_step_proves_the_chain_first(tmp_path, monkeypatch):
    """The one real bootstrap step of a new vault still happens, after the chain proof."""
    from vault.audit.log import AuditLog

    proven = AuditLog.chain_proven
    walked: list[bool] = []
    monkeypatch.setattr(
        AuditLog, "chain_proven", lambda self, conn: walked.append(proven(self, conn)) or walked[-1]
    )
    v, _ = Vault.init(
        tmp_path / "v", key_file=tmp_path / "k", admin="root", admin_password="root-password-12"
    )
    try:
        boot = v.users.add(_init_admin_principal(v, "root"), "second", ["admin"])
    finally:
        v.close()
    assert boot["mode"] == "bootstrap" and walked == [True]
