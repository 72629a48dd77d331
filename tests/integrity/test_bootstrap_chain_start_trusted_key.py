"""review9 R9-6 (high, file writer A4): the R8-1 fix (1e3cb21, ``AuditLog._proven_chain_start``)
starts the bootstrap step's chain proof only from a prune checkpoint "whose signature verifies
under the audit key". But it verifies with ``AuditSigner.public_key()``, which is the **clear
copy** in ``meta.audit_public_key``. No MAC covers that row, and no reader compared it
with the sealed private key. So the file writer who runs R8-1's steps swaps
that row for a public key of their own and signs the planted prune checkpoint with the matching
private key:

1. R6-1's steps (older mark put back, newer checkpoints deleted, tags stripped) and R7-3's
   edit of the ``integrity.bootstrap_closed`` entry's ``action`` (or the entry deleted), as in
   R8-1's replay;
2. ``UPDATE meta SET value = <attacker's Ed25519 public key> WHERE key = 'audit_public_key'``;
3. one prune checkpoint row (id -1, so it is not the newest row find_break compares) with
   ``seq = base_seq`` past the log head, signed by the attacker's key.

``chain_proven`` then walks no entry at all and the chain "proves itself": root alone makes an
admin again (``user add puppet --role admin`` returns its enrollment code). ``audit verify``
would notice the swapped key (verify_live compares it with the trusted one), but nothing on the
path of ``user add`` does. Expected: the proof uses ``trusted_public_key()`` (derived from the
sealed private key; the vault is unsealed here), so the planted row is the integrity alarm, or
the window stays closed. FAILED on main fd868d6; the proof now verifies under the key derived
from the sealed private key."""

from __future__ import annotations

import pytest

from tests.integrity.test_bootstrap_closed_entry_edited import EDITS, _bootstrap_step, _r6_1_steps
from vault import crypto
from vault.audit.checkpoints import Checkpoint

#: the bootstrap_closed entry no longer read as one (the ``outcome`` edit of R7-3 is held by the
#: "any outcome closes it" layer, so only these need the chain proof)
ATTACKS = {
    "action": EDITS["action"],
    "deleted": "DELETE FROM audit_events WHERE action = 'integrity.bootstrap_closed'",
}
FAR = 1_000_000


def _plant_prune_signed_by_own_key(db) -> None:
    vault_id = bytes(db.execute("SELECT value FROM meta WHERE key = 'vault_id'").fetchone()[0])
    private, public = crypto.ed25519_generate()  # the attacker's own key pair
    assert db.execute("UPDATE meta SET value = ? WHERE key = 'audit_public_key'", (public,)).rowcount == 1
    cp = Checkpoint(
        vault_id, FAR, bytes(32), "2026-01-01T00:00:00Z", "prune", base_seq=FAR, base_hash=bytes(32)
    )
    signature = crypto.ed25519_sign(private, cp.signing_input())
    db.execute(
        "INSERT INTO audit_checkpoints (id, seq, entry_hash, at, kind, base_seq, base_hash, signature)"
        " VALUES (-1, ?, ?, ?, 'prune', ?, ?, ?)",
        (FAR, bytes(32), cp.at, FAR, bytes(32), signature),
    )


@pytest.mark.parametrize("edit", sorted(ATTACKS))
def test_a_prune_signed_under_a_swapped_public_key_does_not_skip_the_chain_proof(tmp_path, edit):
    home, db = _r6_1_steps(tmp_path)
    assert db.execute(ATTACKS[edit]).rowcount == 1
    _plant_prune_signed_by_own_key(db)
    db.commit()
    db.close()
    again = _bootstrap_step(home, tmp_path)
    assert again["mode"] in ("two_person", "alarm") and "enrollment_code" not in again, (
        f"root alone made an admin (mode {again.get('mode')!r}): R8-1's steps with the audit public"
        " key row swapped for the attacker's, who signed the planted prune checkpoint"
    )
