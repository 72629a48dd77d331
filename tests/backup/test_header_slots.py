"""review10 R10-2 (low): R8-5's strict slot decoding stopped at the live vault. A backup's clear
header ``slots`` (what ``cvault restore`` derives the root key from, before anything in the file
is authenticated) were taken as they came: ``read_header`` kept ``list(h["slots"])`` and
``root_from_slots`` called ``slot.get(...)`` on each item, so someone who can write the backup file
(the backup operator, the remote store) made ``cvault restore`` "internal error: AttributeError"
(exit 1) with a non-object item, and the number of slots was bounded only by the 1 MiB header, each
one derived at up to 1 GiB x 64 passes. Fixed: ``vault.backup.container.header_slots`` decodes the
list strictly (at most ``vault.keys.MAX_SLOTS`` items, each exactly the slot row the backup service
writes, its costs through ``keys.valid_kdf_params`` and its salt and wrapped root through
``keys.stored_slot_bytes``), else the damaged-backup failure (exit 6, one line) before any
derivation; ``slot add`` and ``backup`` keep a vault within the same count."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import pytest

from tests.helpers import file_sql, run_cli
from vault import keys
from vault.backup import container as bc
from vault.errors import InvalidInput


def _backup(vdir, tmp_path) -> Path:
    made = vdir.cli("--json", "backup", "--out", str(tmp_path / "out"))
    assert made.returncode == 0, made.stderr
    path = Path(json.loads(made.stdout)["file"])
    path = path if path.is_absolute() else tmp_path / path
    assert path.read_bytes()[:4] == bc.MAGIC
    return path


def _rewrite_header(path: Path, edit) -> None:
    """The header rewritten (no key needed: nothing in it is authenticated before the root key),
    re-encoded canonically with its new length."""
    data = path.read_bytes()
    n = struct.unpack(">I", data[6:10])[0]
    header = json.loads(data[10 : 10 + n])
    edit(header)
    raw = bc.canonical(header)
    path.write_bytes(data[:6] + struct.pack(">I", len(raw)) + raw + data[10 + n :])


def _restore(vdir, tmp_path, path):
    return run_cli("--json", "--home", str(tmp_path / "restored"), "restore", str(path), env=vdir.env())


def _assert_damaged(proc, what: str = "the backup header's slot list is damaged") -> str:
    """Exit 6, one line, naming the header's slots: refused as it is read, before any derivation
    (an edited header also fails every frame's AAD, but only after the root key was derived, and
    that answer names the frames, not the slots)."""
    out = proc.stdout + proc.stderr
    assert "internal error" not in out and "Traceback" not in out, (proc.returncode, out)
    assert proc.returncode == 6, (proc.returncode, out)  # a damaged backup (bc._bad)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and what in lines[0], proc.stderr
    return lines[0]


def _b64(n: int) -> str:
    return base64.b64encode(b"\x01" * n).decode()


def _passphrase_slot(sid: int, **costs) -> dict:
    params = {"memory_kib": 65536, "iterations": 1, "lanes": 4, "normalize": "NFC", **costs}
    return {
        "id": sid,
        "kind": "passphrase",
        "label": "planted",
        "kdf_params": params,
        "salt": _b64(keys.SLOT_SALT_LEN),
        "wrapped_root": _b64(keys.SLOT_WRAPPED_LEN),
        "created_at": 1780000000,
    }


def _changed(field: str, value):
    """The backup's first (real) slot with ``field`` set to ``value`` (``...``: left out)."""

    def edit(slots):
        first = dict(slots[0])
        if value is ...:
            del first[field]
        else:
            first[field] = value
        return [first, *slots[1:]]

    return edit


#: edits of the header's slot list; before, the first four were "internal error: AttributeError"
#: (exit 1), the others restored from the real slot after them, or derived at planted costs
EDITS = {
    "item_number": lambda slots: [1, *slots],
    "item_text": lambda slots: ["slot", *slots],
    "item_null": lambda slots: [None, *slots],
    "item_list": lambda slots: [["keyfile"], *slots],
    "slots_an_object": lambda slots: {"0": slots[0]},
    "slots_text": lambda slots: "keyfile",
    "missing_label": _changed("label", ...),
    "extra_field": _changed("secret", "00"),
    "id_text": _changed("id", "1"),
    "id_bool": _changed("id", True),
    "id_zero": _changed("id", 0),
    "kind_unknown": _changed("kind", "fido"),
    "created_at_text": _changed("created_at", "2026"),
    "keyfile_with_kdf_params": _changed("kdf_params", {"memory_kib": 65536}),
    "salt_short": _changed("salt", _b64(15)),
    "salt_not_base64": _changed("salt", "!" * 24),
    "salt_a_number": _changed("salt", 10**13),
    "wrapped_short": _changed("wrapped_root", _b64(59)),
    "duplicate_id": lambda slots: [*slots, slots[0]],
    "passphrase_4_tib": lambda slots: [_passphrase_slot(900, memory_kib=2**32 - 1), *slots],
    "passphrase_2_32_passes": lambda slots: [_passphrase_slot(900, iterations=2**32 - 1), *slots],
    # more slots than a vault holds, the real ones last (each planted one is an HKDF try before)
    "too_many": lambda slots: (
        [{**slots[0], "id": 1000 + i} for i in range(keys.MAX_SLOTS + 1 - len(slots))] + slots
    ),
}


def test_the_backup_as_written_restores(vdir, tmp_path):
    """The control: the unedited header passes the decoder and restores."""
    path = _backup(vdir, tmp_path)
    proc = _restore(vdir, tmp_path, path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("case", sorted(EDITS))
def test_a_planted_header_slot_list_is_one_line_exit_6(vdir, tmp_path, case):
    path = _backup(vdir, tmp_path)

    def edit(header):
        header["slots"] = EDITS[case](header["slots"])

    _rewrite_header(path, edit)
    if case == "too_many":
        _assert_damaged(_restore(vdir, tmp_path, path), f"cvault writes at most {keys.MAX_SLOTS}")
    else:
        _assert_damaged(_restore(vdir, tmp_path, path))
    assert not (tmp_path / "restored" / "vault.db").exists()


def test_a_deeply_nested_header_is_one_line_exit_6(vdir, tmp_path):
    """JSON nested past the recursion limit in the header (RecursionError is no ValueError)."""
    path = _backup(vdir, tmp_path)
    data = path.read_bytes()
    n = struct.unpack(">I", data[6:10])[0]
    raw = b"[" * 200_000 + b"]" * 200_000
    path.write_bytes(data[:6] + struct.pack(">I", len(raw)) + raw + data[10 + n :])
    _assert_damaged(_restore(vdir, tmp_path, path), "integrity failure: the backup file is damaged")


def test_a_vault_holds_at_most_max_slots(vdir, tmp_path):
    """``slot add`` refuses the slot past the limit (what a restore takes), and a vault holding
    more (rows put there outside cvault) gets no backup its restore would refuse."""
    v = vdir.open()
    try:
        (count,) = v.ctx.db.one("SELECT count(*) FROM unseal_slots")
        for i in range(keys.MAX_SLOTS - count):
            v.slots.add_slot("keyfile", bytes([i]) * 32, label=f"k{i}")
        with pytest.raises(InvalidInput, match=f"at most {keys.MAX_SLOTS} unseal slots"):
            v.slots.add_slot("keyfile", b"\xff" * 32, label="one too many")
    finally:
        v.close()
    path = _backup(vdir, tmp_path)  # exactly MAX_SLOTS: backed up and restored
    assert _restore(vdir, tmp_path, path).returncode == 0
    file_sql(
        vdir,
        "INSERT INTO unseal_slots (kind, label, kdf_params, salt, wrapped_root, created_at)"
        " SELECT kind, label, kdf_params, salt, wrapped_root, created_at FROM unseal_slots"
        " WHERE kind = 'keyfile' LIMIT 1",
    )
    made = vdir.cli("backup", "--out", str(tmp_path / "more"))
    assert made.returncode == 2 and "a backup holds at most" in made.stderr, (made.returncode, made.stderr)
    assert len(made.stderr.strip().splitlines()) == 1, made.stderr
