"""Independent review 5, R5-2: a prune must not open a hole in the checkpoint chain.

The range of old entries ``cvault upgrade`` signs as unproven lives in the first mark's
checkpoint row; its deletion is caught by the checkpoint chain (the next checkpoint signs the
first mark's digest as ``prev``). The verifier used to accept *any* first checkpoint after a
prune base (the prune deletes the checkpoints up to its base, so the first kept one points at a
deleted one): after a routine ``audit prune`` a file writer (A4, plain sqlite3, no key) deleted
the first mark and ``audit verify`` reported ok, ``unproven: []``. Now the prune checkpoint signs
``base_checkpoint``, the digest of the newest checkpoint it deletes, and the first checkpoint kept
after the base must sign exactly that as its ``prev`` (docs/audit.md section 3, docs/security.md
guarantee 45). Real vault files, the CLI in subprocesses.
"""

from __future__ import annotations

import json

import pytest

from tests.audit.test_audit_cli import no_minimum
from tests.helpers import run_cli
from tests.integrity.test_upgrade_row_macs import unpack_old_vault
from tests.integrity.test_upgrade_unproven import PRE_MARK, _db, _first_mark, _rita_env, _upgrade, _verify

pytestmark = pytest.mark.slow


def _upgraded_and_pruned(tmp_path):
    vdir, cast = unpack_old_vault(tmp_path, PRE_MARK)  # 250 entries, checkpoints 100 and 200
    assert _upgrade(vdir, tmp_path).returncode == 0
    mark_seq, unproven = _first_mark(vdir.home)
    assert unproven == {"first_seq": 201, "last_seq": 250}
    # a routine prune of old entries (retention minimum 0 here; in production: 365 days after
    # the old vault's first entries), its base before the first mark; the fixture's old entries
    # are all dated 2026-06-01T09:00:00Z, the upgrade's are today's
    no_minimum(vdir)
    pruned = run_cli(
        "--json",
        "audit",
        "prune",
        "--before",
        "2026-06-01T09:00:01Z",
        "--yes",
        env=_rita_env(vdir, cast, tmp_path),
    )
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["base_seq"] == 200 < mark_seq
    honest = _verify(vdir, cast, tmp_path)
    assert honest["ok"], honest
    unproven = [(u["first_seq"], u["last_seq"], u["reason"]) for u in honest["unproven"]]
    assert unproven == [(201, 250, "upgrade")]
    return vdir, cast, mark_seq


@pytest.mark.parametrize("which", ["the first mark", "every checkpoint before the prune's"])
def test_a_checkpoint_deleted_after_a_prune_is_a_missing_link(tmp_path, which):
    vdir, cast, mark_seq = _upgraded_and_pruned(tmp_path)
    # the file writer: plain sqlite3, no key. The first mark's row (or every kept checkpoint but
    # the prune's, so the prune checkpoint is the first one left) and its outbox rows go.
    conn = _db(vdir.home)
    try:
        where = "seq = ? AND kind != 'prune'" if which == "the first mark" else "seq >= ? AND kind != 'prune'"
        gone = [r[0] for r in conn.execute(f"SELECT seq FROM audit_checkpoints WHERE {where}", (mark_seq,))]
        assert mark_seq in gone
        conn.execute(f"DELETE FROM audit_checkpoints WHERE {where}", (mark_seq,))
        for seq in gone:
            conn.execute("DELETE FROM outbox WHERE blob_name = ?", (f"audit-checkpoint-{seq}",))
    finally:
        conn.close()

    after = _verify(vdir, cast, tmp_path)
    # before the fix: ok, unproven [] (the old cvault's unsigned entries reported as signed)
    assert not after["ok"], (
        "audit verify reports the old cvault's unsigned entries as proven: "
        f"unproven={after['unproven']} signed_up_to={after.get('signed_up_to')}"
    )
    assert "signed checkpoints missing before checkpoint" in after["problem"]
    assert after["bad_seq"] == 201
    doctor = run_cli("--json", "doctor", env=vdir.env(CVAULT_SESSION_FILE=str(tmp_path / "none.json")))
    assert "Traceback" not in doctor.stderr, doctor.stderr
    assert doctor.returncode != 0, doctor.stdout
    assert "signed checkpoints missing before checkpoint" in doctor.stdout, doctor.stdout
