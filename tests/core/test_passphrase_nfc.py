"""A passphrase becomes bytes as Unicode NFC, then UTF-8 (docs/format.md section 2.1).

The same passphrase typed with precomposed characters (NFC, what most keyboards send) or decomposed
ones (NFD, what some input methods and macOS file names produce) opens the same slot. A passphrase
slot made before normalisation took the typed bytes as they came; it still opens with either form
and is re-wrapped under the NFC form at its next successful unseal."""

import base64
import json
import sqlite3
import unicodedata

import pytest

from tests.helpers import run_cli
from vault import crypto, keys
from vault.backup.service import root_from_slots
from vault.errors import AuthenticationFailed
from vault.facade import Vault

FAST = {"memory_kib": 65536, "iterations": 1, "lanes": 4}
PHRASE = "Zoë’s café — Ångström"  # e-diaeresis, e-acute, A-ring: each has two forms
NFC = unicodedata.normalize("NFC", PHRASE)
NFD = unicodedata.normalize("NFD", PHRASE)


def test_the_two_forms_differ_as_bytes():
    assert NFC != NFD and NFC.encode() != NFD.encode()
    assert keys.passphrase_bytes(NFD) == keys.passphrase_bytes(NFC) == NFC.encode("utf-8")


def _slot_row(home):
    conn = sqlite3.connect(home / "vault.db")
    try:
        return conn.execute(
            "SELECT id, kdf_params, salt, wrapped_root FROM unseal_slots WHERE kind = 'passphrase'"
        ).fetchone()
    finally:
        conn.close()


def _unseal(home, passphrase):
    v = Vault.open(home)
    try:
        v.unseal_passphrase(passphrase)
        return v.ctx.keyring.root()
    finally:
        v.close()


@pytest.mark.parametrize(
    ("made", "typed"), [(NFC, NFD), (NFD, NFC)], ids=["made NFC, typed NFD", "made NFD, typed NFC"]
)
def test_a_new_slot_opens_with_either_form(tmp_path, made, typed):
    home = tmp_path / "vault"
    v, _ = Vault.init(home, passphrase=made, kdf_params=FAST)
    root = v.ctx.keyring.root()
    v.close()
    slot_id, params, salt, wrapped = _slot_row(home)
    assert json.loads(params)["normalize"] == "NFC"
    # the slot's KEK is Argon2id of the NFC bytes, whatever form init was given
    kek = keys.slot_kek("passphrase", NFC.encode("utf-8"), bytes(salt), json.loads(params))
    assert keys.unwrap_root(bytes(wrapped), kek, _vault_id(home), slot_id, "passphrase") == root
    assert _unseal(home, typed) == root
    with pytest.raises(AuthenticationFailed):
        _unseal(home, NFC + " ")


def _vault_id(home) -> bytes:
    conn = sqlite3.connect(home / "vault.db")
    try:
        return bytes(conn.execute("SELECT value FROM meta WHERE key = 'vault_id'").fetchone()[0])
    finally:
        conn.close()


def _make_legacy(home, typed_as: str) -> None:
    """Turn the vault's passphrase slot into one made before normalisation: kdf_params without
    ``normalize``, the root wrapped under Argon2id of the bytes exactly as typed."""
    v = Vault.open(home)
    v.unseal_passphrase(NFC)
    root = v.ctx.keyring.root()
    v.close()
    slot_id, _, _, _ = _slot_row(home)
    salt = crypto.random_bytes(16)
    kek = keys.slot_kek("passphrase", typed_as.encode("utf-8"), salt, FAST)
    conn = sqlite3.connect(home / "vault.db")
    with conn:
        conn.execute(
            "UPDATE unseal_slots SET kdf_params = ?, salt = ?, wrapped_root = ? WHERE id = ?",
            (
                json.dumps(FAST),
                salt,
                keys.wrap_root(root, kek, _vault_id(home), slot_id, "passphrase"),
                slot_id,
            ),
        )
    conn.close()


def _migrations(home) -> int:
    conn = sqlite3.connect(home / "vault.db")
    try:
        return conn.execute("SELECT count(*) FROM audit_events WHERE action = 'slot.migrate'").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("made", "typed"), [(NFD, NFC), (NFC, NFD)], ids=["made NFD, typed NFC", "made NFC, typed NFD"]
)
def test_an_old_slot_opens_with_either_form_and_is_migrated_at_the_next_unseal(tmp_path, made, typed):
    home = tmp_path / "vault"
    v, _ = Vault.init(home, passphrase=NFC, kdf_params=FAST)
    root = v.ctx.keyring.root()
    v.close()
    _make_legacy(home, made)
    before = _slot_row(home)
    assert "normalize" not in json.loads(before[1])

    # a wrong passphrase opens nothing and migrates nothing
    with pytest.raises(AuthenticationFailed):
        _unseal(home, "not the passphrase at all")
    assert _slot_row(home) == before and _migrations(home) == 0

    assert _unseal(home, typed) == root
    slot_id, params, salt, wrapped = _slot_row(home)
    assert slot_id == before[0] and bytes(salt) != bytes(before[2])
    assert json.loads(params) == {**FAST, "normalize": "NFC"}  # the same Argon2id costs
    kek = keys.slot_kek("passphrase", NFC.encode("utf-8"), bytes(salt), json.loads(params))
    assert keys.unwrap_root(bytes(wrapped), kek, _vault_id(home), slot_id, "passphrase") == root
    assert _migrations(home) == 1
    # both forms keep opening it, and it is not migrated twice
    assert _unseal(home, NFD) == root and _unseal(home, NFC) == root
    assert _migrations(home) == 1


def test_a_backup_of_an_old_slot_opens_with_either_form(tmp_path):
    vault_id, root, salt, slot_id = bytes(range(16)), bytes(range(32)), bytes(16), 3
    kek = keys.slot_kek("passphrase", NFD.encode("utf-8"), salt, FAST)
    slot = {
        "id": slot_id,
        "kind": "passphrase",
        "kdf_params": FAST,
        "salt": base64.b64encode(salt).decode(),
        "wrapped_root": base64.b64encode(keys.wrap_root(root, kek, vault_id, slot_id, "passphrase")).decode(),
    }
    assert root_from_slots([slot], vault_id, "passphrase", NFC.encode("utf-8")) == root
    with pytest.raises(AuthenticationFailed):
        root_from_slots([slot], vault_id, "passphrase", b"something else")


def test_the_cli_opens_an_nfc_vault_with_an_nfd_passphrase_file(tmp_path):
    home = tmp_path / "vault"
    Vault.init(home, passphrase=NFC, kdf_params=FAST)[0].close()
    typed = tmp_path / "typed"
    typed.write_text(NFD + "\n", encoding="utf-8")
    typed.chmod(0o600)  # cvault refuses secret files others can read
    env = {"CVAULT_HOME": str(home), "CVAULT_PASSPHRASE_FILE": str(typed), "PATH": "/usr/bin:/bin"}
    proc = run_cli("slot", "list", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert [s["kind"] for s in json.loads(proc.stdout)] == ["recovery", "passphrase"]
