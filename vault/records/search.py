"""``secret search``: the non-secret terms of a record and a client's sealed search index.

What is searchable (and nothing else): the path, the kind, and the kind's ``search`` fields of
:data:`vault.records.FIELDS` (host, URL, username, SSID, site, tags, ...), custom field names, and
the values of non-secret custom fields (their first :data:`MAX_TERM` characters). Secret fields,
secret custom values and TOTP seeds never enter the index.

The terms of a record are kept in its sealed metadata (``meta["s"]``, written with every version:
the index can be rebuilt from the metadata alone, without opening a record's secret fields). The
per-client index is one document, one line per live record, each line a JSON array
``[path, kind, version, updated_at, [[field, text], ...]]`` (JSON keeps every value on its line),
a listing section that ``secret list`` reads instead (the four columns as four JSON arrays), and
the digest of the record rows it was built from (:func:`rows_digest`: each row's path tag,
version, time, row MAC and whether it is live), which the listings compare with the digest of the
records table now (:func:`listing_digest`) before they believe it; it is sealed under the client
key by the secrets service (docs/format.md, "Search index").
Matching is a case-insensitive (``str.casefold``) substring test on each line, confirmed on the
parsed fields, so a term never matches the JSON punctuation around them.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from vault import crypto
from vault.records import CUSTOM, SEARCH_FIELDS

#: the first bytes of an index document (docs/format.md, "Search index"); CVSI1 (no listing),
#: CVSI2 (no row MACs) and CVSI3 (the name tags and row MACs themselves instead of their digest)
#: are not read: such an index is rebuilt, once
MAGIC = b"CVSI4"
#: bytes of one path's name tag (HMAC-SHA256, :meth:`vault.keys.ClientKeys.path_tag`)
TAG_BYTES = 32
#: bytes of one record row's MAC (``records.mac``, :mod:`vault.store.rowmac`)
ROW_MAC_BYTES = 32
#: bytes of the live records' digest (SHA-256) in an index document
DIGEST_BYTES = 32
_LEN = struct.Struct(">I")
#: longest text of one field kept in the index (custom values can be long; the rest is not searched)
MAX_TERM = 512


def terms_of(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The searchable terms of a record's fields: ``{field: text or [texts]}``, custom fields as
    ``{"custom": {NAME: value or None (secret)}}``. Never holds a secret value."""
    terms: dict[str, Any] = {}
    for name in SEARCH_FIELDS[kind]:
        value = fields.get(name)
        if value is None or name == CUSTOM:
            continue
        if isinstance(value, list):
            terms[name] = [str(v)[:MAX_TERM] for v in value]
        else:
            terms[name] = str(value)[:MAX_TERM]
    custom = fields.get(CUSTOM)
    if isinstance(custom, dict) and custom:
        terms[CUSTOM] = {
            n: (None if e.get("secret", True) else str(e.get("value", ""))[:MAX_TERM])
            for n, e in custom.items()
        }
    return terms


def _pairs(path: str, kind: str, terms: dict[str, Any]) -> list[list[str]]:
    pairs = [["path", path], ["kind", kind]]
    for name, value in terms.items():
        if name == CUSTOM:
            for custom_name, custom_value in value.items():
                pairs.append([f"custom.{custom_name}", custom_name])
                if custom_value is not None:
                    pairs.append([f"custom.{custom_name}", custom_value])
        elif isinstance(value, list):
            pairs.extend([name, v] for v in value)
        else:
            pairs.append([name, value])
    return pairs


def listing_digest(
    count: int, tags: bytes, macs: bytes, versions: bytes, updated: bytes, states: bytes
) -> bytes:
    """SHA-256 of the canonical text of the client's ``count`` record rows, deleted ones included,
    in record id order: their path tags (32 bytes each) concatenated, their row MACs (32 bytes each)
    concatenated, their current versions and their ``updated_at`` times (decimal, each list joined
    by ``,``) and one state byte each (``L`` live, ``D`` its current version a delete marker; a
    listing also reads ``M``, its current version row missing, which no rebuild seals). Given the
    count, 32-byte tags and MACs and integer versions and times, one text is one list of rows: equal
    digests mean the same (tag, version, time, MAC, state) rows in the same order, as surely as
    SHA-256 has no collision. :func:`vault.store.records.listing_summary` reads these values from
    the records table (and whether every row has those types); :func:`rows_digest` computes the same
    from rows."""
    return crypto.sha256(
        b"cvault/search-index/record-rows\n%d\n%b%b%b\n%b\n%b"
        % (count, tags, macs, versions, updated, states)
    )


def rows_digest(rows: list[tuple[int, bytes, int, int, bytes, bool]]) -> bytes:
    """:func:`listing_digest` of ``(record_id, path_tag, current_version, updated_at, row_mac,
    live)`` per record row (any order: the record ids are unique), as the rebuild read and checked
    them (ValueError if a value is not of its column's type, a 32-byte tag or MAC, an integer: the
    rebuild checks each row first)."""
    rows = sorted(rows, key=lambda r: r[0])
    for _, tag, version, updated_at, mac, _live in rows:
        if not (
            type(tag) is bytes
            and len(tag) == TAG_BYTES
            and type(mac) is bytes
            and len(mac) == ROW_MAC_BYTES
            and type(version) is int
            and type(updated_at) is int
        ):
            raise ValueError("a record's row does not have its columns' types")
    return listing_digest(
        len(rows),
        b"".join(r[1] for r in rows),
        b"".join(r[4] for r in rows),
        b",".join(b"%d" % r[2] for r in rows),
        b",".join(b"%d" % r[3] for r in rows),
        b"".join(b"L" if r[5] else b"D" for r in rows),
    )


def build(records: list[tuple[str, str, int, int, dict[str, Any]]], digest: bytes) -> bytes:
    """One client's index document from ``(path, kind, version, updated_at, terms)`` per live
    record and ``digest``, the :func:`rows_digest` of the rows they were read from: ``MAGIC || u32
    len(A) || A || u32 len(L) || L || u32 len(D) || D || B`` where A is the zlib-compressed scan
    section (one casefolded line per record, its texts joined by U+001F, newlines as U+001E), L
    the zlib-compressed listing (one JSON array of four arrays: the paths, kinds, versions and
    updated_at times), D the digest (32 bytes), and B the zlib-compressed JSON lines naming the
    fields; A, L and B in the same order, by path. U+001E and U+001F cannot occur in a term
    (control characters are refused). Only A is decompressed unless a term hits; ``secret list``
    reads only L; every listing compares D first."""
    if type(digest) is not bytes or len(digest) != DIGEST_BYTES:
        raise ValueError("a digest is 32 bytes")
    records = sorted(records, key=lambda r: r[0])
    scan, rows = [], []
    columns: list[list[Any]] = [[], [], [], []]
    for path, kind, version, updated_at, terms in records:
        for column, value in zip(columns, (path, kind, version, updated_at), strict=True):
            column.append(value)
        pairs = _pairs(path, kind, terms)
        scan.append("\x1f".join(v for _, v in pairs).casefold().replace("\n", "\x1e").replace("\r", "\x1e"))
        rows.append(
            json.dumps([path, kind, version, updated_at, pairs], ensure_ascii=False, separators=(",", ":"))
        )
    a = zlib.compress("\n".join(scan).encode("utf-8"), 1)
    listing = json.dumps(columns, ensure_ascii=False, separators=(",", ":"))
    lst = zlib.compress(listing.encode("utf-8"), 1)
    b = zlib.compress("\n".join(rows).encode("utf-8"), 1)
    sections = (a, lst, digest)
    return MAGIC + b"".join(_LEN.pack(len(p)) + p for p in sections) + b


def _layout(document: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """The scan, listing, digest and rows sections (the first, second and last compressed);
    ValueError for anything not built by :func:`build` (an index of an older format too)."""
    if not document.startswith(MAGIC):
        raise ValueError("not a search index")
    start, parts = len(MAGIC), []
    for _ in range(3):
        if start + _LEN.size > len(document):
            raise ValueError("not a search index")
        (n,) = _LEN.unpack_from(document, start)
        start += _LEN.size
        if start + n > len(document):
            raise ValueError("not a search index")
        parts.append(document[start : start + n])
        start += n
    if len(parts[2]) != DIGEST_BYTES:
        raise ValueError("not a search index")
    return parts[0], parts[1], parts[2], document[start:]


def _sections(document: bytes) -> tuple[bytes, bytes]:
    """The compressed scan and rows sections."""
    scan, _, _, rows = _layout(document)
    return scan, rows


def check(document: bytes) -> None:
    """ValueError unless ``document`` has the layout of this format (cheap: nothing decompressed)."""
    _layout(document)


def digest(document: bytes) -> bytes:
    """The digest of the record rows the index was built from (:func:`rows_digest`)."""
    return _layout(document)[2]


def _inflate(data: bytes) -> str:
    try:
        return zlib.decompress(data).decode("utf-8")
    except (zlib.error, UnicodeDecodeError):
        raise ValueError("not a search index") from None


def _rows(compressed: bytes) -> list[str]:
    return _inflate(compressed).split("\n")


def listing(document: bytes) -> tuple[list[str], list[str], list[int], list[int]]:
    """The paths, kinds, versions and updated_at times of every record of an index document, by
    path: one ``json.loads`` of the listing section (100,000 records: one parse of four flat
    arrays instead of one per record)."""
    _, packed, _, _ = _layout(document)
    try:
        paths, kinds, versions, updated = json.loads(_inflate(packed))
    except (ValueError, TypeError):
        raise ValueError("not a search index") from None
    columns = (paths, kinds, versions, updated)
    if not all(isinstance(c, list) and len(c) == len(paths) for c in columns):
        raise ValueError("not a search index")
    return paths, kinds, versions, updated


def entries(document: bytes) -> list[tuple[str, str, int, int]]:
    """``(path, kind, version, updated_at)`` of every record of an index document, by path."""
    return list(zip(*listing(document), strict=True))


def match(document: bytes, term: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of one client's index matching ``term`` (case-insensitive): ``{path, kind,
    version, updated_at, matched: [field names]}``, by path."""
    wanted = term.casefold()
    if not wanted or any(ord(c) < 32 for c in wanted):
        return []
    packed_scan, packed_rows = _sections(document)
    scan = _inflate(packed_scan)
    hits: list[int] = []
    line, last = 0, 0
    pos = scan.find(wanted)
    while pos != -1:
        line += scan.count("\n", last, pos)
        last = pos
        hits.append(line)
        end = scan.find("\n", pos)
        if end == -1:
            break
        pos = scan.find(wanted, end)
    if not hits:
        return []
    lines = _rows(packed_rows)
    if len(lines) <= hits[-1]:
        raise ValueError("not a search index")
    out = []
    for n in hits:
        path, record_kind, version, updated_at, pairs = json.loads(lines[n])
        if kind is not None and record_kind != kind:
            continue
        matched = sorted({name for name, value in pairs if wanted in value.casefold()})
        if matched:
            out.append(
                {
                    "path": path,
                    "kind": record_kind,
                    "version": version,
                    "updated_at": updated_at,
                    "matched": matched,
                }
            )
    return out
