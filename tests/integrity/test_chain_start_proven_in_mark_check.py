"""Found while fixing review8 R8-4 (the readers of the prune base): the mark check before every
unsealed append (``vault.audit.mark.find_break``) took its chain start from any prune row, signed
or not. A file writer (A4) who deletes the oldest entries up to the mark's checkpoint and plants a
prune row naming that entry's hash as its base (unsigned, or signed with his own key put in
``meta`` as the audit public key: review9 R9-6's swap) passed it: ``secret get`` answered and
cvault went on signing checkpoints over the shortened log; only ``audit verify`` and ``doctor``
said so. Fixed: the mark check's chain start is the proven one (``AuditLog._proven_chain_start``,
R8-1/R9-6: a prune checkpoint whose signature verifies under the key derived from the sealed
private key); the planted row is the integrity alarm (exit 6, one line). Guarantee 40."""

from __future__ import annotations

import pytest

from tests.helpers import file_sql, run_cli
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
