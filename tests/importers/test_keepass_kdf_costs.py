"""review10 (R10-4's older note): a KDBX file's key-derivation costs are in its clear header, and
pykeepass derives at them before anything in the file is checked (``transformed_key`` is the first
field of its body). An imported database is the user's own file, but one whose header asks for
2**32 - 1 Argon2 passes, 4 GiB, thousands of lanes or 2**40 AES-KDF rounds made ``cvault import``
derive for ever (or ask for the memory). Fixed: ``KeePassSource`` reads the header first and
refuses costs above ``keepass.MAX_ARGON2_*`` / ``MAX_AES_KDF_ROUNDS`` (no more than the costliest
unseal slot cvault opens) with one line, exit 2, before pykeepass derives anything.

The header is edited in place (same length; the header's hash and HMAC then no longer match, which
pykeepass finds only after the derivation). The CLI runs with a guard timeout so a regression
fails instead of hanging; the guard is not a timing assertion (the fixed code derives nothing)."""

from __future__ import annotations

import struct
import subprocess

import pytest

from tests.helpers import add_client
from tests.importers.builders import KpEntry, write_kdbx
from vault.importers import keepass

PASSWORD = "correct horse"
GUARD_SECONDS = 30


def _variant(key: str, type_byte: int, size: int) -> bytes:
    """A KDBX 4 KDF parameter's bytes up to its value (type, key length, key, value length)."""
    return bytes([type_byte]) + struct.pack("<I", len(key)) + key.encode() + struct.pack("<I", size)


def _set_kdbx4(path, key: str, value: int) -> None:
    type_byte, size = (0x04, 4) if key == "P" else (0x05, 8)
    data = path.read_bytes()
    at = data.index(_variant(key, type_byte, size)) + len(_variant(key, type_byte, size))
    packed = struct.pack("<I" if size == 4 else "<Q", value)
    path.write_bytes(data[:at] + packed + data[at + size :])


def _set_kdbx3_rounds(path, value: int) -> None:
    data = path.read_bytes()
    at = data.index(b"\x06\x08\x00", 12) + 3  # header item 6 (transform_rounds), 8 bytes
    path.write_bytes(data[:at] + struct.pack("<Q", value) + data[at + 8 :])


def _import(vdir, path):
    v = vdir.open()
    try:
        if v.ctx.db.one("SELECT 1 FROM clients WHERE name = 'acme'") is None:
            add_client(v, "acme")
    finally:
        v.close()
    try:
        return vdir.cli(
            "import",
            "--from",
            "keepass",
            str(path),
            "--password-stdin",
            "--client",
            "acme",
            "--dry-run",
            input=PASSWORD + "\n",
            timeout=GUARD_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"cvault import was still deriving after {GUARD_SECONDS} s at the KDF costs a KDBX"
            " header asked for"
        ) from None


def _one_line(proc, words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


#: (KDBX version, parameter, value); each asks for more than cvault derives for any key
PLANTED = {
    "argon2_passes_2_32": (4, "I", 2**32 - 1),
    "argon2_memory_4_gib": (4, "M", 4 * 1024**3),
    "argon2_lanes_1000": (4, "P", 1000),
    "argon2_work_over_the_slot_bound": (4, "I", 1025),  # 1025 passes at the test's 1 MiB x 64
    "aes_kdf_rounds_2_40": (3, "R", 2**40),
}


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_header_asking_for_unbounded_kdf_work_is_one_line_exit_2(vdir, tmp_path, case):
    version, key, value = PLANTED[case]
    path = write_kdbx(tmp_path / "planted.kdbx", [KpEntry("Firewall", password="pw")], version=version)
    if version == 3:
        _set_kdbx3_rounds(path, value)
    else:
        if case == "argon2_work_over_the_slot_bound":
            _set_kdbx4(path, "M", 64 * 1024**2)  # 64 MiB x 1025 passes > 1 GiB x 64 passes
        _set_kdbx4(path, key, value)
    words = "AES-KDF rounds" if version == 3 else "Argon2 key derivation asks for more"
    _one_line(_import(vdir, path), words)


@pytest.mark.parametrize("version", [3, 4])
def test_costs_within_the_bounds_are_the_user_s_choice(vdir, tmp_path, version):
    """The control: an edited header whose costs stay within the bounds is derived at and then
    found damaged by pykeepass (its header hash), not refused for its costs; the unedited file
    imports (a dry run)."""
    path = write_kdbx(tmp_path / "ok.kdbx", [KpEntry("Firewall", password="pw")], version=version)
    assert _import(vdir, path).returncode == 0
    if version == 3:
        _set_kdbx3_rounds(path, 2000)
    else:
        _set_kdbx4(path, "I", 3)
    proc = _import(vdir, path)
    assert proc.returncode == 2 and "asks for more" not in proc.stderr, proc.stderr
    assert keepass.MAX_AES_KDF_ROUNDS >= 2000 and keepass.MAX_ARGON2_LANES >= 2
