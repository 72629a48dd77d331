"""``cvault backup`` / ``cvault restore`` (vault/backup/service.py), through the real CLI.

* the restore drill: backup, lose the folder, restore into a fresh one, read every client,
  ``audit verify`` passes and the chain continues;
* P1: a backup taken before a shred (or a record purge), restored after it, brings nothing of the
  client back -- the restore names it with the reason, and the rest comes back (P2);
* retention keeps the newest N; a wrong key file, an edited file or a non-empty target are refused
  with their exit codes; ``backup verify`` checks a file with the public key alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import VaultDir, add_client, clock_at, file_sql, operator, run_cli
from vault.principal import Principal

PASSWORDS = {"acme": "acme-fw-pass", "globex": "globex-vpn-pass", "initech": "initech-db-pass"}


@pytest.fixture
def filled(vdir):
    v = vdir.open()
    op = operator()
    for name, password in PASSWORDS.items():
        add_client(v, name, days=3650, grace_days=0)
        v.secrets.put(op, name, "main", "access", {"host": f"{name}.example", "password": password})
        v.secrets.put(op, name, "notes/one", "note", {"text": f"{name} note"})
    v.close()
    return vdir


def _backup(vdir: VaultDir, *args: str) -> dict:
    proc = vdir.cli("--json", "backup", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _restore(vdir: VaultDir, backup: str, home: Path, **env: str) -> tuple[int, dict | None, str]:
    proc = run_cli("--json", "--home", str(home), "restore", backup, env=vdir.env(**env))
    return proc.returncode, (json.loads(proc.stdout) if proc.returncode == 0 else None), proc.stderr


def _get(vdir: VaultDir, home: Path, client: str, path: str = "main"):
    return run_cli("secret", "get", client, path, "--field", "password", env=vdir.env(CVAULT_HOME=str(home)))


def _shred(vdir: VaultDir, name: str) -> None:
    v = vdir.open()
    try:
        v.sla.expire(operator(), name, reason="contract ended")
        v.sla.sweep(Principal.system("sweep"))
        assert v.ctx.client(name).shred_state == "shredded"
    finally:
        v.close()


def test_restore_drill(filled, tmp_path):
    vdir = filled
    backups = tmp_path / "backups"
    backups.mkdir(mode=0o700)
    made = _backup(vdir, "--out", str(backups))
    assert made["clients"] == 3 and made["blobs"] >= 6 and made["mb_per_s"] > 0
    assert Path(made["file"]).parent == backups and (Path(made["file"]).stat().st_mode & 0o077) == 0
    v = vdir.open()
    head = v.ctx.db.one("SELECT max(seq) FROM audit_events")[0]
    v.close()
    # the host is lost: the vault folder is gone (the key file and custody file are kept elsewhere)
    shutil.rmtree(vdir.home)
    new_home = tmp_path / "new-host" / "vault"
    code, report, err = _restore(vdir, made["file"], new_home)
    assert code == 0, err
    assert sorted(report["restored"]) == sorted(PASSWORDS) and report["not_restorable"] == []
    for name, password in PASSWORDS.items():
        got = _get(vdir, new_home, name)
        assert got.returncode == 0, got.stderr
        assert got.stdout.strip() == password
    verify = run_cli("--json", "audit", "verify", env=vdir.env(CVAULT_HOME=str(new_home)))
    assert verify.returncode == 0, verify.stderr
    result = json.loads(verify.stdout)
    assert result["ok"] and result["last_seq"] > head  # the chain continues after the backup's head
    rv = VaultDir(new_home, vdir.key_file).open()
    try:
        # the restore's own event follows the snapshot's last entry (the live vault's "backup"
        # outcome event, written after the snapshot, is the one entry the restored chain lacks)
        actions = [r[0] for r in rv.ctx.db.all("SELECT action FROM audit_events WHERE seq >= ?", (head,))]
        assert actions[0] == "backup.restore"
    finally:
        rv.close()


def test_a_backup_from_before_a_shred_does_not_bring_the_client_back(filled, tmp_path):
    vdir = filled
    old = _backup(vdir, "--out", str(tmp_path / "before.cvbk"))
    _shred(vdir, "acme")
    code, report, err = _restore(vdir, old["file"], tmp_path / "restored")
    assert code == 0, err
    assert sorted(report["restored"]) == ["globex", "initech"]  # P2
    [lost] = report["not_restorable"]
    assert lost["client"] == "acme" and "destroyed" in lost["reason"]
    assert "not restored: acme" in err
    refused = _get(vdir, tmp_path / "restored", "acme")
    assert refused.returncode == 7
    assert _get(vdir, tmp_path / "restored", "globex").stdout.strip() == PASSWORDS["globex"]
    # nothing of acme is left in the restored folder to attack later
    rv = VaultDir(tmp_path / "restored", vdir.key_file).open()
    try:
        acme = rv.ctx.client("acme")
        for table in ("client_keys", "records", "client_custody", "client_audit_keys"):
            assert rv.ctx.db.one(f"SELECT count(*) FROM {table} WHERE client_id = ?", (acme.id,))[0] == 0
    finally:
        rv.close()


def test_a_backup_from_before_a_purge_does_not_bring_the_record_back(filled, tmp_path):
    vdir = filled
    old = _backup(vdir, "--out", str(tmp_path / "before.cvbk"))
    v = vdir.open()
    v.secrets.rm(operator(), "acme", "main", purge=True)
    v.close()
    code, report, err = _restore(vdir, old["file"], tmp_path / "restored")
    assert code == 0, err
    assert [c["client"] for c in report["not_restorable"]] == ["acme"]
    # a backup taken after the purge restores acme without the purged record
    fresh = _backup(vdir, "--out", str(tmp_path / "after.cvbk"))
    code, report, err = _restore(vdir, fresh["file"], tmp_path / "restored-fresh")
    assert code == 0 and sorted(report["restored"]) == sorted(PASSWORDS), err
    assert _get(vdir, tmp_path / "restored-fresh", "acme").returncode == 5
    note = run_cli(
        "secret",
        "get",
        "acme",
        "notes/one",
        "--field",
        "text",
        env=vdir.env(CVAULT_HOME=str(tmp_path / "restored-fresh")),
    )
    assert note.returncode == 0 and note.stdout.strip() == "acme note", note.stderr


def test_retention_keeps_the_newest(filled, tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    names = [Path(_backup(filled, "--out", str(folder), "--keep", "2")["file"]).name for _ in range(3)]
    left = sorted(p.name for p in folder.iterdir())
    assert len(left) == 2 and names[0] not in left and names[2] in left


def test_a_trailing_slash_names_a_new_folder(filled, tmp_path):
    """``--out ~/cvault-backups/`` on a fresh machine (the README's line) makes the folder (0700)
    and a named backup in it, not a file called cvault-backups."""
    import stat

    folder = tmp_path / "new" / "backups"
    made = _backup(filled, "--out", f"{folder}/", "--keep", "7")
    assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert Path(made["file"]).parent == folder and made["file"].endswith(".cvbk")
    without = tmp_path / "plain"
    assert Path(_backup(filled, "--out", str(without))["file"]) == without and without.is_file()


def test_refusals(filled, tmp_path):
    made = _backup(filled, "--out", str(tmp_path / "b.cvbk"))
    # a non-empty target
    target = tmp_path / "busy"
    target.mkdir()
    (target / "x").write_text("x")
    assert _restore(filled, made["file"], target)[0] == 2
    # the key file of another vault
    other = tmp_path / "other.key"
    from vault import keys

    other.write_text(keys.new_key_file_text()[1])
    other.chmod(0o600)
    code, _, err = _restore(filled, made["file"], tmp_path / "t1", CVAULT_KEY_FILE=str(other))
    assert code == 3 and not (tmp_path / "t1").exists()
    # an edited backup
    data = bytearray(Path(made["file"]).read_bytes())
    data[len(data) // 2] ^= 1
    edited = tmp_path / "edited.cvbk"
    edited.write_bytes(bytes(data))
    code, _, err = _restore(filled, str(edited), tmp_path / "t2")
    assert code == 6 and not (tmp_path / "t2").exists(), err
    # overwriting an existing file
    assert filled.cli("backup", "--out", made["file"]).returncode == 2


def test_backup_verify_with_the_public_key_alone(filled, tmp_path):
    made = _backup(filled, "--out", str(tmp_path / "b.cvbk"))
    v = filled.open()
    from vault.audit.signing import AuditSigner

    pub = AuditSigner(v.ctx.db, v.ctx.keyring).trusted_public_key_text()
    v.close()
    ok = run_cli("backup", "verify", made["file"], "--pubkey", pub)
    assert ok.returncode == 0, ok.stderr
    data = bytearray(Path(made["file"]).read_bytes())
    data[100] ^= 1
    Path(made["file"]).write_bytes(bytes(data))
    assert run_cli("backup", "verify", made["file"], "--pubkey", pub).returncode == 6


def test_backup_needs_out_or_remote(filled):
    proc = filled.cli("backup")
    assert proc.returncode == 2 and "--out" in proc.stderr


def test_clock_is_unused_for_names_collision(filled, tmp_path):
    """Two backups in the same second get different names (the backup id is in the name)."""
    v = filled.open(clock_at())
    try:
        a = v.backups.create(operator(), out=tmp_path)
        b = v.backups.create(operator(), out=tmp_path)
    finally:
        v.close()
    assert a["file"] != b["file"]


def test_a_swapped_clear_copy_of_the_audit_key_neither_signs_nor_checks_a_backup(filled, tmp_path):
    """review9 R9-6, the backup part: the trailer named, and the restore checked the manifest
    with, the clear copy of the audit public key in ``meta``, which a file writer replaces; a
    backup taken then failed its own restore (exit 6). Both now use the key derived from the
    sealed private key: the backup made after the swap restores, and verifies under the real key."""
    from vault import crypto

    v = filled.open()
    from vault.audit.signing import AuditSigner

    real = AuditSigner(v.ctx.db, v.ctx.keyring).trusted_public_key_text()
    v.close()
    swapped = crypto.ed25519_generate()[1]
    file_sql(filled, "UPDATE meta SET value = ? WHERE key = 'audit_public_key'", (swapped,))
    made = _backup(filled, "--out", str(tmp_path / "b.cvbk"))
    ok = run_cli("backup", "verify", made["file"], "--pubkey", real)
    assert ok.returncode == 0, ok.stderr
    code, _, err = _restore(filled, made["file"], tmp_path / "restored")
    assert code == 0, err
