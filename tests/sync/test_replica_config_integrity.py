"""review4 R4-4 (critical): a planted replica configuration must not exfiltrate the vault's secrets.

``meta.remote.onedrive`` names a credential file cvault reads and the HTTPS hosts it sends that
file's content to. A file writer (A4) who plants one naming the key file and his own host must get
nothing: the row carries a MAC (row-MAC coverage 5) and one that fails it, or carries none, is an
integrity failure (exit 6, audited) before anything of it is used; and wherever a credential file
is read, the vault's own secret files (key, custody, a file in the vault folder, anything that
begins with a cvault magic) are refused, whatever row named them.

The fake authority of tests/fakes plays the file writer's server (its test CA stands in for a
public certificate of his host). Real vault folders, real ``cvault`` subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest

from tests.fakes.fixtures import CLIENT_ID, TENANT
from tests.helpers import run_cli
from vault.store import rowmac


@pytest.fixture
def received(authority, test_ca, monkeypatch) -> list[str]:
    """Every client secret the (file writer's) authority is sent."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(test_ca.ca_path))  # "his host has a real certificate"
    got: list[str] = []
    original = authority._token

    def recording(form):
        if "client_secret" in form:
            got.append(form["client_secret"])
        return original(form)

    monkeypatch.setattr(authority, "_token", recording)
    return got


def _planted(authority, secret_file) -> dict:
    return {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "credential": "secret-file",
        "secret_file": str(secret_file),
        "drive_id": "b!" + "a" * 40,
        "root_folder": "cvault",
        "authority_host": authority.host,  # the file writer's server
        "graph_base_url": authority.host + "/v1.0",
        "instance_discovery": False,
    }


def _plant_unmaced(vdir, config: dict) -> None:
    conn = sqlite3.connect(vdir.home / "vault.db")  # the file writer: plain sqlite3, no key
    conn.execute("INSERT INTO meta (key, value) VALUES ('remote.onedrive', ?)", (json.dumps(config),))
    conn.commit()
    conn.close()


def _alarms(vdir) -> list[str]:
    conn = sqlite3.connect(vdir.home / "vault.db")
    try:
        return [
            r[0]
            for r in conn.execute("SELECT reason FROM audit_events WHERE action = 'integrity.row_failure'")
        ]
    finally:
        conn.close()


@pytest.mark.parametrize(
    "commands",
    [
        [("doctor",)],  # the operator checks the vault, as the docs advise
        [("client", "list"), ("sla", "sweep")],  # nobody: any audited command, then the hourly sweep
    ],
    ids=["doctor", "hourly-sweep"],
)
def test_a_planted_replica_config_never_sends_the_key_file_anywhere(vdir, authority, received, commands):
    """The review's reproduction: the key file named, the file writer's host as authority."""
    _plant_unmaced(vdir, _planted(authority, vdir.key_file))
    for argv in commands:
        proc = run_cli(*argv, env=vdir.env())
        assert "Traceback" not in proc.stderr
    key_text = vdir.key_file.read_text().strip()
    assert key_text not in received, (
        "the vault's key file was sent to the host a planted replica configuration named"
        f" ({' then '.join(' '.join(a) for a in commands)}; last exit {proc.returncode})"
    )


def test_an_unmaced_replica_config_is_an_integrity_failure_before_anything_of_it_is_used(
    vdir, authority, received, tmp_path
):
    """Fix 1 alone: the row names an ordinary 0600 secret of the host (another service's client
    secret, not a cvault file: the file rules do not stop it). The row carries no MAC: every
    command that would use it is exit 6, audited, and nothing is sent."""
    other = tmp_path / "keyvault-client.secret"  # outside the vault folder, no cvault magic
    other.write_text("another-service-secret\n")
    other.chmod(0o600)
    _plant_unmaced(vdir, _planted(authority, other))
    for argv in (("client", "list"), ("sla", "sweep"), ("doctor",)):
        run_cli(*argv, env=vdir.env())
    push = run_cli("sync", "push", env=vdir.env())
    assert push.returncode == 6, push.stdout + push.stderr
    assert push.stderr.strip().splitlines()[-1].startswith("cvault: integrity failure: a meta row")
    assert "Traceback" not in push.stderr
    assert "another-service-secret" not in received
    assert received == []
    assert any("remote replica configuration" in r and "meta row" in r for r in _alarms(vdir))
    doctor = run_cli("doctor", env=vdir.env())
    assert doctor.returncode != 0 and "remote.onedrive" in doctor.stdout + doctor.stderr


def test_a_replica_config_with_an_edited_value_fails_its_mac(
    vdir, authority, received, tmp_path, remote_config
):
    """A configuration cvault wrote (MACed), then re-pointed by the file writer (to another 0600
    secret of the host, and his own host): refused, exit 6, nothing sent."""
    other = tmp_path / "keyvault-client.secret"
    other.write_text("another-service-secret\n")
    other.chmod(0o600)
    v = vdir.open()
    try:
        from tests.helpers import operator

        v.sync.configure(operator(), remote_config)
    finally:
        v.close()
    conn = sqlite3.connect(vdir.home / "vault.db")
    (value,) = conn.execute("SELECT value FROM meta WHERE key = 'remote.onedrive'").fetchone()
    edited = {**json.loads(value), "authority_host": authority.host, "secret_file": str(other)}
    conn.execute("UPDATE meta SET value = ? WHERE key = 'remote.onedrive'", (json.dumps(edited),))
    conn.commit()
    conn.close()
    received.clear()
    proc = run_cli("sync", "push", env=vdir.env())
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert received == []


def _write_maced(vdir, config: dict) -> None:
    """A configuration that carries a valid MAC (one an operator authenticated with ``cvault
    upgrade`` without reading it, say): only the file rules stand between it and the secret."""
    v = vdir.open()
    try:
        with v.ctx.db.write() as conn:
            rowmac.put_meta(conn, "remote.onedrive", json.dumps(config))
    finally:
        v.close()


@pytest.mark.parametrize(
    "which", ["key-file", "key-file-copy", "custody-file", "in-vault-folder", "hard-link"]
)
def test_the_vaults_own_secret_files_are_never_read_as_a_credential(
    vdir, authority, received, tmp_path, which
):
    """Fix 2 alone: a MACed configuration naming the vault's key file, a copy of it elsewhere (its
    cvault magic), the custody file, a file inside the vault folder or a hard link to the key
    file: refused where the file is read (exit 6), nothing sent."""
    if which == "key-file":
        path = vdir.key_file
    elif which == "key-file-copy":
        path = tmp_path / "innocent.secret"
        shutil.copy2(vdir.key_file, path)
    elif which == "custody-file":
        assert vdir.custody_file is not None
        path = vdir.custody_file
    elif which == "in-vault-folder":
        path = vdir.home / "looks-like-a-secret"
        path.write_text("plain-text-secret\n")
        path.chmod(0o600)
    else:
        path = tmp_path / "linked.secret"
        os.link(vdir.key_file, path)
    secret = path.read_bytes()
    _write_maced(vdir, _planted(authority, path))
    for argv in (("client", "list"), ("sla", "sweep"), ("doctor",)):
        run_cli(*argv, env=vdir.env())
    push = run_cli("sync", "push", env=vdir.env())
    assert push.returncode == 6, push.stdout + push.stderr
    assert "integrity failure: the credential file" in push.stderr
    assert "Traceback" not in push.stderr
    assert not any(r.encode() in secret or secret.strip() == r.encode() for r in received), which
    assert received == []


def test_a_coverage_4_vault_shows_its_replica_config_in_the_upgrade_summary(vdir, authority, received):
    """A vault of the build before coverage 5 stays sealed (exit 8) until `cvault upgrade`, whose
    summary prints the replica configuration it would authenticate (its file and its hosts), not
    a count; nothing is sent meanwhile."""
    from tests.helpers import as_coverage

    v = vdir.open()
    try:
        with v.ctx.db.write() as conn:
            as_coverage(conn, 4)
    finally:
        v.close()
    _plant_unmaced(vdir, _planted(authority, vdir.key_file))
    listed = run_cli("client", "list", env=vdir.env())
    assert listed.returncode == 8, listed.stdout + listed.stderr
    looked = run_cli("upgrade", env=vdir.env())
    assert looked.returncode == 2, looked.stderr
    shown = [line for line in looked.stderr.splitlines() if line.startswith("replica configuration")]
    assert len(shown) == 1 and authority.host in shown[0] and str(vdir.key_file) in shown[0], looked.stderr
    assert received == []
