"""``cvault init`` makes the custody file; ``cvault custody show|set`` through the real CLI."""

from __future__ import annotations

import json
import os

from tests.helpers import add_client, operator, run_cli


def test_init_makes_the_custody_file_next_to_the_key_file(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_") or k == "CVAULT_ALLOWED_HOSTS"}
    env["CVAULT_HOME"] = str(tmp_path / "vault")
    proc = run_cli(
        "--json", "init", "--key-file", str(tmp_path / "keys" / "vault.key"), "--no-passphrase", env=env
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    custody = tmp_path / "keys" / "vault.custody"
    assert data["custody_file"] == str(custody.resolve())
    assert custody.exists() and (custody.stat().st_mode & 0o777) == 0o600
    human = run_cli(
        "init",
        "--key-file",
        str(tmp_path / "k2" / "v.key"),
        "--no-passphrase",
        env={**env, "CVAULT_HOME": str(tmp_path / "v2")},
    )
    assert human.returncode == 0 and "Custody file:" in human.stdout


def test_init_refuses_a_custody_file_inside_the_vault_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_") or k == "CVAULT_ALLOWED_HOSTS"}
    env["CVAULT_HOME"] = str(tmp_path / "vault")
    proc = run_cli(
        "init",
        "--key-file",
        str(tmp_path / "vault.key"),
        "--no-passphrase",
        "--custody-file",
        str(tmp_path / "vault" / "x.custody"),
        env=env,
    )
    assert proc.returncode == 2 and "outside the vault folder" in proc.stderr


def test_custody_show_and_set_local(vdir, tmp_path):
    v = vdir.open()
    add_client(v, "acme")
    v.secrets.put(operator(), "acme", "fw", "note", {"text": "hello"})
    v.close()
    shown = vdir.cli("--json", "custody", "show")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["custodian"]["kind"] == "local" and data["clients_under_custody"] == 1
    assert data["custodian"]["file"] == str(vdir.custody_file)
    old_file = vdir.custody_file
    new_file = tmp_path / "elsewhere" / "moved.custody"
    moved = vdir.cli("--json", "custody", "set", "local", "--file", str(new_file))
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["custodian"]["file"] == str(new_file)
    assert b"\nk " not in old_file.read_bytes() and b"\nk " in new_file.read_bytes()
    got = vdir.cli(
        "secret", "get", "acme", "fw", "--field", "text", env=vdir.env(CVAULT_CUSTODY_FILE=str(new_file))
    )
    assert got.returncode == 0 and got.stdout.strip() == "hello", got.stderr
    inside = vdir.cli("custody", "set", "local", "--file", str(vdir.home / "c.custody"))
    assert inside.returncode == 2
    human = vdir.cli("custody", "show", env=vdir.env(CVAULT_CUSTODY_FILE=str(new_file)))
    assert human.returncode == 0 and "clients under custody" in human.stdout


def test_the_certificate_says_what_can_still_undo_the_shred(vdir):
    v = vdir.open()
    add_client(v, "acme", grace_days=0)
    v.close()
    assert vdir.cli("sla", "expire", "acme", "--reason", "ended").returncode == 0
    swept = vdir.cli("sla", "sweep")
    assert swept.returncode == 0, swept.stderr
    cert = vdir.cli("sla", "certificate", "acme")
    assert cert.returncode == 0, cert.stderr
    assert "What can still undo this shred" in cert.stdout
    assert str(vdir.custody_file) in cert.stdout and "custody 1" in cert.stdout
    data = json.loads(vdir.cli("sla", "certificate", "acme", "--json").stdout)
    assert data["certificate"]["can_still_undo"] and data["certificate"]["version"] == 2
