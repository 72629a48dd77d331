"""What a crypto-shred must make true (docs/spec.md §7), checked on real files:

* no key of the shredded client -- raw or wrapped, client keys, record keys, the audit-detail key,
  captured before the shred -- is left as bytes in ANY file of the vault folder;
* blob copies saved before the shred (as OneDrive version history keeps them) open with no key the
  post-shred vault and the root key can produce;
* nobody can read the client (exit 7, one line, through the CLI); another client is untouched;
* the audit chain still verifies and holds the certificate event; the certificate verifies offline
  and a tampered one fails with exit 6.

Also ``secret rm --purge`` and version pruning: the keys of the destroyed versions are gone from
every file after a checkpoint.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from tests.factories import sla_client, sla_staff
from tests.helpers import T0, cli_env, clock_at, files_under, grep_tree
from vault import blob as blobfmt
from vault.clock import UTC
from vault.errors import ClientUnavailable, CryptoError
from vault.principal import Principal

SYSTEM = Principal.system("sweep")


def found_in_vault(vdir, needles: list[bytes]) -> set[bytes]:
    """The needles present as bytes in any file under the vault folder, searched from a child
    process: reading the database files from this process while its SQLite connection is open
    would drop this process's locks (see vault.sla.shred.count_in_files)."""
    import subprocess
    import sys

    code = (
        "import sys, pathlib\n"
        "needles = [bytes.fromhex(n) for n in sys.stdin.read().split()]\n"
        "data = [p.read_bytes() for p in pathlib.Path(sys.argv[1]).rglob('*') if p.is_file()]\n"
        "for n in needles:\n"
        "    if any(n in d for d in data): print(n.hex())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(vdir.home)],
        capture_output=True,
        text=True,
        check=True,
        input=" ".join(n.hex() for n in needles),
    ).stdout
    return {bytes.fromhex(h) for h in out.split()}


def capture_keys(vault, name: str) -> dict[str, list[bytes]]:
    """Every key of one client as bytes: raw and as stored (wrapped), plus encrypted names."""
    ctx = vault.ctx
    client = ctx.client(name)
    keys = ctx.client_keys(client)
    wrapped = ctx.db.scalar(
        "SELECT wrapped FROM client_keys WHERE client_id = ? AND version = ?", (client.id, client.key_version)
    )
    # the raw key through the public unwrap every read uses, before the shred destroys it
    raw = ctx.keyring.unwrap_client_key(bytes(wrapped), client.id, client.key_version, name)
    out = {
        "raw client key": [raw],
        "wrapped client key": [],
        "raw record key": [],
        "wrapped record key": [],
        "encrypted name": [],
        "audit-detail key": [],
    }
    out["wrapped client key"] = [
        bytes(r[0]) for r in ctx.db.all("SELECT wrapped FROM client_keys WHERE client_id = ?", (client.id,))
    ]
    for record_id, meta, tag in ctx.db.all(
        "SELECT id, meta_sealed, path_tag FROM records WHERE client_id = ?", (client.id,)
    ):
        out["encrypted name"] += [bytes(meta), bytes(tag)]
        for version, wrapped in ctx.db.all(
            "SELECT version, wrapped_dek FROM record_versions"
            " WHERE record_id = ? AND wrapped_dek IS NOT NULL",
            (record_id,),
        ):
            out["wrapped record key"].append(bytes(wrapped))
            out["raw record key"].append(keys.unwrap_dek(bytes(wrapped), record_id, version))
    table = ctx.db.one("SELECT 1 FROM sqlite_master WHERE name = 'client_audit_keys'")
    if table:
        out["audit-detail key"] = [
            bytes(r[0])
            for r in ctx.db.all("SELECT wrapped FROM client_audit_keys WHERE client_id = ?", (client.id,))
        ]
    return out


def blob_files(vault, name: str) -> dict[str, bytes]:
    client = vault.ctx.client(name)
    names = [
        r[0]
        for r in vault.ctx.db.all(
            "SELECT v.blob_name FROM records r JOIN record_versions v ON v.record_id = r.id"
            " WHERE r.client_id = ? AND v.blob_name IS NOT NULL",
            (client.id,),
        )
    ]
    return {n: vault.ctx.blobs.get(n) for n in names}


def every_dek_the_vault_can_produce(vault) -> list[bytes]:
    """Unwrap every record key still in the vault with every client key still in it."""
    from vault.store.clients import all_clients

    deks = []
    for client in all_clients(vault.ctx.db.conn, "shred_state IS NULL"):
        keys = vault.ctx.client_keys(client)
        for record_id, version, wrapped in vault.ctx.db.all(
            "SELECT v.record_id, v.version, v.wrapped_dek FROM records r JOIN record_versions v"
            " ON v.record_id = r.id WHERE r.client_id = ? AND v.wrapped_dek IS NOT NULL",
            (client.id,),
        ):
            deks.append(keys.unwrap_dek(bytes(wrapped), record_id, version))
    return deks


@pytest.fixture
def shredded(vdir, tmp_path):
    """acme (9 records, some with several versions) shredded by the sweep; beta untouched."""
    clock = clock_at(T0)
    vault = vdir.open(clock)
    people = sla_staff(vault)
    sla_client(vault, people.manager, "acme", days=10, grace_days=5, records=6, engineer=people.engineer)
    sla_client(vault, people.manager, "beta", days=400, records=2, engineer=people.engineer)
    p = people.engineer.principal()
    for i in range(3):
        vault.secrets.put(p, "acme", "site/rec0", "note", {"text": f"acme rotated {i}"})
        vault.secrets.put(
            p, "acme", f"people/user{i}", "account", {"username": f"user{i}", "password": f"pw-{i}-secret"}
        )
    captured = capture_keys(vault, "acme")
    saved = blob_files(vault, "acme")
    aside = tmp_path / "onedrive-version-history"
    aside.mkdir()
    for name, data in saved.items():
        (aside / name).write_bytes(data)
    # the search below can see them: before the shred the wrapped forms are in the vault's files
    for what in ("wrapped client key", "wrapped record key", "encrypted name"):
        assert found_in_vault(vdir, captured[what]) == set(captured[what]), what
    clock.set(T0 + timedelta(days=15))
    result = vault.sla.sweep(SYSTEM)
    assert result["shredded"] == ["acme"]
    yield vault, vdir, people, captured, saved, clock
    vault.close()


def test_no_key_of_the_shredded_client_is_left_in_any_file(shredded):
    vault, vdir, people, captured, saved, clock = shredded
    everything = [n for needles in captured.values() for n in needles]
    assert found_in_vault(vdir, everything) == set()  # while the vault is still open
    vault.close()  # and after SQLite closed its files, as at a process exit
    names = [p.name for p in files_under(vdir.home)]
    assert "vault.db" in names
    for what, needles in captured.items():
        for needle in needles:
            assert grep_tree(vdir.home, needle) == [], f"{what} still in the vault folder"
    assert not any(n in names for n in saved)  # local blobs are gone


def test_saved_blob_copies_cannot_be_decrypted_after_the_shred(shredded):
    vault, vdir, people, captured, saved, clock = shredded
    acme = vault.ctx.client("acme")
    assert vault.ctx.db.one("SELECT count(*) FROM client_keys WHERE client_id = ?", (acme.id,))[0] == 0
    with pytest.raises(ClientUnavailable):
        vault.ctx.client_keys(acme)
    deks = every_dek_the_vault_can_produce(vault)
    assert deks  # beta's keys are there
    for _name, data in saved.items():
        header = blobfmt.parse_header(data)
        for dek in deks:
            with pytest.raises(CryptoError):
                blobfmt.decrypt_record(
                    data,
                    dek,
                    vault_id=vault.ctx.vault_id,
                    client_id=header.client_id,
                    record_id=header.record_id,
                    record_version=header.record_version,
                )
    # sanity: with the captured (now destroyed) key the same copies did open
    some = next(iter(saved.values()))
    h = blobfmt.parse_header(some)
    opened = 0
    for dek in captured["raw record key"]:
        try:
            blobfmt.decrypt_record(
                some,
                dek,
                vault_id=vault.ctx.vault_id,
                client_id=h.client_id,
                record_id=h.record_id,
                record_version=h.record_version,
            )
            opened += 1
        except CryptoError:
            pass
    assert opened == 1


def test_the_other_client_is_untouched_and_the_audit_chain_verifies(shredded):
    vault, vdir, people, captured, saved, clock = shredded
    p = people.engineer.principal()
    assert vault.secrets.get(p, "beta", "site/rec1").fields == {"text": "beta secret 1"}
    report = vault.maintenance.doctor(Principal.system("doctor"))
    assert report.ok, report.problems
    digest = vault.ctx.db.one("SELECT digest FROM shred_certificates")[0]
    events = vault.ctx.db.all(
        "SELECT actor, reason FROM audit_events WHERE action = 'sla.shred' AND client = 'acme'"
    )
    assert events == [("system:sweep", f"client shredded; certificate sha256 {digest}")]
    with pytest.raises(ClientUnavailable) as err:
        vault.secrets.get(p, "acme", "site/rec0")
    assert err.value.exit_code == 7


def test_certificate_content_and_offline_verification(shredded, tmp_path):
    vault, vdir, people, captured, saved, clock = shredded
    doc = vault.sla.certificate(people.manager.principal(), "acme")
    cert = doc["certificate"]
    assert cert["client"]["name"] == "acme"
    assert cert["sla"] == {
        "end": "2026-06-11T09:00:00Z",
        "grace_days": 5,
        "shred_due": "2026-06-16T09:00:00Z",
        "original_end": None,
        "set_by": people.manager.name,
        "set_at": cert["sla"]["set_at"],
    }
    assert cert["two_person_rules"] == "on"
    assert cert["requested_by"] == cert["approved_by"] == "automatic sweep"
    assert cert["destroyed"]["records"] == 9
    assert cert["destroyed"]["record_versions"] == len(saved) == 12
    assert cert["keys_destroyed"]["record_keys"] == 12
    from vault import crypto

    assert [k["fingerprint"] for k in cert["keys_destroyed"]["client_keys"]] == [
        crypto.key_fingerprint(captured["raw client key"][0])
    ]
    local, remote = cert["destroyed"]["blobs"]
    assert (local["blobs"], local["deleted"]) == (12, 12)
    assert remote["permanent_deletes_queued"] == 12 and remote["pending_at_issue"] == 12
    assert cert["verification"]["ok"] and cert["verification"]["wrapped_key_search"]["found"] == 0
    head = vault.ctx.db.one(
        "SELECT seq, entry_hash FROM audit_events WHERE seq = ?", (cert["audit_head"]["seq"],)
    )
    assert bytes(head[1]).hex() == cert["audit_head"]["hash"]
    assert vault.ctx.db.one("SELECT count(*) FROM shred_certificates")[0] == 1

    # offline: only the file and the public key, no vault
    path = tmp_path / "acme.cert.json"
    path.write_text(json.dumps(doc))
    pub = doc["public_key"]
    env = cli_env(vdir, CVAULT_HOME=str(tmp_path / "no-vault-here"))
    del env["CVAULT_KEY_FILE"]
    ok = vdir.cli("sla", "certificate", "--verify", str(path), "--pubkey", pub, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "certificate valid: client acme" in ok.stdout
    forged = json.loads(path.read_text())
    forged["certificate"]["destroyed"]["records"] = 8
    forged["body"] = json.dumps(forged["certificate"], sort_keys=True, separators=(",", ":"))
    bad = tmp_path / "forged.json"
    bad.write_text(json.dumps(forged))
    res = vdir.cli("sla", "certificate", "--verify", str(bad), "--pubkey", pub, env=env)
    assert res.returncode == 6 and res.stderr.count("\n") == 1, res.stderr
    other_key = "ed25519:" + __import__("base64").b64encode(bytes(32)).decode()
    res = vdir.cli("sla", "certificate", "--verify", str(path), "--pubkey", other_key, env=env)
    assert res.returncode == 6


def test_cli_read_of_a_shredded_client_is_refused_in_one_line(shredded, tmp_path):
    vault, vdir, people, captured, saved, clock = shredded
    session = tmp_path / "session.json"
    people.engineer.session_file(session, vault=vault, at=datetime.now(UTC))
    env = cli_env(vdir, CVAULT_SESSION_FILE=str(session))
    res = vdir.cli("secret", "get", "acme", "site/rec0", env=env)
    assert res.returncode == 7, res.stderr
    assert res.stderr.count("\n") == 1 and "acme" in res.stderr and "shredded" in res.stderr
    assert res.stdout == ""
    # renewal after the shred: one clear line, exit 7
    people.manager.session_file(session, vault=vault, at=datetime.now(UTC))
    res = vdir.cli("sla", "renew", "acme", "--until", "+30d", env=env)
    assert res.returncode == 7 and res.stderr.count("\n") == 1
    assert "cannot be renewed" in res.stderr
    res = vdir.cli("sla", "certificate", "acme", env=env)
    assert res.returncode == 0 and "automatic sweep" in res.stdout, res.stderr


# --- single-record erasure and version pruning ---------------------------------------------------


@pytest.fixture
def one_client(vdir):
    vault = vdir.open(clock_at(T0))
    people = sla_staff(vault)
    sla_client(vault, people.manager, "acme", days=100, records=2, engineer=people.engineer)
    yield vault, vdir, people
    vault.close()


def record_keys(vault, path: str) -> tuple[list[bytes], list[bytes]]:
    """(raw DEKs, wrapped DEKs) of every stored version of one record."""
    client = vault.ctx.client("acme")
    keys = vault.ctx.client_keys(client)
    record_id = vault.ctx.db.one(
        "SELECT id FROM records WHERE client_id = ? AND path_tag = ?", (client.id, keys.path_tag(path))
    )[0]
    raw, wrapped = [], []
    for version, w in vault.ctx.db.all(
        "SELECT version, wrapped_dek FROM record_versions WHERE record_id = ? AND wrapped_dek IS NOT NULL",
        (record_id,),
    ):
        wrapped.append(bytes(w))
        raw.append(keys.unwrap_dek(bytes(w), record_id, version))
    return raw, wrapped


def test_rm_purge_crypto_shreds_every_version_of_one_record(one_client):
    vault, vdir, people = one_client
    p = people.engineer.principal()
    for i in range(3):
        vault.secrets.put(p, "acme", "people/jane", "account", {"username": "jane", "password": f"pw{i}"})
    raw, wrapped = record_keys(vault, "people/jane")
    assert len(wrapped) == 3
    blobs = [
        r[0] for r in vault.ctx.db.all("SELECT blob_name FROM record_versions WHERE blob_name IS NOT NULL")
    ]
    result = vault.secrets.rm(p, "acme", "people/jane", purge=True)
    assert result["purged"] and result["versions_destroyed"] == 3
    vault.ctx.db.checkpoint_truncate()
    assert found_in_vault(vdir, raw + wrapped) == set()
    queued = {r[0] for r in vault.ctx.db.all("SELECT blob_name FROM outbox WHERE op = 'delete'")}
    gone = [b for b in blobs if not vault.ctx.blobs.exists(b)]
    assert len(gone) == 3 and set(gone) <= queued
    assert vault.secrets.get(p, "acme", "site/rec1").fields == {"text": "acme secret 1"}
    assert [r["path"] for r in vault.secrets.list(p, "acme")] == ["site/rec0", "site/rec1"]


def test_pruned_versions_lose_their_keys(one_client):
    vault, vdir, people = one_client
    vault.ctx.settings["keep_versions"] = 2
    p = people.engineer.principal()
    vault.secrets.put(p, "acme", "fw", "note", {"text": "v1"})
    raw1, wrapped1 = record_keys(vault, "fw")
    vault.secrets.put(p, "acme", "fw", "note", {"text": "v2"})
    vault.secrets.put(p, "acme", "fw", "note", {"text": "v3"})  # v1 falls out
    raw, wrapped = record_keys(vault, "fw")
    assert len(wrapped) == 2 and wrapped1[0] not in wrapped
    vault.ctx.db.checkpoint_truncate()
    assert found_in_vault(vdir, [wrapped1[0], raw1[0]]) == set()
    assert vault.secrets.get(p, "acme", "fw").fields == {"text": "v3"}
