"""``secret search``: the non-secret terms of a record and a client's sealed search index.

What is searchable (and nothing else): the path, the kind, and the kind's ``search`` fields of
:data:`vault.records.FIELDS` (host, URL, username, SSID, site, tags, ...), custom field names, and
the values of non-secret custom fields (their first :data:`MAX_TERM` characters). Secret fields,
secret custom values and TOTP seeds never enter the index.

The terms of a record are kept in its sealed metadata (``meta["s"]``, written with every version:
the index can be rebuilt from the metadata alone, without opening a record's secret fields). The
per-client index is one document: a scan section (one casefolded line of texts per live
record), a listing section (the path, kind, version and time columns as four JSON arrays, which
``secret list`` reads alone), the field names of each scan line's texts (:func:`build`), and
the digest of the record rows it was built from (:func:`rows_digest`: each row's path tag,
version, time, row MAC and whether it is live), which the listings compare with the digest of the
records table now (:func:`listing_digest`) before they believe it; it is sealed under the client
key by the secrets service (docs/format.md, "Search index").
Matching is a case-insensitive (``str.casefold``) substring test on the scan lines, confirmed on
each text of a hit line, which the field names section names.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from vault import crypto
from vault.records import CUSTOM, SEARCH_FIELDS

#: the first bytes of an index document (docs/format.md, "Search index"); CVSI1 (no listing),
#: CVSI2 (no row MACs), CVSI3 (the name tags and row MACs themselves instead of their digest) and
#: CVSI4 (one JSON line per record naming its fields and texts instead of section N) are not read:
#: such an index is rebuilt, once
MAGIC = b"CVSI5"
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


def _scan_text(text: str) -> str:
    """A text as the scan section holds it: casefolded, its line breaks and U+001F (the
    separators) as U+001E, which no term holds (control characters are refused)."""
    return text.casefold().replace("\n", "\x1e").replace("\r", "\x1e").replace("\x1f", "\x1e")


def build(records: list[tuple[str, str, int, int, dict[str, Any]]], digest: bytes) -> bytes:
    """One client's index document from ``(path, kind, version, updated_at, terms)`` per live
    record and ``digest``, the :func:`rows_digest` of the rows they were read from: ``MAGIC || u32
    len(A) || A || u32 len(L) || L || u32 len(D) || D || N`` where A is the zlib-compressed scan
    section (one line per record, its texts as :func:`_scan_text` gives them joined by U+001F), L
    the zlib-compressed listing (one JSON array of four arrays: the paths, kinds, versions and
    updated_at times), D the digest (32 bytes), and N the zlib-compressed field names: one JSON
    array ``[shapes, shape_of]``, ``shapes`` the distinct lists of field names (the name of each
    text of a scan line, in its order) and ``shape_of`` each record's index into them; A, L and
    ``shape_of`` in the same order, by path. Only A is decompressed unless a term hits (then L
    and N, not one JSON line per hit: issue 16's 8,400 hits); ``secret list`` reads only L; every
    listing compares D first."""
    if type(digest) is not bytes or len(digest) != DIGEST_BYTES:
        raise ValueError("a digest is 32 bytes")
    records = sorted(records, key=lambda r: r[0])
    scan: list[str] = []
    columns: list[list[Any]] = [[], [], [], []]
    shapes: dict[tuple[str, ...], int] = {}
    shape_of: list[int] = []
    for path, kind, version, updated_at, terms in records:
        for column, value in zip(columns, (path, kind, version, updated_at), strict=True):
            column.append(value)
        pairs = _pairs(path, kind, terms)
        scan.append("\x1f".join(_scan_text(v) for _, v in pairs))
        shape_of.append(shapes.setdefault(tuple(n for n, _ in pairs), len(shapes)))
    a = zlib.compress("\n".join(scan).encode("utf-8"), 1)
    listing = json.dumps(columns, ensure_ascii=False, separators=(",", ":"))
    lst = zlib.compress(listing.encode("utf-8"), 1)
    names = json.dumps([[list(s) for s in shapes], shape_of], ensure_ascii=False, separators=(",", ":"))
    n = zlib.compress(names.encode("utf-8"), 1)
    sections = (a, lst, digest)
    return MAGIC + b"".join(_LEN.pack(len(p)) + p for p in sections) + n


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
    version, updated_at, matched: [field names]}``, by path. A hit's fields are those of its scan
    line's texts that hold the term (a term has no control character, so it is in a text exactly
    when it is in the text's casefolded value, and never spans two), named by section N; the
    rest is taken from L. No JSON line per hit (issue 16: a term in 8,400 records)."""
    wanted = term.casefold()
    if not wanted or any(ord(c) < 32 for c in wanted):
        return []
    packed_scan, _, _, packed_names = _layout(document)
    scan = _inflate(packed_scan)
    # per hit line: (line number, texts on it, the indexes of the texts holding the term)
    hits: list[tuple[int, int, list[int]]] = []
    line, last = 0, 0
    pos = scan.find(wanted)
    while pos != -1:
        line += scan.count("\n", last, pos)
        last = pos
        start = scan.rfind("\n", 0, pos) + 1
        end = scan.find("\n", pos)
        if end == -1:
            end = len(scan)
        held = [scan.count("\x1f", start, pos)]
        more = scan.find(wanted, pos + 1, end)
        while more != -1:
            held.append(scan.count("\x1f", start, more))
            more = scan.find(wanted, more + 1, end)
        hits.append((line, scan.count("\x1f", start, end) + 1, held))
        pos = scan.find(wanted, end)
    if not hits:
        return []
    paths, kinds, versions, updated = listing(document)
    try:
        shapes, shape_of = json.loads(_inflate(packed_names))
        if len(shape_of) != len(paths) or len(paths) <= hits[-1][0]:
            raise ValueError("not a search index")
        out = []
        for n, texts, held in hits:
            record_kind = kinds[n]
            if kind is not None and record_kind != kind:
                continue
            names = shapes[shape_of[n]]
            if len(names) != texts:
                raise ValueError("not a search index")
            out.append(
                {
                    "path": paths[n],
                    "kind": record_kind,
                    "version": versions[n],
                    "updated_at": updated[n],
                    "matched": [names[held[0]]] if len(held) == 1 else sorted({names[i] for i in held}),
                }
            )
    except (TypeError, IndexError, KeyError):
        raise ValueError("not a search index") from None
    return out
