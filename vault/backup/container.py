"""The cvault backup file (format ``cvault-backup/v1``; docs/format.md, "backup file").

Layout::

    "CVBK" | u8 version (1) | u8 0 | u32 n | header: n bytes of canonical JSON (in the clear)
    frames: u32 length || AES-256-GCM ciphertext and tag, one per chunk of at most chunk_size
    "CVBT" | u32 m | trailer: m bytes of canonical JSON, Ed25519-signed (in the clear)

The **header** holds what opening needs before anything is decrypted: the vault id, the backup
id, the creation time, the chunk size, a random 32-byte salt, and the vault's unseal slots (the
same wrapped root-key rows ``vault.db`` stores in the clear, so the key file, passphrase or
recovery key of the backed-up vault opens the backup).

**Frames**: ``K_file = HKDF(K_backup, salt, "cvault/v1/backup/file" || LP(backup_id))`` where
``K_backup`` is the root-derived ``backup`` purpose key; frame ``i`` uses the nonce
``u32(0) || u64(i)`` (unique: ``K_file`` is new for every backup) and the associated data
``AAD("backup-frame", vault_id, backup_id, SHA-256(header), i, last)`` with ``last`` 1 on the final
frame and 0 otherwise. So a changed header, a reordered, dropped or repeated frame, and a file cut
after any frame all fail to decrypt (the STREAM construction of Hoang, Reyhanitabar, Rogaway and
Vizar, "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015).

The **plaintext** is a sequence of entries ``u8 kind | u16 name length | name (UTF-8) | u64 size |
size bytes``; the kinds are ``1`` database snapshot, ``2`` blob, ``3`` custody state (JSON),
``4`` manifest (JSON, always last). The manifest lists every entry with its size and SHA-256 and
carries the caller's metadata; it is signed (Ed25519, label ``cvault/v1/backup-manifest``).

The **trailer** says, in the clear, which vault and backup this is and the SHA-256 of every byte
before it, signed with the same key (label ``cvault/v1/backup-trailer``): anyone with the vault's
audit public key can check a backup file is whole and genuine without any secret
(:func:`verify_trailer`).

Memory stays bounded by the chunk size (1 MiB by default) on both sides.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from vault import crypto
from vault.errors import CryptoError, IntegrityFailure, InvalidInput
from vault.tuples import NamedTuple

MAGIC = b"CVBK"
TRAILER_MAGIC = b"CVBT"
VERSION = 1
FORMAT = "cvault-backup/v1"
TRAILER_FORMAT = "cvault-backup-trailer/v1"
DEFAULT_CHUNK = 1 << 20
MAX_CHUNK = 16 << 20
MAX_HEADER = 1 << 20
MANIFEST_LABEL = b"cvault/v1/backup-manifest\x00"
TRAILER_LABEL = b"cvault/v1/backup-trailer\x00"

KIND_DATABASE, KIND_BLOB, KIND_CUSTODY, KIND_MANIFEST = 1, 2, 3, 4
KIND_NAMES = {
    KIND_DATABASE: "database",
    KIND_BLOB: "blob",
    KIND_CUSTODY: "custody",
    KIND_MANIFEST: "manifest",
}

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_ENTRY = struct.Struct(">BH")


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _lp(value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _U32.pack(8) + _U64.pack(value)
    return _U32.pack(len(value)) + value


def file_key(backup_key: bytes, salt: bytes, backup_id: bytes) -> bytes:
    return crypto.hkdf_sha256(backup_key, salt=salt, info=b"cvault/v1/backup/file" + _lp(backup_id))


def frame_aad(vault_id: bytes, backup_id: bytes, header_digest: bytes, index: int, last: bool) -> bytes:
    return (
        b"cvault/v1/backup-frame"
        + _lp(vault_id)
        + _lp(backup_id)
        + _lp(header_digest)
        + _lp(index)
        + _lp(1 if last else 0)
    )


def frame_nonce(index: int) -> bytes:
    return b"\x00\x00\x00\x00" + _U64.pack(index)


class Header(NamedTuple):
    vault_id: bytes
    backup_id: bytes
    created_at: int
    chunk_size: int
    salt: bytes
    slots: list
    raw: bytes  # the exact header bytes (their SHA-256 is in every frame's AAD)

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.raw).digest()


class EntryInfo(NamedTuple):
    kind: int
    name: str
    size: int
    sha256: str


def _bad(message: str = "the backup file is damaged or not a cvault backup") -> IntegrityFailure:
    return IntegrityFailure(f"integrity failure: {message}")


# --- writing -----------------------------------------------------------------------------------------


class BackupWriter:
    """Streams entries into a backup file; :meth:`finish` writes the manifest and the trailer."""

    def __init__(
        self,
        out: BinaryIO,
        *,
        vault_id: bytes,
        backup_key: bytes,
        slots: list[dict],
        created_at: int,
        chunk_size: int = DEFAULT_CHUNK,
        backup_id: bytes | None = None,
    ):
        if not 4096 <= chunk_size <= MAX_CHUNK:
            raise ValueError("chunk_size must be 4 KiB to 16 MiB")
        self.backup_id = backup_id or crypto.random_bytes(16)
        self.vault_id = vault_id
        self.created_at = created_at
        self._out = out
        self._hash = hashlib.sha256()
        salt = crypto.random_bytes(32)
        header = canonical(
            {
                "format": FORMAT,
                "vault_id": vault_id.hex(),
                "backup_id": self.backup_id.hex(),
                "created_at": created_at,
                "chunk_size": chunk_size,
                "salt": salt.hex(),
                "slots": slots,
            }
        )
        if len(header) > MAX_HEADER:
            raise ValueError("backup header too large")
        self._header_digest = hashlib.sha256(header).digest()
        self._write(MAGIC + bytes([VERSION, 0]) + _U32.pack(len(header)) + header)
        self._key = file_key(backup_key, salt, self.backup_id)
        self._chunk = chunk_size
        self._buffer = bytearray()
        self._index = 0
        self.entries: list[EntryInfo] = []
        self.plaintext_bytes = 0
        self._finished = False

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._hash.update(data)

    def _emit(self, plaintext: bytes, last: bool) -> None:
        aad = frame_aad(self.vault_id, self.backup_id, self._header_digest, self._index, last)
        ct = crypto.aead_encrypt(self._key, frame_nonce(self._index), plaintext, aad)
        self._write(_U32.pack(len(ct)) + ct)
        self._index += 1

    def _feed(self, data: bytes) -> None:
        self.plaintext_bytes += len(data)
        self._buffer += data
        while len(self._buffer) > self._chunk:  # keep one chunk back: the final frame is marked
            self._emit(bytes(self._buffer[: self._chunk]), last=False)
            del self._buffer[: self._chunk]

    def add(self, kind: int, name: str, source: BinaryIO | bytes, size: int | None = None) -> EntryInfo:
        """Append one entry; ``source`` is bytes or a binary file read to its end (``size`` bytes)."""
        if self._finished or kind not in KIND_NAMES or kind == KIND_MANIFEST:
            raise ValueError("bad entry")
        return self._add(kind, name, source, size)

    def _add(self, kind: int, name: str, source, size: int | None) -> EntryInfo:
        encoded = name.encode("utf-8")
        if isinstance(source, (bytes, bytearray)):
            source, size = io.BytesIO(source), len(source)
        if size is None or size < 0 or len(encoded) > 0xFFFF:
            raise ValueError("entry size and name length are required")
        self._feed(_ENTRY.pack(kind, len(encoded)) + encoded + _U64.pack(size))
        digest = hashlib.sha256()
        remaining = size
        while remaining:
            chunk = source.read(min(remaining, self._chunk))
            if not chunk:
                raise InvalidInput(f"backup entry {name} ended early")
            digest.update(chunk)
            self._feed(chunk)
            remaining -= len(chunk)
        info = EntryInfo(kind, name, size, digest.hexdigest())
        if kind != KIND_MANIFEST:
            self.entries.append(info)
        return info

    def finish(self, metadata: dict, sign: Callable[[bytes], bytes], public_key: bytes) -> dict:
        """Write the signed manifest, the last frame and the signed trailer; returns the trailer."""
        body = {
            "format": FORMAT,
            "vault_id": self.vault_id.hex(),
            "backup_id": self.backup_id.hex(),
            "entries": [
                {"kind": KIND_NAMES[e.kind], "name": e.name, "size": e.size, "sha256": e.sha256}
                for e in self.entries
            ],
            "metadata": metadata,
        }
        text = canonical(body)
        manifest = canonical({"body": text.decode("ascii"), "signature": sign(MANIFEST_LABEL + text).hex()})
        self._add(KIND_MANIFEST, "manifest", manifest, len(manifest))
        self._emit(bytes(self._buffer), last=True)
        self._buffer.clear()
        self._finished = True
        trailer_body = {
            "format": TRAILER_FORMAT,
            "vault_id": self.vault_id.hex(),
            "backup_id": self.backup_id.hex(),
            "created_at": self.created_at,
            "frames": self._index,
            "plaintext_bytes": self.plaintext_bytes,
            "sha256": self._hash.hexdigest(),
            "public_key": public_key.hex(),
        }
        ttext = canonical(trailer_body)
        trailer = canonical({"body": ttext.decode("ascii"), "signature": sign(TRAILER_LABEL + ttext).hex()})
        self._out.write(TRAILER_MAGIC + _U32.pack(len(trailer)) + trailer)
        return trailer_body


# --- reading -----------------------------------------------------------------------------------------


#: the fields of one header slot, exactly those the backup service writes (``_slots``)
_SLOT_FIELDS = frozenset({"id", "kind", "label", "kdf_params", "salt", "wrapped_root", "created_at"})


def _slot_bytes(value: object) -> bytes | None:
    """A header slot's base64 field, strictly (the standard alphabet, padded), or None."""
    import base64
    import binascii

    if type(value) is not str or not value.isascii():
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def header_slots(value: object) -> list[dict]:
    """The one decoder of a backup header's ``slots`` (review10 R10-2): a list of at most
    :data:`vault.keys.MAX_SLOTS` objects, each exactly as the backup service writes a slot row (an
    INTEGER ``id`` unique in the list, a known ``kind``, ``kdf_params`` that
    :func:`vault.keys.valid_kdf_params` accepts for it, a text ``label``, an INTEGER
    ``created_at``, ``salt`` and ``wrapped_root`` base64 of the sizes
    :func:`vault.keys.stored_slot_bytes` takes), else the damaged-backup failure: before any key
    derivation, since nothing in the header is authenticated until the root key is found."""
    from vault import keys

    if type(value) is not list:
        raise _bad("the backup header's slot list is damaged")
    if len(value) > keys.MAX_SLOTS:
        raise _bad(
            f"the backup header lists {len(value)} unseal slots; cvault writes at most {keys.MAX_SLOTS}"
        )
    seen: set[int] = set()
    for item in value:
        if type(item) is not dict or set(item) != _SLOT_FIELDS:
            raise _bad("the backup header's slot list is damaged")
        sid, kind = item["id"], item["kind"]
        salt, wrapped = _slot_bytes(item["salt"]), _slot_bytes(item["wrapped_root"])
        if not (
            type(sid) is int
            and sid >= 1
            and sid not in seen
            and kind in keys.SLOT_KINDS
            and type(item["label"]) is str
            and type(item["created_at"]) is int
            and keys.valid_kdf_params(kind, item["kdf_params"])
        ):
            raise _bad("the backup header's slot list is damaged")
        try:
            keys.stored_slot_bytes(sid, salt, wrapped)
        except IntegrityFailure:
            raise _bad("the backup header's slot list is damaged") from None
        seen.add(sid)
    return list(value)


def _read_exact(fp: BinaryIO, n: int) -> bytes:
    data = fp.read(n)
    if len(data) != n:
        raise _bad("the backup file is cut short")
    return data


def read_header(fp: BinaryIO) -> Header:
    """The clear header (what unsealing needs); the file position is left at the first frame."""
    start = fp.read(10)
    if len(start) != 10 or start[:4] != MAGIC:
        raise _bad("not a cvault backup file")
    if start[4] != VERSION:
        raise _bad(f"unsupported backup format version {start[4]}")
    n = _U32.unpack(start[6:10])[0]
    if n > MAX_HEADER:
        raise _bad()
    raw = _read_exact(fp, n)
    from vault.settings import loads_stored

    try:
        h: Any = loads_stored(raw.decode("ascii"))
        header = Header(
            bytes.fromhex(h["vault_id"]),
            bytes.fromhex(h["backup_id"]),
            int(h["created_at"]),
            int(h["chunk_size"]),
            bytes.fromhex(h["salt"]),
            header_slots(h["slots"]),
            raw,
        )
    except (ValueError, KeyError, TypeError):
        raise _bad() from None
    if h.get("format") != FORMAT or canonical(h) != raw or not 4096 <= header.chunk_size <= MAX_CHUNK:
        raise _bad()
    if len(header.vault_id) != 16 or len(header.backup_id) != 16 or len(header.salt) != 32:
        raise _bad()
    return header


class _Plaintext:
    """The decrypted byte stream, frame by frame (at most one chunk in memory)."""

    def __init__(self, fp: BinaryIO, header: Header, key: bytes):
        self._fp = fp
        self._h = header
        self._key = key
        self._buf = b""
        self._pos = 0
        self._index = 0
        self.done = False

    def _next_frame(self) -> None:
        raw = self._fp.read(4)
        if len(raw) != 4 or raw == TRAILER_MAGIC:
            raise _bad("the backup file is cut short")
        n = _U32.unpack(raw)[0]
        if not 16 <= n <= self._h.chunk_size + 16:
            raise _bad()
        ct = _read_exact(self._fp, n)
        for last in (False, True):
            aad = frame_aad(self._h.vault_id, self._h.backup_id, self._h.digest, self._index, last)
            try:
                plain = crypto.aead_decrypt(self._key, frame_nonce(self._index), ct, aad)
            except CryptoError:
                continue
            self._index += 1
            self._buf, self._pos, self.done = plain, 0, last
            return
        raise _bad("the backup file failed authentication (wrong vault, edited or reordered)")

    def read(self, n: int) -> bytes:
        out = []
        while n:
            if self._pos == len(self._buf):
                if self.done:
                    raise _bad("the backup file is cut short")
                self._next_frame()
                continue
            take = self._buf[self._pos : self._pos + n]
            self._pos += len(take)
            n -= len(take)
            out.append(take)
        return b"".join(out)

    def at_end(self) -> bool:
        return self.done and self._pos == len(self._buf)


class BackupReader:
    """Iterates the entries of a backup; the manifest is checked after the last entry."""

    def __init__(self, fp: BinaryIO, header: Header, backup_key: bytes):
        self.header = header
        self._fp = fp
        self._plain = _Plaintext(fp, header, file_key(backup_key, header.salt, header.backup_id))
        self.seen: list[EntryInfo] = []
        self.manifest: dict | None = None
        self._manifest_raw: dict | None = None

    def entries(self) -> Iterator[tuple[int, str, int, Iterator[bytes]]]:
        """Yields ``(kind, name, size, chunks)``; consume ``chunks`` before the next entry."""
        while True:
            kind, name_len = _ENTRY.unpack(self._plain.read(_ENTRY.size))
            name = self._plain.read(name_len).decode("utf-8", "replace")
            size = _U64.unpack(self._plain.read(8))[0]
            if kind == KIND_MANIFEST:
                if size > MAX_HEADER * 64:
                    raise _bad()
                raw = self._plain.read(size)
                if not self._plain.at_end():
                    raise _bad("the backup file has data after its manifest")
                try:
                    self._manifest_raw = json.loads(raw)
                except ValueError:
                    raise _bad() from None
                return
            if kind not in KIND_NAMES:
                raise _bad()
            digest = hashlib.sha256()
            chunks = self._chunks(size, digest)
            yield kind, name, size, chunks
            for _ in chunks:  # drain what the caller did not read
                pass
            self.seen.append(EntryInfo(kind, name, size, digest.hexdigest()))

    def _chunks(self, size: int, digest) -> Iterator[bytes]:
        remaining = size
        while remaining:
            chunk = self._plain.read(min(remaining, self.header.chunk_size))
            digest.update(chunk)
            remaining -= len(chunk)
            yield chunk

    def verify_manifest(self, public_key: bytes) -> dict:
        """After :meth:`entries` is exhausted: check the signature and that the manifest lists
        exactly the entries read; returns the manifest body."""
        raw = self._manifest_raw
        if not isinstance(raw, dict) or not isinstance(raw.get("body"), str):
            raise _bad("the backup has no manifest")
        text = raw["body"].encode("ascii", "replace")
        try:
            crypto.ed25519_verify(public_key, bytes.fromhex(str(raw.get("signature"))), MANIFEST_LABEL + text)
            body = json.loads(text)
        except (CryptoError, ValueError):
            raise _bad("the backup manifest signature does not verify") from None
        listed = [(e["kind"], e["name"], e["size"], e["sha256"]) for e in body.get("entries", [])]
        read = [(KIND_NAMES[e.kind], e.name, e.size, e.sha256) for e in self.seen]
        if (
            listed != read
            or body.get("vault_id") != self.header.vault_id.hex()
            or body.get("backup_id") != self.header.backup_id.hex()
        ):
            raise _bad("the backup does not hold what its manifest lists")
        self.manifest = body
        return body

    def read_trailer(self) -> dict:
        return _parse_trailer(self._fp)


def _parse_trailer(fp: BinaryIO) -> dict:
    start = fp.read(8)
    if len(start) != 8 or start[:4] != TRAILER_MAGIC:
        raise _bad("the backup file has no trailer")
    n = _U32.unpack(start[4:])[0]
    if n > MAX_HEADER:
        raise _bad()
    raw = _read_exact(fp, n)
    if fp.read(1):
        raise _bad("the backup file has data after its trailer")
    try:
        return json.loads(raw)
    except ValueError:
        raise _bad() from None


def verify_trailer(path, public_key: bytes | None = None) -> dict:
    """Check a backup file without any secret: the trailer's signature (with ``public_key``, or
    the key the trailer names when None) and the SHA-256 of every byte before it. Returns the
    trailer body; raises IntegrityFailure (exit 6) otherwise."""
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        size = fp.seek(0, io.SEEK_END)
        fp.seek(0)
        read_header(fp)  # checks the magic, version and header encoding
        end_of_header = fp.tell()
        fp.seek(0)
        digest.update(_read_exact(fp, end_of_header))
        while True:  # the frame lengths are in the clear: walk them to the trailer
            raw = _read_exact(fp, 4)
            if raw == TRAILER_MAGIC:
                fp.seek(-4, io.SEEK_CUR)
                break
            n = _U32.unpack(raw)[0]
            if n > MAX_CHUNK + 16 or fp.tell() + n > size:
                raise _bad()
            digest.update(raw)
            remaining = n
            while remaining:
                chunk = _read_exact(fp, min(remaining, 1 << 20))
                digest.update(chunk)
                remaining -= len(chunk)
        trailer = _parse_trailer(fp)
    try:
        text = trailer["body"].encode("ascii")
        body = json.loads(text)
        key = public_key if public_key is not None else bytes.fromhex(body["public_key"])
        crypto.ed25519_verify(key, bytes.fromhex(trailer["signature"]), TRAILER_LABEL + text)
    except (KeyError, TypeError, ValueError, AttributeError, CryptoError):
        raise _bad("the backup trailer signature does not verify") from None
    if body.get("format") != TRAILER_FORMAT or body.get("sha256") != digest.hexdigest():
        raise _bad("the backup file does not match its signed trailer")
    if public_key is not None and body.get("public_key") != public_key.hex():
        raise _bad("the backup trailer names another signing key")
    return body
