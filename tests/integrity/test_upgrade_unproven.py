"""Independent review 2, S4: ``cvault upgrade`` must not sign a rebuilt audit log.

A vault from before the audit high-water mark (tests/integrity/fixtures/pre_mark_vault.tar.gz,
made by main at 9aa0ac5: 250 entries, checkpoints 100 and 200 signed without ``prev``, the audit
key sealed under the old context) gets its first mark at ``cvault upgrade``. A file writer with
no key edits vault.db first: rewrites entries after checkpoint 100, deletes checkpoint 200 and
rebuilds the chain (the genesis hash needs only the vault id). Before the fix the first mark
signed the rebuilt head and ``audit verify`` reported the forged history as proven. Now the
upgrade verifies the whole log first (every signature, the chain, every blob-store copy, the
replica's newest copy) and refuses (exit 6, one line naming the first bad entry, the vault left
on its old format) when the log does not extend a signed checkpoint it can find; what it cannot
find is not proven by any signature, and the first mark signs that range as unproven, which
``audit verify`` reports from then on (docs/audit.md section 3, docs/security.md guarantee 12b).
Everything runs as the operator does it: real SQLite edits by the attacker, the CLI in
subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from tests.factories import Person, write_session_file
from tests.helpers import ROOT, cli_upgrade, run_cli
from tests.integrity.test_audit_mark import rebuild_after
from tests.integrity.test_upgrade_row_macs import FIXTURE as PRE_ROWMAC
from tests.integrity.test_upgrade_row_macs import unpack_old_vault
from vault.audit.log import EVENT_COLUMNS
from vault.audit.verify import entry_bytes

pytestmark = pytest.mark.slow

PRE_MARK = ROOT / "tests" / "integrity" / "fixtures" / "pre_mark_vault.tar.gz"


def _db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "vault.db", isolation_level=None)


def _one(home: Path, sql: str):
    conn = _db(home)
    try:
        return conn.execute(sql).fetchone()
    finally:
        conn.close()


def delete_checkpoint(home: Path, seq: int, *, copy_too: bool) -> None:
    """Checkpoint ``seq``'s row and outbox row, and with ``copy_too`` its blob-store copy."""
    conn = _db(home)
    try:
        conn.execute("DELETE FROM audit_checkpoints WHERE seq = ?", (seq,))
        conn.execute("DELETE FROM outbox WHERE blob_name = ?", (f"audit-checkpoint-{seq}",))
    finally:
        conn.close()
    if copy_too:
        for path in home.rglob(f"audit-checkpoint-{seq}"):
            path.unlink()


def _legacy_state(home: Path) -> tuple:
    """What says the vault is still on its old format: the audit key as sealed before the mark,
    no mark, the old checkpoints, the entries, no row-MAC marker."""
    return (
        _one(home, "SELECT value FROM meta WHERE key = 'audit_private_sealed'")[0],
        _one(home, "SELECT count(*) FROM meta WHERE key = 'audit_mark'")[0],
        _one(home, "SELECT count(*), max(seq) FROM audit_checkpoints"),
        _one(home, "SELECT count(*) FROM audit_events"),
        _one(home, "SELECT count(*) FROM meta WHERE key = 'row_macs'")[0],
    )


def _upgrade(vdir, tmp_path):
    env = vdir.env(CVAULT_SESSION_FILE=str(tmp_path / "none.json"))
    return cli_upgrade(lambda *argv: run_cli("--json", *argv, env=env))


def _rita_env(vdir, cast, tmp_path) -> dict:
    rita = Person("rita", cast["users"]["rita"], frozenset({"security_reviewer"}))
    v = vdir.open()
    try:
        token = rita.token(v)
    finally:
        v.close()
    session = write_session_file(tmp_path / "rita.json", cast["vault_id"], "rita", token)
    return vdir.env(CVAULT_SESSION_FILE=str(session))


def _verify(vdir, cast, tmp_path, *argv: str) -> dict:
    """``cvault audit verify --json [argv]`` run by rita (security reviewer) after the upgrade."""
    proc = run_cli("--json", "audit", "verify", *argv, env=_rita_env(vdir, cast, tmp_path))
    assert "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout)
    assert proc.returncode == (0 if result["ok"] else 6), (proc.returncode, proc.stderr)
    return result


def _first_mark(home: Path) -> tuple[int, dict | None]:
    """The first checkpoint signed by the upgrade (the first with ``prev``): its seq, unproven."""
    seq, unproven = _one(
        home,
        "SELECT seq, unproven FROM audit_checkpoints WHERE prev_checkpoint IS NOT NULL ORDER BY id LIMIT 1",
    )
    return seq, None if unproven is None else json.loads(unproven)


# --- the honest vaults from before the mark ---------------------------------------------------------


@pytest.mark.parametrize(
    ("archive", "signed", "head"),
    [(PRE_MARK, 200, 250), (PRE_ROWMAC, 0, 9)],
    ids=["checkpoints-100-200", "no-checkpoint"],
)
def test_an_honest_vault_from_before_the_mark_upgrades_and_names_what_no_signature_proves(
    tmp_path, archive, signed, head
):
    """It upgrades and verifies; the entries its old cvault wrote after its newest checkpoint
    (all 9 of the pre-row-MAC fixture, which has none) are signed as unproven by the first mark,
    and ``audit verify`` says so: the exact range, the checkpoint, the reason, and a warning."""
    vdir, cast = unpack_old_vault(tmp_path, archive)
    upgraded = _upgrade(vdir, tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert json.loads(upgraded.stdout)["upgraded"] == ["row MACs added", "audit high-water mark written"]
    mark_seq, unproven = _first_mark(vdir.home)
    assert mark_seq == head + 1  # the upgrade's own integrity.row_macs event, signed as proven
    assert unproven == {"first_seq": signed + 1, "last_seq": head}
    result = _verify(vdir, cast, tmp_path)
    assert result["ok"] and result["problem"] is None, result
    assert result["unproven"] == [
        {"first_seq": signed + 1, "last_seq": head, "checkpoint": mark_seq, "reason": "upgrade"}
    ]
    warning = (
        f"entries {signed + 1}-{head} were written by a cvault from before the audit high-water mark after"
        f" its newest signed checkpoint: no signature proves them (cvault upgrade signed them as unproven"
        f" in checkpoint {mark_seq})"
    )
    assert warning in result["warnings"], result["warnings"]
    doctor = run_cli("--json", "doctor", env=vdir.env(CVAULT_SESSION_FILE=str(tmp_path / "none.json")))
    assert doctor.returncode == 0 and f"audit: {warning}" in json.loads(doctor.stdout)["warnings"], (
        doctor.stdout
    )
    # an export carries the first mark's signed range: verified offline, it says the same
    export = tmp_path / "audit.jsonl"
    exported = run_cli(
        "audit", "export", "--format", "jsonl", "--out", str(export), env=_rita_env(vdir, cast, tmp_path)
    )
    assert exported.returncode == 0, exported.stderr
    offline = _verify(vdir, cast, tmp_path, "--file", str(export), "--pubkey", result["public_key"])
    assert offline["ok"] and warning in offline["warnings"], offline
    assert offline["unproven"] == result["unproven"]


# --- the attack: a log rebuilt before the upgrade ------------------------------------------------------


@pytest.mark.parametrize("edit", ["rewrite", "cut"])
def test_a_rebuilt_log_is_refused_at_upgrade_when_a_copy_of_a_newer_checkpoint_is_left(tmp_path, edit):
    """Entries after checkpoint 100 rewritten (or cut after 180) and checkpoint 200's row
    deleted, its blob-store copy left: the upgrade refuses with the integrity alarm (exit 6, one
    line, the first bad entry 101 or 181), signs nothing and leaves the vault as it was."""
    vdir, cast = unpack_old_vault(tmp_path, PRE_MARK)
    vault_id = bytes.fromhex(cast["vault_id"])
    if edit == "rewrite":
        rebuild_after(vdir.home, vault_id, start=101, edit_seq=150, keep=250)
        first_bad = 101
    else:
        rebuild_after(vdir.home, vault_id, start=181, edit_seq=181, keep=180)
        first_bad = 181
    delete_checkpoint(vdir.home, 200, copy_too=False)
    before = _legacy_state(vdir.home)
    refused = _upgrade(vdir, tmp_path)
    assert refused.returncode == 6, (refused.returncode, refused.stdout, refused.stderr)
    lines = refused.stderr.strip().splitlines()
    assert "Traceback" not in refused.stderr
    assert lines[-1].startswith("cvault: integrity alarm: the audit log does not verify: "), lines
    assert f"; first bad entry {first_bad}; nothing upgraded, the vault stays on its old format" in lines[-1]
    assert "checkpoint 200" in lines[-1], lines[-1]
    assert _legacy_state(vdir.home) == before  # nothing signed, MACed or re-sealed
    again = _upgrade(vdir, tmp_path)  # and it stays refused
    assert again.returncode == 6 and f"first bad entry {first_bad};" in again.stderr, again.stderr
    assert _legacy_state(vdir.home) == before


def test_a_rebuilt_log_with_every_trace_deleted_is_signed_only_as_unproven(tmp_path):
    """Checkpoint 200 deleted everywhere (row, outbox, copy) and entries 101-250 rebuilt around an
    edited entry 150: nothing left proves them, so the upgrade cannot tell and goes on, but its
    first mark signs 101-250 as unproven (not as proven, as before the fix) and ``audit verify``
    reports exactly that range, while checkpoint 100 still proves 1-100."""
    vdir, cast = unpack_old_vault(tmp_path, PRE_MARK)
    rebuild_after(vdir.home, bytes.fromhex(cast["vault_id"]), start=101, edit_seq=150, keep=250)
    delete_checkpoint(vdir.home, 200, copy_too=True)
    upgraded = _upgrade(vdir, tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    mark_seq, unproven = _first_mark(vdir.home)
    assert unproven == {"first_seq": 101, "last_seq": 250}
    result = _verify(vdir, cast, tmp_path)
    assert result["ok"], result
    assert result["unproven"] == [
        {"first_seq": 101, "last_seq": 250, "checkpoint": mark_seq, "reason": "upgrade"}
    ]
    assert any(
        w.startswith("entries 101-250 were written by a cvault from before") for w in result["warnings"]
    )


def test_a_checkpoint_copy_that_outlives_its_deleted_row_still_proves_its_entries(tmp_path):
    """Checkpoint 200's row deleted, its blob-store copy kept, the entries untouched: the copy
    still signs 101-200, so only 201-250 are signed as unproven (not 101-250)."""
    vdir, cast = unpack_old_vault(tmp_path, PRE_MARK)
    delete_checkpoint(vdir.home, 200, copy_too=False)
    upgraded = _upgrade(vdir, tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    mark_seq, unproven = _first_mark(vdir.home)
    assert unproven == {"first_seq": 201, "last_seq": 250}
    result = _verify(vdir, cast, tmp_path)
    assert result["ok"] and result["signed_up_to"] == mark_seq, result
    assert result["unproven"] == [
        {"first_seq": 201, "last_seq": 250, "checkpoint": mark_seq, "reason": "upgrade"}
    ]


def test_an_entry_appended_after_the_upgrade_verified_the_log_is_not_signed(tmp_path, monkeypatch):
    """A file writer appends an entry (a correct chain extension) between the upgrade's
    verification and its first mark: the first mark is refused (integrity failure, nothing
    signed, the key not re-sealed, no alarm stored); the next upgrade verifies the log as it
    is then and signs the appended entry as unproven."""
    import vault.audit.live as live
    from vault.errors import IntegrityFailure

    vdir, cast = unpack_old_vault(tmp_path, PRE_MARK)
    real = live.verify_live

    def verify_then_append(ctx, *args, **kwargs):
        result = real(ctx, *args, **kwargs)
        conn = _db(vdir.home)
        try:
            row = conn.execute(f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq = 250").fetchone()
            fields = (251, row[1], "bob", "secret.get", "acme", "allow", "planted", "cli", None, None)
            digest = hashlib.sha256(row[11] + entry_bytes(*fields)).digest()
            conn.execute(
                f"INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (*fields, row[11], digest),
            )
        finally:
            conn.close()
        return result

    monkeypatch.setattr(live, "verify_live", verify_then_append)
    sealed_key = _one(vdir.home, "SELECT value FROM meta WHERE key = 'audit_private_sealed'")[0]
    with pytest.raises(IntegrityFailure, match="changed after cvault upgrade verified it"):
        vdir.open(upgrade=True)
    assert _one(vdir.home, "SELECT value FROM meta WHERE key = 'audit_private_sealed'")[0] == sealed_key
    assert _one(vdir.home, "SELECT count(*) FROM meta WHERE key IN ('audit_mark', 'audit_alarm')") == (0,)
    assert _one(vdir.home, "SELECT count(*), max(seq) FROM audit_checkpoints") == (2, 200)
    monkeypatch.setattr(live, "verify_live", real)
    vdir.open(upgrade=True).close()
    mark_seq, unproven = _first_mark(vdir.home)
    assert unproven == {"first_seq": 201, "last_seq": 251} and mark_seq == 252
    assert _verify(vdir, cast, tmp_path)["unproven"][0]["last_seq"] == 251


# --- the replica: the copy outside the machine ---------------------------------------------------------


def _open_with_replica(vdir, replica):
    from vault.facade import Vault

    return Vault.open(vdir.home, service_options={"sync": {"remote": replica}})


def test_a_rebuilt_log_is_refused_when_only_the_replica_holds_the_newer_checkpoint(
    tmp_path, onedrive_backend
):
    """Checkpoint 200 deleted everywhere on the machine (row, outbox, blob copy) and 101-250
    rebuilt: the OneDrive replica (a real client against the loopback Graph fake) still holds the
    copy the old cvault pushed, so the upgrade refuses (the alarm, first bad entry 101) and
    leaves the vault as it was."""
    from vault.errors import AuditAlarm

    vdir, cast = unpack_old_vault(tmp_path, PRE_MARK)
    onedrive_backend.put("audit-checkpoint-200", next(vdir.home.rglob("audit-checkpoint-200")).read_bytes())
    rebuild_after(vdir.home, bytes.fromhex(cast["vault_id"]), start=101, edit_seq=150, keep=250)
    delete_checkpoint(vdir.home, 200, copy_too=True)
    before = _legacy_state(vdir.home)
    v = _open_with_replica(vdir, onedrive_backend)
    try:
        with pytest.raises(
            AuditAlarm, match="does not match signed checkpoint 200; first bad entry 101;"
        ) as err:
            v.unseal_key_file(vdir.key_file, upgrade=True)
        assert err.value.first_bad_seq == 101 and "\n" not in err.value.message
        assert not v.unsealed
    finally:
        v.close()
    assert _legacy_state(vdir.home) == before


def test_an_unreadable_replica_refuses_the_upgrade(tmp_path, onedrive_backend, fake_graph):
    """A replica that is configured but cannot be listed (403) may hold the newer checkpoint: the
    upgrade refuses (exit 6, nothing upgraded) instead of signing without it, and goes through
    once the replica answers (the honest vault: 201-250 unproven)."""
    from vault.errors import IntegrityFailure

    vdir, _ = unpack_old_vault(tmp_path, PRE_MARK)
    before = _legacy_state(vdir.home)
    fake_graph.inject("403", times=50, method="GET")
    v = _open_with_replica(vdir, onedrive_backend)
    try:
        with pytest.raises(IntegrityFailure, match="replica's checkpoint copies could not be read") as err:
            v.unseal_key_file(vdir.key_file, upgrade=True)
        assert err.value.exit_code == 6 and "nothing upgraded" in err.value.message
    finally:
        v.close()
    assert _legacy_state(vdir.home) == before
    fake_graph.clear_faults()
    v = _open_with_replica(vdir, onedrive_backend)
    try:
        v.unseal_key_file(vdir.key_file, upgrade=True)
    finally:
        v.close()
    assert _first_mark(vdir.home)[1] == {"first_seq": 201, "last_seq": 250}


def test_the_key_put_back_as_before_the_mark_beside_marked_checkpoints_is_refused(tmp_path):
    """Review R5 meets S4: after the upgrade the vault signs its first mark (251) and the
    checkpoints 300 and 400, each with ``prev``; a file writer rewrites entries 401-450, deletes
    the mark and puts back the audit key row as it was sealed before the upgrade, so the vault
    looks like one from before the mark again. The log still verifies (400 matches; without this
    check 401-450 would only be signed as unproven), but a checkpoint signed with ``prev`` shows
    the vault had a mark: the next upgrade refuses (exit 6) and signs nothing."""
    vdir, cast = unpack_old_vault(tmp_path, PRE_MARK)
    legacy_key = _one(vdir.home, "SELECT value FROM meta WHERE key = 'audit_private_sealed'")[0]
    assert _upgrade(vdir, tmp_path).returncode == 0
    v = vdir.open()
    try:
        while v.ctx.audit.head()[0] < 450:
            v.ctx.audit.append(actor="bob", action="secret.list", outcome="allow", client="acme")
    finally:
        v.close()
    assert (
        _one(vdir.home, "SELECT max(seq) FROM audit_checkpoints WHERE prev_checkpoint IS NOT NULL")[0] == 400
    )
    rebuild_after(vdir.home, bytes.fromhex(cast["vault_id"]), start=401, edit_seq=420, keep=450)
    conn = _db(vdir.home)
    try:
        conn.execute("DELETE FROM meta WHERE key IN ('audit_mark', 'audit_alarm')")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_private_sealed'", (legacy_key,))
    finally:
        conn.close()
    signed = _one(vdir.home, "SELECT count(*) FROM audit_checkpoints")
    refused = _upgrade(vdir, tmp_path)
    assert refused.returncode == 6, (refused.returncode, refused.stderr)
    line = refused.stderr.strip().splitlines()[-1]
    assert "checkpoint 251 was signed by a cvault with the mark" in line and "nothing upgraded" in line, line
    assert _one(vdir.home, "SELECT count(*) FROM audit_checkpoints") == signed
    assert _one(vdir.home, "SELECT value FROM meta WHERE key = 'audit_private_sealed'")[0] == legacy_key
