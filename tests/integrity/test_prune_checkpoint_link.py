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


# --- a recovery checkpoint as the first kept checkpoint (R5-2 extended, markfix) -----------------


def _recovered_and_pruned(vdir):
    """Checkpoints 100, 200 (at T0) and 300, 400 (30 days later); an alarm (a planted, unMACed
    alarm row) recovered by the operator (admin, stepped up) as recovery checkpoint R after 400;
    then a prune before T0 + 10 days: base 200, kept 300, 400, R and the prune's. Returns R's seq."""
    from datetime import timedelta

    from tests.helpers import T0, add_client, clock_at, operator

    for when, upto in ((T0, 250), (T0 + timedelta(days=30), 450)):
        v = vdir.open(clock=clock_at(when))
        try:
            if when == T0:
                add_client(v, "acme", days=3650)
            while v.ctx.audit.head()[0] < upto:
                v.secrets.list(operator(), "acme")
        finally:
            v.close()
    conn = _db(vdir.home)
    try:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('audit_alarm', ?)",
            (json.dumps({"first_bad_seq": 7, "problem": "planted"}),),
        )
    finally:
        conn.close()
    recovered = vdir.cli("--json", "audit", "recover", "--acknowledge", "1")
    assert recovered.returncode == 0, recovered.stderr
    conn = _db(vdir.home)
    try:
        (recovery_seq,) = conn.execute(
            "SELECT seq FROM audit_checkpoints WHERE recovery IS NOT NULL"
        ).fetchone()
    finally:
        conn.close()
    no_minimum(vdir)
    before = (T0 + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pruned = vdir.cli("--json", "audit", "prune", "--before", before, "--yes")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["base_seq"] == 200
    honest = vdir.cli("--json", "audit", "verify")
    assert honest.returncode == 0 and json.loads(honest.stdout)["ok"], honest.stdout + honest.stderr
    return recovery_seq


def test_checkpoints_deleted_before_a_recovery_checkpoint_kept_first_after_a_prune_are_missing(vdir):
    """The attack: after the prune, the file writer deletes every kept checkpoint before the
    recovery checkpoint (300 and 400, with their outbox rows), so the recovery is the first one
    kept. Before the fix a recovery's ``prev`` was never checked (it linked to the mark's
    checkpoint, which the break may have deleted) and verify said ok; now a recovery links to
    the newest checkpoint row and is checked like any other: the prune's ``base_checkpoint``."""
    recovery_seq = _recovered_and_pruned(vdir)
    conn = _db(vdir.home)
    try:
        gone = [
            r[0]
            for r in conn.execute(
                "SELECT seq FROM audit_checkpoints WHERE seq > 200 AND seq < ? AND kind != 'prune'",
                (recovery_seq,),
            )
        ]
        assert gone == [300, 400], gone
        conn.execute(
            "DELETE FROM audit_checkpoints WHERE seq > 200 AND seq < ? AND kind != 'prune'", (recovery_seq,)
        )
        for seq in gone:
            conn.execute("DELETE FROM outbox WHERE blob_name = ?", (f"audit-checkpoint-{seq}",))
    finally:
        conn.close()
    after = vdir.cli("--json", "audit", "verify")
    assert "Traceback" not in after.stderr, after.stderr
    result = json.loads(after.stdout)
    # before the fix: ok (the recovery restarted the chain unchecked)
    assert not result["ok"] and after.returncode == 6, result
    assert f"signed checkpoints missing before checkpoint {recovery_seq}" in result["problem"], result
    assert result["bad_seq"] == 201
    doctor = vdir.cli("doctor")
    assert doctor.returncode == 6 and f"missing before checkpoint {recovery_seq}" in doctor.stdout, (
        doctor.stdout
    )


def test_a_checkpoint_deleted_just_before_a_recovery_checkpoint_is_a_missing_link(vdir):
    """The same hole without a prune: checkpoint 400, right before the recovery, deleted."""
    recovery_seq = _recovered_and_pruned(vdir)
    conn = _db(vdir.home)
    try:
        conn.execute("DELETE FROM audit_checkpoints WHERE seq = 400")
        conn.execute("DELETE FROM outbox WHERE blob_name = 'audit-checkpoint-400'")
    finally:
        conn.close()
    result = json.loads(vdir.cli("--json", "audit", "verify").stdout)
    assert not result["ok"], result
    assert "signed checkpoint missing after checkpoint 300" in result["problem"], result
    assert recovery_seq > 400
