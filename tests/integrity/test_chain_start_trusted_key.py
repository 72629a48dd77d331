"""Found while fixing review8 R8-4 (the readers of the prune base), two holes around R8-1's fix:

1. ``AuditLog._proven_chain_start`` checked the fake prune row's signature against the *clear
   copy* of the audit public key in ``meta`` (``AuditSigner.public_key``). A file writer (A4)
   who replaces that copy with a key of his own and signs his prune row with it gets R8-1's
   attack back: the chain proof starts past every entry, the edited
   ``integrity.bootstrap_closed`` entry is never re-hashed, and root alone makes an admin
   (mode "bootstrap", an enrolment code). Fixed: the key derived from the sealed private key
   (``trusted_public_key``), as ``audit verify`` uses.
2. The mark check before every unsealed append (``find_break``) took its chain start from any
   prune row, signed or not: a file writer who deletes the oldest entries up to the mark's
   checkpoint and plants an unsigned prune row naming that entry's hash as its base passed it,
   and cvault went on signing checkpoints over the shortened log (only ``audit verify`` and
   ``doctor`` said so). Fixed: that chain start is the proven one too; the unsigned row is the
   integrity alarm (exit 6, one line). Guarantee 40."""

from __future__ import annotations

import pytest

from tests.helpers import file_sql, run_cli
from tests.integrity.test_bootstrap_closed_entry_edited import EDITS, _bootstrap_step, _r6_1_steps
from tests.integrity.test_meta_values import _assert_one_line, _commands, acme  # noqa: F401
from vault import crypto
from vault.audit.checkpoints import Checkpoint

_AT = "2026-01-01T00:00:00Z"


def _self_signed_prune(db, vault_id: bytes, seq: int, base_seq: int, base_hash: bytes) -> None:
    """The file writer's own audit key in ``meta`` and a prune row signed with it."""
    private, public = crypto.ed25519_generate()
    assert db.execute("UPDATE meta SET value = ? WHERE key = 'audit_public_key'", (public,)).rowcount == 1
    body = Checkpoint(vault_id, seq, b"\0" * 32, _AT, "prune", base_seq, base_hash)
    db.execute(
        "INSERT INTO audit_checkpoints (id, seq, entry_hash, at, kind, base_seq, base_hash, signature)"
        " VALUES (-1, ?, zeroblob(32), ?, 'prune', ?, ?, ?)",
        (seq, _AT, base_seq, base_hash, crypto.ed25519_sign(private, body.signing_input())),
    )


def _vault_id(db) -> bytes:
    value = db.execute("SELECT value FROM meta WHERE key = 'vault_id'").fetchone()[0]
    return value if isinstance(value, bytes) else bytes.fromhex(value)


def test_a_prune_signed_with_a_replaced_public_key_does_not_skip_the_chain_proof(tmp_path):
    home, db = _r6_1_steps(tmp_path)
    assert db.execute(EDITS["action"]).rowcount == 1  # the variant that needs the chain proof
    _self_signed_prune(db, _vault_id(db), 10**6, 10**6, b"\0" * 32)
    db.commit()
    db.close()
    again = _bootstrap_step(home, tmp_path)
    assert again["mode"] in ("two_person", "alarm") and "enrollment_code" not in again, (
        f"root alone made an admin (mode {again.get('mode')!r}): a prune row signed with the file"
        " writer's own key, put in meta as the audit public key, skipped the chain proof"
    )


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "self_signed"])
def test_entries_deleted_behind_a_fake_prune_are_the_alarm(acme, signed):  # noqa: F811
    import sqlite3

    vdir, env = acme
    cp = file_sql(vdir, "SELECT max(seq) FROM audit_checkpoints")[0][0]
    assert cp > 0
    base_hash = file_sql(vdir, "SELECT entry_hash FROM audit_events WHERE seq = ?", (cp,))[0][0]
    db = sqlite3.connect(vdir.home / "vault.db")
    if signed:
        _self_signed_prune(db, _vault_id(db), cp, cp, base_hash)
    else:
        db.execute(
            "INSERT INTO audit_checkpoints (id, seq, entry_hash, at, kind, base_seq, base_hash, signature)"
            " VALUES (-1, ?, zeroblob(32), ?, 'prune', ?, ?, zeroblob(64))",
            (cp, _AT, cp, base_hash),
        )
    assert db.execute("DELETE FROM audit_events WHERE seq <= ?", (cp,)).rowcount == cp
    db.commit()
    db.close()
    result = run_cli("secret", "get", "acme", "office/firewall", env=env)
    line = _assert_one_line(result, 6)  # before: exit 0, the secret shown, the next checkpoint signed
    assert "integrity alarm" in line and "is not signed by the audit key" in line, line
    for _name, result in _commands(vdir, env):
        _assert_one_line(result, 6)
