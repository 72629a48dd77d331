"""Azure Key Vault custody end to end against the fake Key Vault (HTTPS, real msal tokens).

init (local custody) -> ``custody set azure-keyvault`` (every client moved, the local secrets
destroyed) -> reads -> a shred deletes and purges the client's key (observed on the fake) -> a
backup from before the shred no longer brings the client back -> Key Vault down: exit 9, one
line, nothing lost.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import VaultDir, add_client, operator, run_cli
from vault.custody.base import CustodyUnavailable
from vault.facade import Vault
from vault.principal import Principal


@pytest.fixture
def kv_vault(vdir, fake_keyvault, kv_config, test_ca, recording_sleep):
    options = {"keyvault_options": {"verify": str(test_ca.ca_path), "sleep": recording_sleep}}

    def open_vault():
        v = Vault.open(vdir.home, custody_options=options)
        v.unseal_key_file(vdir.key_file)
        return v

    v = open_vault()
    op = operator()
    add_client(v, "acme", days=10, grace_days=0)
    add_client(v, "globex", days=3650)
    v.secrets.put(op, "acme", "fw", "access", {"host": "fw", "password": "acme-pass"})
    v.secrets.put(op, "globex", "vpn", "access", {"host": "vpn", "password": "globex-pass"})
    local_file = vdir.custody_file
    shown = v.custody.set_keyvault(op, kv_config(fake_keyvault).to_dict())
    v.close()
    return vdir, open_vault, shown, local_file


def test_custody_set_moves_every_client_to_key_vault(kv_vault, fake_keyvault):
    vdir, open_vault, shown, local_file = kv_vault
    assert shown["custodian"]["kind"] == "azure-keyvault" and shown["clients_under_custody"] == 2
    assert len(fake_keyvault.keys) == 2
    # the local custody file no longer holds any live secret
    assert b"\nk " not in local_file.read_bytes()
    v = open_vault()
    try:
        assert v.secrets.get(operator(), "acme", "fw").fields["password"] == "acme-pass"
        assert v.secrets.get(operator(), "globex", "vpn").fields["password"] == "globex-pass"
        rows = v.ctx.db.all("SELECT state, count(*) FROM client_custody GROUP BY state ORDER BY state")
        assert rows == [("current", 2), ("destroyed", 2)]
    finally:
        v.close()


def test_shred_deletes_and_purges_the_key_and_old_backups_lose_the_client(kv_vault, fake_keyvault, tmp_path):
    vdir, open_vault, _, _ = kv_vault
    v = open_vault()
    acme_id = v.ctx.client("acme").id
    name = v.ctx.custody.custodian(v.ctx.custody.current_id()).key_name(acme_id, 2)
    before = v.backups.create(operator(), out=tmp_path / "before.cvbk")
    v.sla.expire(operator(), "acme", reason="contract ended")
    v.sla.sweep(Principal.system("sweep"))
    body = json.loads(v.ctx.db.one("SELECT body FROM shred_certificates")[0])
    v.close()
    assert (name, "purge") in fake_keyvault.purged
    assert name not in fake_keyvault.keys and name not in fake_keyvault.deleted
    calls = [(r.method, r.path) for r in fake_keyvault.log if r.has_authorization and name in r.path]
    assert ("DELETE", f"/keys/{name}") in calls and ("DELETE", f"/deletedkeys/{name}") in calls
    assert any("Key Vault key" in c["destroyed"] for c in body["custody"])
    assert any("Backup Key" in line for line in body["can_still_undo"])
    # the backup from before the shred: acme is gone for good, globex comes back
    from vault import keys

    secret = keys.parse_key_file_text(vdir.key_file.read_text())
    report = Vault.restore(
        before["file"],
        tmp_path / "restored",
        unseal=("keyfile", secret),
        custody_options={"keyvault_options": v.ctx.custody.keyvault_options},
    )
    assert report["restored"] == ["globex"]
    assert [c["client"] for c in report["not_restorable"]] == ["acme"]
    assert "no longer exists" in report["not_restorable"][0]["reason"]


def test_key_vault_down_is_exit_9_and_loses_nothing(kv_vault, fake_keyvault, test_ca):
    vdir, open_vault, _, _ = kv_vault
    fake_keyvault.down = "refuse"
    env = vdir.env(REQUESTS_CA_BUNDLE=str(test_ca.ca_path))
    got = run_cli("secret", "get", "globex", "vpn", "--field", "password", env=env)
    assert got.returncode == 9, got.stderr
    assert got.stderr.count("\n") == 1 and "Azure Key Vault" in got.stderr
    put = run_cli("secret", "put", "globex", "vpn2", "--type", "note", "--from-stdin", input="x", env=env)
    assert put.returncode == 9
    added = run_cli("client", "add", "initech", "--sla-end", "+30d", env=env)
    assert added.returncode == 9
    fake_keyvault.down = None
    got = run_cli("secret", "get", "globex", "vpn", "--field", "password", env=env)
    assert got.returncode == 0 and got.stdout.strip() == "globex-pass", got.stderr
    v = open_vault()
    try:
        assert [r[0] for r in v.ctx.db.all("SELECT name FROM clients ORDER BY name")] == ["acme", "globex"]
        from vault.errors import NotFound

        with pytest.raises(NotFound):
            v.secrets.get(operator(), "globex", "vpn2")
    finally:
        v.close()


def test_a_shred_with_key_vault_down_pauses_and_resumes(kv_vault, fake_keyvault):
    vdir, open_vault, _, _ = kv_vault
    v = open_vault()
    try:
        v.sla.expire(operator(), "acme", reason="contract ended")
        fake_keyvault.down = "503"
        result = v.sla.sweep(Principal.system("sweep"))
        assert result["shredded"] == [] and result["failed"]
        step = v.ctx.db.one("SELECT step FROM shred_jobs")[0]
        assert step == "keys_destroyed"  # the database keys are gone; custody waits for Key Vault
        fake_keyvault.down = None
        result = v.sla.sweep(Principal.system("sweep"))
        assert result["shredded"] == ["acme"]
    finally:
        v.close()


def test_custody_unavailable_error_names_the_vault(kv_vault, fake_keyvault):
    _, open_vault, _, _ = kv_vault
    fake_keyvault.down = "503"
    v = open_vault()
    try:
        with pytest.raises(CustodyUnavailable) as exc:
            v.secrets.get(operator(), "globex", "vpn")
        assert fake_keyvault.vault_url in str(exc.value)
    finally:
        v.close()


def test_vaultdir_helper_still_points_at_the_local_file_only_when_local(kv_vault):
    vdir, _, _, _ = kv_vault
    assert VaultDir(vdir.home, vdir.key_file).custody_file is None


def test_the_audit_log_still_lists_with_key_vault_down(kv_vault, fake_keyvault):
    _, open_vault, _, _ = kv_vault
    v = open_vault()
    try:
        v.secrets.get(operator(), "globex", "vpn")  # an event with a sealed detail (the path)
        v.ctx.custody.forget(v.ctx.client("globex").id)
        fake_keyvault.down = "503"
        events = v.audit.log(operator(), client="globex")
        details = {e["detail"] for e in events if e["action"] == "secret.get"}
        assert details == {"[custody unavailable]"}
    finally:
        v.close()
