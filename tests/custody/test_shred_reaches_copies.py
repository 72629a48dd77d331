"""P1-P3 of issue 14 for copies of the vault folder (docs/sla.md section 6).

* P1: after a shred (or a record purge), a copy of the vault folder taken before it, opened with
  today's key file and today's custody file, decrypts nothing of the client (or record) -- also
  with today's ``unseal_slots`` rows copied into the old copy;
* P2: the clients not shredded still open from that old copy;
* P3: the certificate lists what can still undo the shred (the custody file copies, with the path
  and the time) and the custody file no longer holds the client's secret.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tarfile
from pathlib import Path

import pytest

from tests.helpers import VaultDir, add_client, clock_at, copy_vault, operator
from vault.clock import to_epoch
from vault.custody.base import CustodyDestroyed
from vault.errors import ClientUnavailable, IntegrityFailure
from vault.facade import Vault
from vault.principal import Principal

DATA = Path(__file__).parent / "data"


def _old_copy(vdir: VaultDir, base: Path) -> VaultDir:
    """A raw copy of the folder (a nightly backup, a VM snapshot): the same custody file path."""
    home = base / "old-copy"
    shutil.copytree(vdir.home, home)
    return VaultDir(home, vdir.key_file)


def _opens(vault, name: str) -> bool:
    """Whether any client-key version of ``name`` opens (policy bypassed: what an attacker with
    this copy, the key file and the custody file can do with cvault's own code)."""
    client_id = vault.ctx.db.one("SELECT id FROM clients WHERE name = ?", (name,))[0]
    rows = vault.ctx.db.all("SELECT version, wrapped FROM client_keys WHERE client_id = ?", (client_id,))
    for version, wrapped in rows:
        try:
            vault.ctx.keyring.unwrap_client_key(bytes(wrapped), client_id, version, name)
            return True
        except IntegrityFailure:
            continue
    return False


@pytest.fixture
def two_clients(vdir):
    clock = clock_at()
    v = vdir.open(clock)
    add_client(v, "acme", days=10, grace_days=0)
    add_client(v, "globex", days=3650)
    op = operator()
    v.secrets.put(op, "acme", "office/firewall", "access", {"host": "fw", "password": "acme-secret-1"})
    v.secrets.put(op, "acme", "notes/door", "note", {"text": "acme door 1234"})
    v.secrets.put(op, "globex", "vpn", "access", {"host": "vpn", "password": "globex-secret"})
    v.close()
    return vdir, clock


def _shred_acme(vdir, clock) -> dict:
    clock.advance(days=11)
    v = vdir.open(clock)
    try:
        result = v.sla.sweep(Principal.system("sweep"))
        assert result["shredded"] == ["acme"]
        body = json.loads(v.ctx.db.one("SELECT body FROM shred_certificates")[0])
    finally:
        v.close()
    return body


def test_a_copy_from_before_the_shred_opens_nothing_of_the_client(two_clients, tmp_path):
    vdir, clock = two_clients
    old = _old_copy(vdir, tmp_path)
    custody_before = vdir.custody_file.read_bytes()
    acme_id = vdir.open().ctx.client("acme").id
    assert acme_id.encode() in custody_before
    body = _shred_acme(vdir, clock)
    # today's custody file no longer holds acme's secret (only a tombstone)
    after = vdir.custody_file.read_bytes()
    assert f"k {acme_id} ".encode() not in after and f"x {acme_id} ".encode() in after
    # the old copy opened with today's key file (and the custody file in use today)
    v = old.open(clock)
    try:
        assert v.ctx.client("acme").shred_state is None  # the copy still thinks acme is live
        assert not _opens(v, "acme")
        with pytest.raises(CustodyDestroyed) as exc:
            v.secrets.get(operator(), "acme", "office/firewall")
        assert exc.value.exit_code == 6 and "acme" in str(exc.value)
        # P2: globex still opens from the old copy
        assert v.secrets.get(operator(), "globex", "vpn").fields["password"] == "globex-secret"
    finally:
        v.close()
    # P3: what can still undo it is on the certificate, precisely
    undo = body["can_still_undo"]
    assert any(
        str(vdir.custody_file) in line and body["timestamps"]["custody_destroyed"] in line for line in undo
    )
    assert body["custody"] and body["custody"][0]["version"] == 1
    assert body["version"] == 2


def test_todays_unseal_slots_copied_into_the_old_copy_do_not_help(two_clients, tmp_path):
    vdir, clock = two_clients
    old = _old_copy(vdir, tmp_path)
    _shred_acme(vdir, clock)
    # the attacker copies the live vault's unseal_slots rows into the old copy
    live = sqlite3.connect(vdir.home / "vault.db")
    slots = live.execute(
        "SELECT id, kind, label, kdf_params, salt, wrapped_root, created_at FROM unseal_slots"
    ).fetchall()
    live.close()
    conn = sqlite3.connect(old.home / "vault.db")
    with conn:
        conn.execute("DELETE FROM unseal_slots")
        conn.executemany("INSERT INTO unseal_slots VALUES (?, ?, ?, ?, ?, ?, ?)", slots)
    conn.close()
    v = old.open(clock)
    try:
        assert v.unsealed and not _opens(v, "acme")
        assert _opens(v, "globex")
    finally:
        v.close()


def test_a_copy_from_before_a_purge_opens_nothing_of_that_client(two_clients, tmp_path):
    """A purge rotates the client key *and* the custody version: the old copy's record key is
    wrapped under a client key that no longer exists anywhere, itself under a destroyed custody
    secret. Old copies of that client are lost with it (the service takes a fresh backup)."""
    vdir, clock = two_clients
    old = _old_copy(vdir, tmp_path)
    v = vdir.open(clock)
    op = operator()
    acme = v.ctx.client("acme")
    before = v.ctx.db.one("SELECT fingerprint FROM client_keys WHERE client_id = ?", (acme.id,))[0]
    result = v.secrets.rm(op, "acme", "office/firewall", purge=True)
    assert result["purged"] and result["custody_rotated"] and result["scrubbed"]
    # the live vault: the purged record is gone, the other record still reads
    assert v.secrets.get(op, "acme", "notes/door").fields["text"] == "acme door 1234"
    rows = v.ctx.db.all(
        "SELECT version, state FROM client_custody WHERE client_id = ? ORDER BY version", (acme.id,)
    )
    assert rows == [(1, "destroyed"), (2, "current")]
    after = v.ctx.db.all("SELECT fingerprint FROM client_keys WHERE client_id = ?", (acme.id,))
    assert after and before not in [a[0] for a in after]  # the old client key exists nowhere now
    assert v.ctx.db.one("SELECT count(*) FROM custody_jobs")[0] == 0
    v.close()
    o = old.open(clock)
    try:
        assert not _opens(o, "acme")
        with pytest.raises(CustodyDestroyed):
            o.secrets.get(op, "acme", "office/firewall")
        assert _opens(o, "globex")
    finally:
        o.close()


def test_rotate_key_rotates_custody_too(two_clients):
    vdir, clock = two_clients
    v = vdir.open(clock)
    try:
        out = v.clients.rotate_key(operator(), "acme")
        assert out["key_version"] == 2 and out["records"] == 2
        acme = v.ctx.client("acme")
        assert v.ctx.custody.resolve(acme.id)[0] == 2
        assert v.secrets.get(operator(), "acme", "office/firewall").fields["password"] == "acme-secret-1"
    finally:
        v.close()


def test_an_interrupted_rotation_is_finished_by_the_next_command(two_clients):
    vdir, clock = two_clients
    v = vdir.open(clock)
    acme = v.ctx.client("acme")
    with v.ctx.db.write() as conn:  # what a process killed right after the purge transaction leaves
        v.ctx.custody.start_rotation(conn, acme.id, "purge", rotate_client_key=True)
    v.close()
    v = vdir.open(clock)  # the next command: unsealing finishes it
    try:
        assert v.ctx.db.one("SELECT count(*) FROM custody_jobs")[0] == 0
        states = v.ctx.db.all("SELECT version, state FROM client_custody WHERE client_id = ?", (acme.id,))
        assert sorted(states) == [(1, "destroyed"), (2, "current")]
        assert v.secrets.get(operator(), "acme", "notes/door").fields["text"] == "acme door 1234"
    finally:
        v.close()


def test_a_shred_during_a_rotation_destroys_both_versions(two_clients):
    vdir, clock = two_clients
    v = vdir.open(clock)
    acme = v.ctx.client("acme")
    with v.ctx.db.write() as conn:
        v.ctx.custody.start_rotation(conn, acme.id, "purge", rotate_client_key=True)
    v.ctx.custody._create_step(
        v.ctx.db.all(
            "SELECT client_id, reason, from_version, to_version, rotate_client_key, step FROM custody_jobs"
        )
    )
    v.close()
    body = _shred_acme(vdir, clock)
    assert sorted(c["version"] for c in body["custody"]) == [1, 2]
    data = vdir.custody_file.read_bytes()
    assert f"k {acme.id} ".encode() not in data


def test_the_custody_file_must_be_there(two_clients, tmp_path):
    vdir, clock = two_clients
    vdir.custody_file.rename(tmp_path / "elsewhere.custody")
    v = vdir.open(clock)
    try:
        with pytest.raises(Exception) as exc:
            v.secrets.get(operator(), "globex", "vpn")
        assert exc.value.exit_code == 8 and "CVAULT_CUSTODY_FILE" in str(exc.value)
    finally:
        v.close()
    # CVAULT_CUSTODY_FILE (or custody_file=) says where it is now
    v = Vault.open(vdir.home, clock=clock, custody_file=tmp_path / "elsewhere.custody")
    v.unseal_key_file(vdir.key_file)
    try:
        assert v.secrets.get(operator(), "globex", "vpn").fields["password"] == "globex-secret"
    finally:
        v.close()


def test_a_vault_from_before_custody_is_migrated_on_first_unseal(tmp_path):
    """The vault made by main at 2a50106 (tests/custody/data/README.md)."""
    with tarfile.open(DATA / "vault-2a50106.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    for path in [tmp_path / "vault", *(tmp_path / "vault").rglob("*"), tmp_path / "vault.key"]:
        path.chmod(0o700 if path.is_dir() else 0o600)  # the tar "data" filter keeps no modes
    expected = json.loads((tmp_path / "expected.json").read_text())
    pristine = tmp_path / "pristine"
    shutil.copytree(tmp_path / "vault", pristine)
    clock = clock_at()
    clock.advance(days=30)
    v = Vault.open(tmp_path / "vault", clock=clock)
    # a vault this old (before row MACs too) is authenticated only by the operator's explicit
    # upgrade (docs/format.md "Upgrades"); custody follows in the same unseal
    v.unseal_key_file(tmp_path / "vault.key", upgrade=True)
    try:
        custody = tmp_path / "vault.custody"  # next to the key file
        assert custody.exists() and (custody.stat().st_mode & 0o077) == 0
        # its sessions (SHA-256 only, from before keyed token MACs) were ended by the upgrade
        # (issue 12, docs/format.md section 8): the operator signs in again
        with pytest.raises(Exception, match="session ended"):
            v.secrets.get(operator(), "acme", "x")
        from tests.factories import insert_session
        from vault.identity.sessions import new_token
        from vault.principal import ROLES

        uid = v.ctx.db.scalar("SELECT id FROM users WHERE name = 'operator'")
        sid = insert_session(v, uid, new_token(), to_epoch(clock.now()))
        op = Principal(name="operator", roles=frozenset(ROLES), user_id=uid, session_id=sid)
        for client, records in expected.items():
            if client == "shredded":
                continue
            for path, fields in records.items():
                got = v.secrets.get(op, client, path).fields
                assert {k: got[k] for k in fields} == fields
        with pytest.raises(ClientUnavailable):
            v.secrets.get(op, "umbrella", "lab/door")
        # every live client is under custody version 1; the shredded one has none
        rows = v.ctx.db.all(
            "SELECT c.name, cc.version FROM client_custody cc JOIN clients c ON c.id = cc.client_id"
            " ORDER BY c.name"
        )
        assert rows == [("acme", 1), ("globex", 1), ("initech", 1)]
        assert v.audit.verify(op).ok
        # no legacy wrapping is left: the root-derived key alone opens no client key now
        v.ctx.keyring.legacy_client_wrap = True
        try:
            assert not _opens(v, "acme")
        finally:
            v.ctx.keyring.legacy_client_wrap = False
        migrated_at = int(v.ctx.db.one("SELECT value FROM meta WHERE key = 'custody_migrated_at'")[0])
        assert migrated_at == to_epoch(clock.now())
    finally:
        v.close()
    # a shred after the migration says that copies from before the upgrade still open the client
    vd = VaultDir(tmp_path / "vault", tmp_path / "vault.key")
    v = vd.open(clock)
    try:
        v.sla.expire(op, "acme", reason="contract ended")
        clock.advance(days=40)
        v.sla.sweep(Principal.system("sweep"))
        body = json.loads(
            v.ctx.db.one(
                "SELECT body FROM shred_certificates WHERE client_id = ?", (v.ctx.client("acme").id,)
            )[0]
        )
        assert any("before this vault used custody" in line for line in body["can_still_undo"])
    finally:
        v.close()
    # ... which is true: the pristine pre-upgrade copy still opens acme with the key file alone
    p = Vault.open(pristine, clock=clock, custody_file=tmp_path / "other.custody")
    p.ctx.keyring.legacy_client_wrap = True
    p.ctx.keyring.load_root(_root_of(p, tmp_path / "vault.key"))
    try:
        assert _opens(p, "acme")
    finally:
        p.close()


def _root_of(vault, key_file) -> bytes:
    from vault import keys

    secret = keys.parse_key_file_text(Path(key_file).read_text())
    for slot_id, salt, wrapped in vault.ctx.db.all(
        "SELECT id, salt, wrapped_root FROM unseal_slots WHERE kind = 'keyfile'"
    ):
        kek = keys.slot_kek("keyfile", secret, salt, None)
        return keys.unwrap_root(wrapped, kek, vault.ctx.vault_id, slot_id, "keyfile")
    raise AssertionError("no key-file slot")


def test_copies_of_a_vault_keep_separate_custody(vault_template, tmp_path):
    a = copy_vault(vault_template, tmp_path / "a")
    b = copy_vault(vault_template, tmp_path / "b")
    assert a.custody_file != b.custody_file != vault_template.custody_file
    assert a.custody_file.parent == a.key_file.parent


def test_doctor_destroys_again_what_an_old_custody_file_put_back(two_clients, tmp_path):
    """Someone restores yesterday's custody file over today's: doctor notices the secret of the
    shredded client and destroys it again (and says so)."""
    vdir, clock = two_clients
    yesterday = vdir.custody_file.read_bytes()
    acme_id = vdir.open().ctx.client("acme").id
    _shred_acme(vdir, clock)
    vdir.custody_file.write_bytes(yesterday)
    v = vdir.open(clock)
    try:
        report = v.maintenance.doctor(Principal.system("doctor"))
        assert any("was destroyed" in p and acme_id in p for p in report.problems)
        assert f"k {acme_id} ".encode() not in vdir.custody_file.read_bytes()
        assert v.maintenance.doctor(Principal.system("doctor")).ok
    finally:
        v.close()
