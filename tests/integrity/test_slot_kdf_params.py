"""review8 R8-5 (low): a stored unseal slot's ``kdf_params`` was parsed with a bare ``json.loads``
and its ``salt`` converted with ``bytes()`` (vault/facade.py's unseal, vault/slots/service.py's
``slot list`` and passphrase migration, vault/backup/service.py's slot rows). A file writer (A4,
no key) who puts invalid JSON there, a JSON list, nesting past the recursion limit, a memory cost
as a string, or a salt that is text or a number got exit 2 ("input nested too deeply", "a number
is out of range") or "internal error" (exit 1) from every command that unseals with the
passphrase, from ``slot list`` and from ``backup``; a memory cost of 2**32 - 1 KiB (4 TiB) made the
unseal try to allocate it. Fixed: one strict decoder (vault.keys.stored_kdf_params, with
stored_slot_bytes for the salt and wrapped root) that every reader uses, the Argon2id costs
bounded by the crypto module (vault.crypto.argon2id_params_ok: what cvault writes and accepts),
so a planted cost is refused before any key derivation runs: exit 6, one line, "run cvault
doctor". Guarantee 48."""

from __future__ import annotations

import json

import pytest

from tests.helpers import file_sql
from tests.integrity.test_meta_values import _assert_one_line
from vault import crypto

FAST = {"memory_kib": 65536, "iterations": 1, "lanes": 4}
PASSPHRASE = "correct horse battery"


def _params(**changes) -> str:
    """The slot's JSON with ``changes`` (None: the key left out), as an SQL literal."""
    params = {**FAST, "normalize": "NFC", **changes}
    return "'" + json.dumps({k: v for k, v in params.items() if v is not None}) + "'"


#: ``kdf_params`` of the passphrase slot: before, exit 2 or 1 (or a 4 TiB allocation), each
KDF_PARAMS = {
    "not_json": "'{memory_kib'",
    "json_list": "'[65536, 1, 4]'",
    "json_number": "'65536'",
    "deeply_nested": "'" + "[" * 100_000 + "]" * 100_000 + "'",
    "memory_as_text": _params(memory_kib="65536"),
    "memory_4_tib": _params(memory_kib=2**32 - 1),
    "memory_10_12": _params(memory_kib=10**12),
    "iterations_huge": _params(iterations=2**32 - 1),
    "lanes_zero": _params(lanes=0),
    "missing_lanes": _params(lanes=None),
    "normalize_other": _params(normalize="NFD"),
    "extra_field": _params(secret_key="00"),
    "a_blob": "x'7b7d'",
    "an_integer": "10000000000000",
}
#: ``salt`` of the passphrase slot (NOT NULL)
SALTS = {"text": "'abc'", "integer": "10000000000000", "real": "1.5", "short_blob": "zeroblob(15)"}


@pytest.fixture
def passphrase_vault(vdir, tmp_path):
    """The template vault (key file, operator session) with a passphrase slot; the passphrase in
    a 0600 file. Returns (vdir, the passphrase slot's id, env unsealing with the passphrase)."""
    v = vdir.open()
    try:
        slot_id = v.slots.add_slot("passphrase", PASSPHRASE.encode(), label="passphrase", kdf_params=FAST)
    finally:
        v.close()
    pass_file = tmp_path / "passphrase"
    pass_file.write_text(PASSPHRASE + "\n")
    pass_file.chmod(0o600)
    env = vdir.env(CVAULT_PASSPHRASE_FILE=str(pass_file))
    del env["CVAULT_KEY_FILE"]
    return vdir, slot_id, env


def _assert_slot_failure(result) -> None:
    line = _assert_one_line(result, 6)
    assert "integrity failure: unseal slot" in line and "run cvault doctor" in line, line


def _every_reader(vdir, env, tmp_path):
    """The readers of a stored slot: the unseal with the passphrase (doctor, secret get),
    ``slot list`` (sealed), ``backup`` (unsealed with the key file)."""
    yield run("doctor", env=env)
    yield run("secret", "get", "acme", "office/firewall", env=env)
    yield vdir.cli("slot", "list")
    yield vdir.cli("backup", "--out", str(tmp_path / "backups"))


def run(*args, env):
    from tests.helpers import run_cli

    return run_cli(*args, env=env)


def test_the_passphrase_slot_opens_before_any_edit(passphrase_vault, tmp_path):
    """The control: the slot as cvault wrote it unseals, lists and is backed up."""
    vdir, _slot, env = passphrase_vault
    results = list(_every_reader(vdir, env, tmp_path))
    assert results[0].returncode == 0, results[0].stderr
    assert results[2].returncode == 0 and "passphrase" in results[2].stdout, results[2].stderr
    assert results[3].returncode == 0, results[3].stderr


@pytest.mark.parametrize("case", sorted(KDF_PARAMS))
def test_a_planted_kdf_params_is_exit_6_one_line_before_any_kdf(passphrase_vault, tmp_path, case):
    vdir, slot_id, env = passphrase_vault
    file_sql(vdir, f"UPDATE unseal_slots SET kdf_params = {KDF_PARAMS[case]} WHERE id = ?", (slot_id,))
    for result in _every_reader(vdir, env, tmp_path):
        _assert_slot_failure(result)  # before: exit 2 / "internal error", or a 4 TiB allocation


@pytest.mark.parametrize("case", sorted(SALTS))
def test_a_planted_salt_is_exit_6_one_line(passphrase_vault, tmp_path, case):
    vdir, slot_id, env = passphrase_vault
    file_sql(vdir, f"UPDATE unseal_slots SET salt = {SALTS[case]} WHERE id = ?", (slot_id,))
    results = list(_every_reader(vdir, env, tmp_path))
    for result in (results[0], results[1], results[3]):  # slot list shows no salt
        _assert_slot_failure(result)


def test_kdf_params_on_a_key_file_slot_is_exit_6(vdir):
    """A key file slot has no KDF parameters (HKDF): a planted value is not a slot cvault wrote."""
    file_sql(vdir, """UPDATE unseal_slots SET kdf_params = '{"memory_kib": 65536}' WHERE kind = 'keyfile'""")
    _assert_slot_failure(vdir.cli("doctor"))


def test_the_bounds_are_what_cvault_writes_and_accepts(vdir):
    """What calibration writes is inside the bounds every reader keeps; a caller's costs outside
    them are refused when the slot is added (one line), not stored for every reader to refuse."""
    assert crypto.argon2id_params_ok(65536, 1, 4)
    assert crypto.argon2id_params_ok(crypto.ARGON2_MIN_MEMORY_KIB, crypto.ARGON2_MAX_ITERATIONS, 4)
    assert not crypto.argon2id_params_ok(crypto.ARGON2_MAX_MEMORY_KIB + 1, 1, 4)
    assert not crypto.argon2id_params_ok(True, 1, 4)
    from vault.errors import InvalidInput

    v = vdir.open()
    try:
        with pytest.raises(InvalidInput, match="outside cvault's bounds"):
            v.slots.add_slot(
                "passphrase", b"long enough", label="p", kdf_params={**FAST, "memory_kib": 2**32 - 1}
            )
    finally:
        v.close()
