"""review8 R8-1 (high): AuditLog.chain_proven walks from AuditLog._chain_start, which reads the newest
``kind = 'prune'`` checkpoint row's base_seq/base_hash without checking its signature. A file
writer inserts one fake prune row (a low id: it is not the newest row, so find_break's
newest-checkpoint digest is unchanged) whose base_seq lies past the log head: the walk covers no
entry and the chain 'proves itself'; the edited integrity.bootstrap_closed entry is never
re-hashed. Fixed: the proof starts only from a prune checkpoint whose signature verifies
(AuditLog._proven_chain_start); an unsigned one is the integrity alarm. Guarantee 40."""

from __future__ import annotations

import pytest

from tests.integrity.test_bootstrap_closed_entry_edited import EDITS, _bootstrap_step, _r6_1_steps
from tests.integrity.test_recovery_keeps_one_way_facts import recover_alone_then_add_an_admin
from vault.errors import AuditAlarm

FAKE_PRUNE = (
    "INSERT INTO audit_checkpoints (id, seq, entry_hash, at, kind, base_seq, base_hash, signature)"
    " VALUES (-1, 0, zeroblob(32), '2026-01-01T00:00:00Z', 'prune', 1000000, zeroblob(32), zeroblob(64))"
)


@pytest.mark.parametrize("column", sorted(EDITS))
def test_a_fake_prune_base_does_not_skip_the_chain_proof(tmp_path, column):
    home, db = _r6_1_steps(tmp_path)
    assert db.execute(EDITS[column]).rowcount == 1
    db.execute(FAKE_PRUNE)
    db.commit()
    db.close()
    again = _bootstrap_step(home, tmp_path)
    assert again["mode"] in ("two_person", "alarm") and "enrollment_code" not in again, (
        f"root alone made an admin (mode {again.get('mode')!r}): R6-1's steps, one edited column"
        " and one unsigned prune row skipped the chain proof"
    )


@pytest.mark.parametrize("column", sorted(EDITS))
def test_a_fake_prune_base_after_a_recovery_keeps_the_window_closed(tmp_path, column):
    try:
        again = recover_alone_then_add_an_admin(tmp_path, EDITS[column], FAKE_PRUNE)
    except AuditAlarm:
        return  # fixed: the unsigned prune row is the alarm
    assert again is None or (again["mode"] == "two_person" and "enrollment_code" not in again), again
