"""Record blob format v1 (docs/format.md is the specification; keep both in step).

    offset  size  field
    0       4     magic b"CVLT"
    4       1     format version (1)
    5       1     blob type (1 = record version, 2 = attachment)
    6       16    vault id
    22      16    client id
    38      8     record id, unsigned big-endian
    46      4     record version (type 1) or attachment id (type 2), unsigned big-endian
    50      12    AES-GCM nonce
    62      n+16  AES-256-GCM ciphertext of the record document (type 1) or of the attached file's
                  bytes (type 2), then the 16-byte tag

An attachment (type 2) has its own key, kept only inside the encrypted document of each record
version that lists it; its id is the record version that added it.

The associated data is the whole 62-byte header, so no header field can change undetected; the
record key (DEK) is unique per record version, so a blob moved to another record, client or
version fails to decrypt. Readers accept the versions in :data:`READABLE_VERSIONS` and reject
every other one; retired type bytes are never reused.
"""

from __future__ import annotations

import struct
from typing import Any

from vault import crypto
from vault.errors import CryptoError
from vault.tuples import NamedTuple

MAGIC = b"CVLT"
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)
TYPE_RECORD = 1
TYPE_ATTACHMENT = 2
HEADER = struct.Struct(">4sBB16s16sQI12s")
HEADER_LEN = HEADER.size  # 62
MAX_PLAINTEXT = 1024 * 1024  # docs/spec.md §4: 1 MiB per record
MAX_ATTACHMENT = 25 * 1024 * 1024  # issue 16: 25 MiB per attached file


#: a pack (docs/format.md section 9): many record versions of one client in one blob, written by
#: the bulk import only. Each version is a complete type-1 blob as above, at the offset and of the
#: length its ``record_versions`` row gives (``pack_offset``, ``size``: both under the row MAC).
#: The pack header names the vault and the client for a reader; it is not associated data of
#: anything (each version's own header is), so an edited pack header makes nothing readable.
PACK_MAGIC = b"CVPK"
PACK_VERSION = 1
PACK_HEADER = struct.Struct(">4sB16s16s")
PACK_HEADER_LEN = PACK_HEADER.size  # 37


def pack_header(vault_id: bytes, client_id: bytes) -> bytes:
    return PACK_HEADER.pack(PACK_MAGIC, PACK_VERSION, vault_id, client_id)


#: the smallest record blob: a header and a tag (an empty plaintext)
MIN_BLOB = HEADER_LEN + crypto.TAG_LEN


def pack_framing(
    data: bytes, vault_id: bytes, client_id: bytes, kept: list[tuple[int, int, int, int]]
) -> tuple[int, int]:
    """Check that the pack ``data`` is its header and its record blobs back to back, nothing
    else (docs/format.md section 9, "Framing"), given ``kept``: ``(record_id, version, offset,
    size)`` of every version stored in it that is kept. A pack holds the first versions of
    consecutive records, so the blob at each place has a known header: a kept one is ``size``
    bytes at its row's offset; a destroyed one (pruned or purged: its row is gone) between two
    kept ones is framed by its own header (magic, format, type, vault, client, record id,
    version 1: 50 exact bytes) and ends where the next record's header starts. Trailing bytes,
    a gap, an overlap, a blob out of order or an edited pack header raise CryptoError. Returns
    the record id of the pack's first blob and how many blobs it holds (the pack's name is keyed
    on them and on its length: the caller checks)."""
    if not isinstance(data, (bytes, bytearray)) or not kept:
        raise CryptoError()
    if not crypto.constant_time_equal(bytes(data[:PACK_HEADER_LEN]), pack_header(vault_id, client_id)):
        raise CryptoError()

    def prefix(record_id: int, version: int = 1) -> bytes:
        fixed = (MAGIC, FORMAT_VERSION, TYPE_RECORD, vault_id, client_id, record_id, version)
        return HEADER.pack(*fixed, bytes(crypto.NONCE_LEN))[: HEADER_LEN - crypto.NONCE_LEN]

    end = len(data)
    if end < PACK_HEADER_LEN + MIN_BLOB:
        raise CryptoError()
    first: int = HEADER.unpack_from(data, PACK_HEADER_LEN)[5]  # the first blob's record id
    pos, next_id = PACK_HEADER_LEN, first

    def skip_destroyed(record_id: int, limit: int, last: bool) -> int:
        """Past the destroyed blob of ``record_id`` at ``pos``: where the next one starts."""
        if not data.startswith(prefix(record_id), pos):
            raise CryptoError()
        if last:  # the next blob is the one at ``limit`` (a kept one, or the end of the pack)
            if limit - pos < MIN_BLOB:
                raise CryptoError()
            return limit
        found = data.find(prefix(record_id + 1), pos + MIN_BLOB, limit)
        if found < 0:
            raise CryptoError()
        return found

    for record_id, version, offset, size in sorted(kept, key=lambda place: place[2]):
        if record_id < next_id or offset < pos or size < MIN_BLOB or offset + size > end:
            raise CryptoError()
        for gone in range(next_id, record_id):  # destroyed versions between the kept ones
            pos = skip_destroyed(gone, offset, gone == record_id - 1)
        if pos != offset or not data.startswith(prefix(record_id, version), offset):
            raise CryptoError()
        pos, next_id = offset + size, record_id + 1
    while pos < end:  # destroyed versions after the last kept one, each framed the same way
        following = data.find(prefix(next_id + 1), pos + MIN_BLOB)
        pos = skip_destroyed(next_id, end if following < 0 else following, True)
        next_id += 1
    return first, next_id - first


class BlobHeader(NamedTuple):
    vault_id: bytes
    client_id: bytes
    record_id: int
    record_version: int
    nonce: bytes
    format_version: int = FORMAT_VERSION
    blob_type: int = TYPE_RECORD


def encrypt_record(
    dek: bytes,
    plaintext: bytes,
    *,
    vault_id: bytes,
    client_id: bytes,
    record_id: int,
    record_version: int,
    nonce: bytes | None = None,
) -> bytes:
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError("record larger than 1 MiB")
    nonce = nonce or crypto.new_nonce()
    header = HEADER.pack(
        MAGIC, FORMAT_VERSION, TYPE_RECORD, vault_id, client_id, record_id, record_version, nonce
    )
    return header + crypto.aead_encrypt(dek, nonce, plaintext, header)


def parse_header(blob: bytes, blob_type: int = TYPE_RECORD) -> BlobHeader:
    """Parse and check the header (of a blob of ``blob_type``); any malformed input raises
    CryptoError (never anything else)."""
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < HEADER_LEN + crypto.TAG_LEN:
        raise CryptoError()
    magic, version, kind, vault_id, client_id, record_id, record_version, nonce = HEADER.unpack_from(blob, 0)
    if magic != MAGIC or version not in READABLE_VERSIONS or kind != blob_type:
        raise CryptoError()
    return BlobHeader(vault_id, client_id, record_id, record_version, nonce, version, kind)


def encrypt_attachment(
    key: bytes,
    data: bytes,
    *,
    vault_id: bytes,
    client_id: bytes,
    record_id: int,
    attachment_id: int,
    nonce: bytes | None = None,
) -> bytes:
    """An attached file's blob (type 2): the same layout as a record version's, under the
    attachment's own key; the header (the AAD) names the client, the record and the attachment."""
    if len(data) > MAX_ATTACHMENT:
        raise ValueError("attachment larger than 25 MiB")
    nonce = nonce or crypto.new_nonce()
    header = HEADER.pack(
        MAGIC, FORMAT_VERSION, TYPE_ATTACHMENT, vault_id, client_id, record_id, attachment_id, nonce
    )
    return header + crypto.aead_encrypt(key, nonce, data, header)


def decrypt_attachment(
    blob: bytes, key: bytes, *, vault_id: bytes, client_id: bytes, record_id: int, attachment_id: int
) -> bytes:
    """Verify the header names this attachment, then decrypt. Raises only CryptoError."""
    return _decrypt(
        blob, key, (vault_id, client_id, record_id, attachment_id), TYPE_ATTACHMENT, MAX_ATTACHMENT
    )


def decrypt_record(
    blob: bytes, dek: bytes, *, vault_id: bytes, client_id: bytes, record_id: int, record_version: int
) -> bytes:
    """Verify the header is the one expected for this record version, then decrypt.

    Raises only CryptoError, whatever was wrong."""
    return _decrypt(blob, dek, (vault_id, client_id, record_id, record_version), TYPE_RECORD, MAX_PLAINTEXT)


def _decrypt(blob: bytes, key: bytes, expected: tuple[bytes | int, ...], blob_type: int, limit: int) -> bytes:
    header = parse_header(blob, blob_type)
    actual: tuple[bytes | int, ...] = (
        header.vault_id,
        header.client_id,
        header.record_id,
        header.record_version,
    )
    if not all(crypto.constant_time_equal(_b(a), _b(e)) for a, e in zip(actual, expected, strict=True)):
        raise CryptoError()
    plaintext = crypto.aead_decrypt(key, header.nonce, bytes(blob[HEADER_LEN:]), bytes(blob[:HEADER_LEN]))
    if len(plaintext) > limit:
        raise CryptoError()
    return plaintext


def _b(value: bytes | int) -> bytes:
    return value if isinstance(value, bytes) else value.to_bytes(8, "big")


def open_document(plaintext: bytes, kind: str) -> dict[str, Any]:
    """Step 6 of docs/format.md section 3: the decrypted plaintext must be a JSON object whose
    ``kind`` is the record's kind and whose ``fields`` is an object; returns the fields.

    Raises only CryptoError (the caller names the record)."""
    return open_document_parts(plaintext, kind)[0]


#: an attachment entry of a record document: name -> JSON type (docs/format.md, "Attachments")
ATTACHMENT_ENTRY = {
    "name": str,
    "id": int,
    "size": int,
    "key": str,
    "blob": str,
    "added_at": int,
    "added_by": str,
}


def open_document_parts(plaintext: bytes, kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:func:`open_document`, and the document's ``attachments`` (absent: none), each entry
    checked against :data:`ATTACHMENT_ENTRY`. Raises only CryptoError."""
    import json

    try:
        document = json.loads(plaintext)
    except ValueError:
        raise CryptoError() from None
    if not isinstance(document, dict) or document.get("kind") != kind:
        raise CryptoError()
    fields = document.get("fields")
    if not isinstance(fields, dict):
        raise CryptoError()
    attachments = document.get("attachments", [])
    if not isinstance(attachments, list):
        raise CryptoError()
    for entry in attachments:
        if not isinstance(entry, dict) or set(entry) != set(ATTACHMENT_ENTRY):
            raise CryptoError()
        for name, typ in ATTACHMENT_ENTRY.items():
            value = entry[name]
            if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                raise CryptoError()
    return fields, attachments
