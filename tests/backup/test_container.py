"""The backup file format (vault/backup/container.py): what is written comes back byte for byte,
and every change to the file -- header, any frame, order, length, trailer -- is refused (exit 6)."""

from __future__ import annotations

import base64
import io
import os

import pytest

from vault import crypto
from vault.backup import container as bc
from vault.errors import IntegrityFailure

VAULT_ID = bytes(range(16))
#: one slot row as the backup service writes it (the header decoder takes nothing else: R10-2)
SLOTS = [
    {
        "id": 1,
        "kind": "keyfile",
        "label": "key file",
        "salt": base64.b64encode(bytes(16)).decode(),
        "kdf_params": None,
        "wrapped_root": base64.b64encode(b"\xab" * 60).decode(),
        "created_at": 1780000000,
    }
]


@pytest.fixture(scope="module")
def signer():
    private, public = crypto.ed25519_generate()
    return (lambda message: crypto.ed25519_sign(private, message)), public


def _write(path, signer, key, *, chunk=4096, db=None, blobs=None):
    sign, public = signer
    db = db if db is not None else os.urandom(3 * chunk + 123)
    blobs = blobs if blobs is not None else {f"{i:040x}": os.urandom(100 + i) for i in range(5)}
    with open(path, "wb") as out:
        w = bc.BackupWriter(
            out, vault_id=VAULT_ID, backup_key=key, slots=SLOTS, created_at=1780000000, chunk_size=chunk
        )
        w.add(bc.KIND_DATABASE, "vault.db", io.BytesIO(db), len(db))
        for name, data in blobs.items():
            w.add(bc.KIND_BLOB, name, data)
        w.add(bc.KIND_CUSTODY, "custody.json", b'{"kind":"local"}')
        trailer = w.finish({"created_at": 1780000000, "note": "test"}, sign, public)
    return db, blobs, trailer


def _read(path, key, public):
    with open(path, "rb") as fp:
        header = bc.read_header(fp)
        reader = bc.BackupReader(fp, header, key)
        got = [(kind, name, b"".join(chunks)) for kind, name, _size, chunks in reader.entries()]
        manifest = reader.verify_manifest(public)
        reader.read_trailer()
    return header, got, manifest


def test_round_trip(tmp_path, signer):
    key = crypto.new_key()
    path = tmp_path / "b.cvbk"
    db, blobs, trailer = _write(path, signer, key)
    header, got, manifest = _read(path, key, signer[1])
    assert header.vault_id == VAULT_ID and header.slots == SLOTS and header.chunk_size == 4096
    assert got[0] == (bc.KIND_DATABASE, "vault.db", db)
    assert {name: data for kind, name, data in got if kind == bc.KIND_BLOB} == blobs
    assert got[-1] == (bc.KIND_CUSTODY, "custody.json", b'{"kind":"local"}')
    assert manifest["metadata"] == {"created_at": 1780000000, "note": "test"}
    assert [e["name"] for e in manifest["entries"]][:1] == ["vault.db"]
    assert bc.verify_trailer(path, signer[1]) == trailer
    assert trailer["frames"] >= 4
    # no plaintext in the file
    data = path.read_bytes()
    assert db[:64] not in data and not any(b[:32] in data for b in blobs.values())


def test_frames_are_at_most_one_chunk(tmp_path, signer):
    path = tmp_path / "b.cvbk"
    _write(path, signer, crypto.new_key(), chunk=4096, db=os.urandom(50_000))
    with open(path, "rb") as fp:
        bc.read_header(fp)
        sizes = []
        while (raw := fp.read(4)) != bc.TRAILER_MAGIC:
            n = int.from_bytes(raw, "big")
            sizes.append(n)
            fp.seek(n, 1)
    assert max(sizes) == 4096 + 16


def test_wrong_key_is_refused(tmp_path, signer):
    path = tmp_path / "b.cvbk"
    _write(path, signer, crypto.new_key())
    with pytest.raises(IntegrityFailure) as exc:
        _read(path, crypto.new_key(), signer[1])
    assert exc.value.exit_code == 6


def test_manifest_signed_by_another_key_is_refused(tmp_path, signer):
    key = crypto.new_key()
    path = tmp_path / "b.cvbk"
    _write(path, signer, key)
    _, other = crypto.ed25519_generate()
    with pytest.raises(IntegrityFailure, match="signature"):
        _read(path, key, other)
    with pytest.raises(IntegrityFailure):
        bc.verify_trailer(path, other)


def _frames(path):
    """(offset, length) of every frame record (4-byte length + ciphertext)."""
    data = path.read_bytes()
    pos = 10 + int.from_bytes(data[6:10], "big")
    out = []
    while data[pos : pos + 4] != bc.TRAILER_MAGIC:
        n = int.from_bytes(data[pos : pos + 4], "big")
        out.append((pos, 4 + n))
        pos += 4 + n
    return data, out, pos


@pytest.mark.parametrize("where", ["header", "first_frame", "last_frame", "trailer"])
def test_a_flipped_byte_anywhere_is_refused(tmp_path, signer, where):
    key = crypto.new_key()
    path = tmp_path / "b.cvbk"
    _write(path, signer, key)
    data, frames, trailer_at = _frames(path)
    offset = {
        "header": 40,
        "first_frame": frames[0][0] + 20,
        "last_frame": frames[-1][0] + 10,
        "trailer": trailer_at + 30,
    }[where]
    data = bytearray(data)
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityFailure):
        bc.verify_trailer(path, signer[1])
    if where != "trailer":
        with pytest.raises(IntegrityFailure):
            _read(path, key, signer[1])


@pytest.mark.parametrize("edit", ["drop", "swap", "repeat", "cut_after_frame", "cut_mid_frame", "append"])
def test_reordered_dropped_repeated_or_cut_frames_are_refused(tmp_path, signer, edit):
    key = crypto.new_key()
    path = tmp_path / "b.cvbk"
    _write(path, signer, key)
    data, frames, trailer_at = _frames(path)
    head, trailer = data[: frames[0][0]], data[trailer_at:]
    parts = [data[o : o + n] for o, n in frames]
    if edit == "drop":
        parts = parts[:1] + parts[2:]
    elif edit == "swap":
        parts[0], parts[1] = parts[1], parts[0]
    elif edit == "repeat":
        parts = parts[:2] + parts[1:]
    body = b"".join(parts)
    if edit == "cut_after_frame":
        new = head + b"".join(parts[:-1]) + trailer
    elif edit == "cut_mid_frame":
        new = head + body[: len(body) - 7]
    elif edit == "append":
        new = head + body + trailer + b"x"
    else:
        new = head + body + trailer
    path.write_bytes(new)
    with pytest.raises(IntegrityFailure):
        _read(path, key, signer[1])
    with pytest.raises(IntegrityFailure):
        bc.verify_trailer(path, signer[1])


def test_not_a_backup(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"SQLite format 3\x00" + bytes(100))
    with pytest.raises(IntegrityFailure, match="not a cvault backup"), open(path, "rb") as fp:
        bc.read_header(fp)
