"""The ``records`` and ``record_versions`` tables (0001_core.sql): encrypted names and versions.

A record is ``(client_id, path_tag, meta_sealed, current_version)``; each version row holds the
wrapped record key (DEK) and the blob name, or NULLs for a delete marker. Written by the secrets
service (put, rm, import), the client-key rotation (re-wrap) and the shred (destroy); read by
doctor and sync. :func:`insert_versions` is the one ``INSERT INTO record_versions``.

Both tables' rows carry MACs (vault.store.rowmac): a record's id, client, path tag and current
version; a version's ids, whether it is a delete marker, its blob, size, time and author. Every
write here makes them, and the reads that decide what ``secret get`` (and export, list) return
check them: a rolled-back current version, a version turned into a delete marker or a record moved
to another client is an integrity failure, not an old value or "no such record"."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from vault.store import rowmac

#: the joined columns a reader needs to open a version (wrapped DEK, blob, who and when, and where
#: in its pack a packed version is: ``pack_offset`` NULL for a blob of its own; ``size`` bytes)
OPEN_COLUMNS = "v.wrapped_dek, v.blob_name, v.created_at, v.created_by, v.pack_offset, v.size"

# Rows are plain tuples, not NamedTuples: this module is on the ``secret get`` path, and creating a
# NamedTuple class costs about 0.1 ms at import (docs/performance.md).
#: ``(id, meta_sealed, current_version)``
RecordRow = tuple[int, bytes, int]
#: ``(record_id, version, key_version, wrapped_dek, blob_name, size, created_at, created_by,
#: pack_offset)``; ``wrapped_dek`` and ``blob_name`` are None for a delete marker; ``pack_offset``
#: is None for a version stored as a blob of its own, else where it starts in the pack
#: ``blob_name`` (docs/format.md section 9)
VersionRow = tuple[int, int, int, bytes | None, str | None, int, int, str, int | None]


def version_row(
    record_id: int,
    version: int,
    key_version: int,
    wrapped_dek: bytes | None,
    blob_name: str | None,
    size: int,
    created_at: int,
    created_by: str,
    pack_offset: int | None = None,
) -> VersionRow:
    return (
        record_id,
        version,
        key_version,
        wrapped_dek,
        blob_name,
        size,
        created_at,
        created_by,
        pack_offset,
    )


def find(conn: sqlite3.Connection, client_id: str, tag: bytes) -> RecordRow | None:
    """The client's record named by ``tag``, its MAC checked: one seek of the ``UNIQUE
    (client_id, path_tag)`` index. When the client has none, every client is looked at for the
    tag (one seek each, the same index): a tag is keyed by the client's own key, so a row holding
    it under another client id was moved there, and fails its MAC (an integrity failure, not
    "no such record"; docs/format.md section 8). Migration 0024 dropped the index on the tag
    alone that this second lookup used before: a bulk import paid one random index write per
    record for it."""
    row = conn.execute(
        "SELECT id, meta_sealed, current_version, mac FROM records WHERE client_id = ? AND path_tag = ?",
        (client_id, tag),
    ).fetchone()
    if row is not None:
        rid, meta_sealed, current, tag_mac = row
        rowmac.check(conn, "records", (rid, client_id, tag, current), tag_mac)
        return rid, meta_sealed, current
    for rid, cid, current, tag_mac in conn.execute(
        "SELECT id, client_id, current_version, mac FROM records"
        " WHERE client_id IN (SELECT id FROM clients) AND path_tag = ?",
        (tag,),
    ):
        rowmac.check(conn, "records", (rid, cid, tag, current), tag_mac)
    return None


def of_client(conn: sqlite3.Connection, client_id: str) -> list[tuple[int, bytes]]:
    """``(id, meta_sealed)`` of every record of the client, by id."""
    return conn.execute(
        "SELECT id, meta_sealed FROM records WHERE client_id = ? ORDER BY id", (client_id,)
    ).fetchall()


def count(conn: sqlite3.Connection, client_id: str) -> int:
    return conn.execute("SELECT count(*) FROM records WHERE client_id = ?", (client_id,)).fetchone()[0]


def existing_tags(conn: sqlite3.Connection, client_id: str, tags: list[bytes]) -> set[bytes]:
    """Which of ``tags`` already name a record of the client (batched indexed lookups)."""
    found: set[bytes] = set()
    for start in range(0, len(tags), 500):
        batch = tags[start : start + 500]
        found.update(
            bytes(r[0])
            for r in conn.execute(
                "SELECT path_tag FROM records WHERE client_id = ? AND path_tag IN"  # noqa: S608 - only "?" placeholders are generated; the tags are bound
                f" ({','.join('?' * len(batch))})",
                (client_id, *batch),
            )
        )
    return found


def insert_record(conn: sqlite3.Connection, client_id: str, tag: bytes, now: int) -> int:
    """A new record row (MACed); its sealed name is set next (the row id is part of the name's AAD)."""
    rid = rowmac.insert(
        conn,
        "records",
        {
            "client_id": client_id,
            "path_tag": tag,
            "meta_sealed": b"",
            "current_version": 0,
            "created_at": now,
            "updated_at": now,
        },
    )
    if rid is None:  # pragma: no cover - a plain INSERT inserts or raises
        raise sqlite3.IntegrityError("record not inserted")
    return rid


def next_record_id(conn: sqlite3.Connection) -> int:
    """The id the next insert would get (AUTOINCREMENT: above both the sequence and the largest id)."""
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    top = conn.execute("SELECT max(id) FROM records").fetchone()[0]
    return max(seq[0] if seq else 0, top or 0) + 1


INSERT_RECORDS = (
    "INSERT INTO records (id, client_id, path_tag, meta_sealed, current_version,"
    " created_at, updated_at, mac) VALUES (?, ?, ?, ?, 1, ?, ?, ?)"
)
INSERT_VERSIONS = (
    "INSERT INTO record_versions (record_id, version, key_version, wrapped_dek, blob_name,"
    " size, created_at, created_by, pack_offset, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def insert_records(conn: sqlite3.Connection, rows: Iterable[tuple[int, str, bytes, bytes, int, int]]) -> None:
    """New records with ids allocated up front: ``(id, client_id, tag, meta_sealed, created, updated)``,
    each at version 1 (the bulk import)."""
    conn.executemany(INSERT_RECORDS, maced_records(conn, rows))


def maced_records(conn: sqlite3.Connection, rows: Iterable[tuple[int, str, bytes, bytes, int, int]]) -> list:
    """:func:`insert_records`'s parameters (each row with its MAC) for :data:`INSERT_RECORDS`."""
    mac = rowmac.macer(conn).mac
    head, tail = rowmac.table_prefix("records"), rowmac.encode_value(1)
    int_value, blob_value, encode_value = rowmac.int_value, rowmac.blob_value, rowmac.encode_value
    clients: dict[str, bytes] = {}  # E(client_id), once per batch
    out = []
    for r in rows:
        client = clients.get(r[1])
        if client is None:
            client = clients[r[1]] = encode_value(r[1])
        # rowmac.encode("records", (id, client_id, path_tag, 1)), the shared parts encoded once
        out.append((*r, mac(head + int_value(r[0]) + client + blob_value(r[2]) + tail)))
    return out


def set_meta(conn: sqlite3.Connection, record_id: int, meta_sealed: bytes, tag: bytes | None = None) -> None:
    if tag is None:
        conn.execute("UPDATE records SET meta_sealed = ? WHERE id = ?", (meta_sealed, record_id))
    else:
        rowmac.update(
            conn, "records", "path_tag = ?, meta_sealed = ?", (tag, meta_sealed), "id = ?", (record_id,)
        )


def set_current(conn: sqlite3.Connection, record_id: int, version: int, now: int) -> None:
    rowmac.update(
        conn, "records", "current_version = ?, updated_at = ?", (version, now), "id = ?", (record_id,)
    )


def next_version(conn: sqlite3.Connection, record_id: int) -> int:
    top = conn.execute(
        "SELECT max(version) FROM record_versions WHERE record_id = ?", (record_id,)
    ).fetchone()
    return int(top[0] or 0) + 1


def insert_versions(conn: sqlite3.Connection, rows: Iterable[VersionRow]) -> None:
    """The one ``INSERT INTO record_versions`` (one version, or a batch), each row MACed."""
    conn.executemany(INSERT_VERSIONS, maced_versions(conn, rows))


def maced_versions(conn: sqlite3.Connection, rows: Iterable[VersionRow]) -> list:
    """:func:`insert_versions`'s parameters (each row with its MAC) for :data:`INSERT_VERSIONS`
    (the bulk import runs them itself, on its SQL thread)."""
    mac = rowmac.macer(conn).mac
    head, int_value, encode_value = (
        rowmac.table_prefix("record_versions"),
        rowmac.int_value,
        rowmac.encode_value,
    )
    shared: dict[tuple, tuple[bytes, bytes]] = {}  # the values a pack's rows share, encoded once
    out = []
    for r in rows:
        # rowmac.encode("record_versions", _version_values(r)), the shared parts encoded once
        if r[8] is None:  # a blob of its own (a NULL pack_offset is left out)
            message = rowmac.encode("record_versions", _version_values(r))
        else:
            key = (r[3] is None, r[4], r[6], r[7])
            parts = shared.get(key)
            if parts is None:
                parts = shared[key] = (
                    encode_value(key[0]) + encode_value(r[4]),
                    encode_value(r[6]) + encode_value(r[7]),
                )
            message = (
                head
                + int_value(r[0])
                + int_value(r[1])
                + parts[0]
                + int_value(r[5])
                + parts[1]
                + int_value(r[8])
            )
        out.append((*r, mac(message)))
    return out


def _version_values(r: VersionRow) -> tuple:
    """The MACed values of a version row (rowmac.TABLES order)."""
    return (r[0], r[1], r[3] is None, r[4], r[5], r[6], r[7], r[8])


def insert_version(conn: sqlite3.Connection, row: VersionRow) -> None:
    insert_versions(conn, (row,))


def version(conn: sqlite3.Connection, record_id: int, number: int) -> tuple | None:
    """``(wrapped_dek, blob_name, created_at, created_by, pack_offset, size)`` of one version
    (:data:`OPEN_COLUMNS`), or None; the row's MAC checked (a version turned into a delete marker,
    or a packed version's offset or length edited, is an integrity failure)."""
    row = conn.execute(
        "SELECT wrapped_dek, blob_name, created_at, created_by, pack_offset, size, mac FROM record_versions"
        " WHERE record_id = ? AND version = ?",
        (record_id, number),
    ).fetchone()
    if row is None:
        return None
    wrapped, blob, created, by, offset, size, tag = row
    rowmac.check(
        conn, "record_versions", (record_id, number, wrapped is None, blob, size, created, by, offset), tag
    )
    return row[:6]


def versions(conn: sqlite3.Connection, record_id: int) -> list[tuple]:
    """``(version, blob_name, size, created_at, created_by)`` of every kept version, oldest first."""
    return conn.execute(
        "SELECT version, blob_name, size, created_at, created_by FROM record_versions"
        " WHERE record_id = ? ORDER BY version",
        (record_id,),
    ).fetchall()


def readable_versions(conn: sqlite3.Connection, record_id: int) -> list[tuple]:
    """``(version, wrapped_dek, blob_name, created_at, created_by, pack_offset, size)`` of every
    version with a blob (the version, then :data:`OPEN_COLUMNS`)."""
    return conn.execute(
        "SELECT version, wrapped_dek, blob_name, created_at, created_by, pack_offset, size"
        " FROM record_versions WHERE record_id = ? AND blob_name IS NOT NULL",
        (record_id,),
    ).fetchall()


def wrapped_deks(conn: sqlite3.Connection, record_id: int) -> list[tuple[int, bytes]]:
    return conn.execute(
        "SELECT version, wrapped_dek FROM record_versions WHERE record_id = ? AND wrapped_dek IS NOT NULL",
        (record_id,),
    ).fetchall()


def rewrap(conn: sqlite3.Connection, record_id: int, number: int, wrapped: bytes, key_version: int) -> None:
    conn.execute(
        "UPDATE record_versions SET wrapped_dek = ?, key_version = ? WHERE record_id = ? AND version = ?",
        (wrapped, key_version, record_id, number),
    )


def listing_summary(
    conn: sqlite3.Connection, client_id: str
) -> tuple[int, int, bytes, bytes, bytes, bytes, bytes]:
    """Every record row of the client, deleted ones too, summed up by SQLite in one row, with no
    Python row per record (issue 16: 100 clients x 1,000 records): ``(count, typed, tags, macs,
    versions, updated, states)``, where ``typed`` counts the rows whose path tag and MAC are 32-byte
    BLOBs and whose current version and time are INTEGERs, ``tags`` and ``macs`` are the rows'
    ``path_tag`` and ``mac`` concatenated, ``versions`` and ``updated`` their ``current_version``
    and ``updated_at``, decimal and joined by ``,``, and ``states`` one byte per row, ``L`` for a
    live record, ``D`` for one whose current version is a delete marker and ``M`` for one whose
    current version row is missing (never sealed: the rebuild refuses it), all in record id
    order: the input of :func:`vault.records.search.listing_digest`. No row MAC checked (``secret
    list``, ``search`` and ``list --all`` compare the digest with the one sealed into the search
    index, computed from the rows the rebuild checked, and rebuild it through
    :func:`current_versions` on any difference: guarantee 29). The deleted rows are in it (review9
    R9-1): a live record edited to look deleted, with an older index put back that never listed
    it, otherwise left the live rows exactly as the older index had them; so are the rows whose
    current version row is missing (review10 R10-3: a version row deleted, or ``current_version``
    pointed past the versions, left the row out of an inner join, and an older index that never
    listed it was believed).

    The records rows are read in table order (``records_client``, 0028_listfast.sql: by client, then
    rowid, which is the record id), the current version row's existence from the primary key of
    ``record_versions``, and the delete markers from their partial index. SQL does not promise that
    ``group_concat`` sees the rows in the order of the index it walks (SQLite 3.40 has no
    ``group_concat(... ORDER BY)``); it does in practice, and if it ever did not, the digest would
    differ and every listing would rebuild the index: slower, never wrong, since correctness does
    not depend on the order."""
    count, typed, tags, macs, versions, updated, states = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE typeof(r.path_tag) = 'blob' AND length(r.path_tag) = 32"
        " AND typeof(r.mac) = 'blob' AND length(r.mac) = 32 AND typeof(r.current_version) = 'integer'"
        " AND typeof(r.updated_at) = 'integer'), CAST(group_concat(r.path_tag, '') AS BLOB),"
        " CAST(group_concat(r.mac, '') AS BLOB), CAST(group_concat(r.current_version, ',') AS BLOB),"
        " CAST(group_concat(r.updated_at, ',') AS BLOB), CAST(group_concat(CASE WHEN v.record_id IS NULL"
        " THEN 'M' WHEN EXISTS (SELECT 1 FROM record_versions m INDEXED BY record_versions_markers"
        " WHERE m.record_id = r.id AND m.version = r.current_version AND m.blob_name IS NULL) THEN 'D'"
        " ELSE 'L' END, '') AS BLOB) FROM records r INDEXED BY records_client LEFT JOIN record_versions v"
        " ON v.record_id = r.id AND v.version = r.current_version WHERE r.client_id = ?",
        (client_id,),
    ).fetchone()
    return count, typed, tags or b"", macs or b"", versions or b"", updated or b"", states or b""


def current_versions(
    conn: sqlite3.Connection, client_id: str, checked: dict[int, tuple[bytes, bytes]] | None = None
) -> list[tuple]:
    """Each record of the client with its current version: ``(id, meta_sealed, current_version,
    updated_at, *OPEN_COLUMNS)``; both rows' MACs checked. A record whose current version row is
    missing is an integrity failure, not left out. ``checked``, when given, receives each record's
    checked ``(path_tag, row MAC)`` by record id (the search index seals their digest:
    :func:`listing_summary`)."""
    out = []
    for row in conn.execute(
        "SELECT r.id, r.meta_sealed, r.current_version, r.updated_at, "  # noqa: S608 - a constant column list; values are bound
        f"{OPEN_COLUMNS}, r.path_tag, r.mac, v.mac, v.version FROM records r LEFT JOIN"
        " record_versions v ON v.record_id = r.id AND v.version = r.current_version WHERE r.client_id = ?",
        (client_id,),
    ):
        rid, _, current, _, wrapped, blob, created, by, offset, size, tag, record_mac, v_mac, number = row
        rowmac.check(conn, "records", (rid, client_id, tag, current), record_mac)
        if checked is not None:
            checked[rid] = (tag, record_mac)
        if number is None:
            raise rowmac.RowTampered(
                f"integrity failure: record {rid} of client {client_id}: its current version"
                f" {current} is missing; run cvault doctor"
            )
        rowmac.check(
            conn,
            "record_versions",
            (rid, current, wrapped is None, blob, size, created, by, offset),
            v_mac,
        )
        out.append(row[:10])
    return out


def by_blob_name(conn: sqlite3.Connection, name: str) -> list[tuple]:
    """``(client_id, record_id, version, key_version, wrapped_dek, pack_offset, size)`` of the
    version stored as ``name``, or of every version stored in the pack ``name`` (empty: none)."""
    return conn.execute(
        "SELECT r.client_id, r.id, v.version, v.key_version, v.wrapped_dek, v.pack_offset, v.size"
        " FROM record_versions v JOIN records r ON r.id = v.record_id WHERE v.blob_name = ?",
        (name,),
    ).fetchall()


def unreferenced(conn: sqlite3.Connection, names: Iterable[str]) -> list[str]:
    """Which of ``names`` no version row refers to any more, each once, in order: the blobs of
    destroyed versions to delete. A version's own blob is unreferenced once its row is gone; a
    pack only when no version stored in it is left (docs/format.md section 9)."""
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        if not conn.execute("SELECT 1 FROM record_versions WHERE blob_name = ? LIMIT 1", (name,)).fetchone():
            out.append(name)
    return out


def blob_names(conn: sqlite3.Connection) -> set[str]:
    """Every blob a kept version refers to (its own, and the attachments it lists)."""
    names = {r[0] for r in conn.execute("SELECT blob_name FROM record_versions WHERE blob_name IS NOT NULL")}
    names.update(r[0] for r in conn.execute("SELECT DISTINCT blob_name FROM attachment_refs"))
    return names


def prune(conn: sqlite3.Connection, record_id: int, keep: int) -> list[str]:
    """Delete the versions beyond the newest ``keep`` (their DEKs with them); returns their blobs."""
    old = conn.execute(
        "SELECT version, blob_name FROM record_versions WHERE record_id = ?"
        " ORDER BY version DESC LIMIT -1 OFFSET ?",
        (record_id, keep),
    ).fetchall()
    if not old:
        return []
    conn.execute("DELETE FROM record_versions WHERE record_id = ? AND version <= ?", (record_id, old[0][0]))
    # the attachments only the pruned versions listed go with them
    before = attachment_blobs(conn, record_id)
    conn.execute("DELETE FROM attachment_refs WHERE record_id = ? AND version <= ?", (record_id, old[0][0]))
    gone = sorted(before - attachment_blobs(conn, record_id))
    return unreferenced(conn, [b for _, b in old if b]) + gone


def destroy(conn: sqlite3.Connection, record_id: int) -> tuple[int, list[str], list[str]]:
    """Delete one record, every version and its attachment references (``secret rm --purge``);
    returns how many versions with a blob were destroyed, the blobs to delete (each version's
    own; a pack only once no version stored in it is left) and the attachments' blobs."""
    blobs = [
        r[0]
        for r in conn.execute(
            "SELECT blob_name FROM record_versions WHERE record_id = ? AND blob_name IS NOT NULL",
            (record_id,),
        )
    ]
    attached = sorted(attachment_blobs(conn, record_id))
    conn.execute("DELETE FROM attachment_refs WHERE record_id = ?", (record_id,))
    conn.execute("DELETE FROM record_versions WHERE record_id = ?", (record_id,))
    conn.execute("DELETE FROM records WHERE id = ?", (record_id,))
    return len(blobs), unreferenced(conn, blobs), attached


# --- attachments (0009_records.sql: attachment_refs) ---------------------------------------------


def attachment_blobs(conn: sqlite3.Connection, record_id: int) -> set[str]:
    """The attachment blobs the record's kept versions list."""
    return {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT blob_name FROM attachment_refs WHERE record_id = ?", (record_id,)
        )
    }


def insert_attachment_refs(
    conn: sqlite3.Connection, record_id: int, version: int, refs: Iterable[tuple[str, int]]
) -> None:
    """Which attachment blobs ``(blob_name, size)`` a new version lists (its document holds their keys)."""
    conn.executemany(
        "INSERT INTO attachment_refs (record_id, version, blob_name, size) VALUES (?, ?, ?, ?)",
        [(record_id, version, name, size) for name, size in refs],
    )


def by_attachment_blob(conn: sqlite3.Connection, name: str) -> tuple | None:
    """``(client_id, record_id, version)`` of the newest kept version listing attachment ``name``."""
    return conn.execute(
        "SELECT r.client_id, r.id, a.version FROM attachment_refs a JOIN records r ON r.id = a.record_id"
        " WHERE a.blob_name = ? ORDER BY a.version DESC LIMIT 1",
        (name,),
    ).fetchone()


def client_attachment_count(conn: sqlite3.Connection, client_id: str) -> int:
    """How many distinct attachment blobs the client's records list (the shred certificate)."""
    return conn.execute(
        "SELECT count(DISTINCT a.blob_name) FROM attachment_refs a JOIN records r ON r.id = a.record_id"
        " WHERE r.client_id = ?",
        (client_id,),
    ).fetchone()[0]


def destroy_client(conn: sqlite3.Connection, client_id: str) -> tuple[int, int]:
    """Delete every record key (versions) and encrypted name (records) of a client: shred steps
    (b) and (e). Returns ``(record_versions, records)`` deleted."""
    conn.execute(
        "DELETE FROM attachment_refs WHERE record_id IN (SELECT id FROM records WHERE client_id = ?)",
        (client_id,),
    )
    destroy_search_index(conn, client_id)
    versions = conn.execute(
        "DELETE FROM record_versions WHERE record_id IN (SELECT id FROM records WHERE client_id = ?)",
        (client_id,),
    ).rowcount
    records = conn.execute("DELETE FROM records WHERE client_id = ?", (client_id,)).rowcount
    return versions, records


# --- the search index (0009_records.sql) -------------------------------------------------------


def search_indexes(conn: sqlite3.Connection, client_ids: list[str]) -> dict[str, tuple[int, bytes]]:
    """``client_id -> (key_version, sealed)`` of the stored indexes (a client whose records
    changed since has none: the triggers of 0009_records.sql delete it)."""
    out: dict[str, tuple[int, bytes]] = {}
    for start in range(0, len(client_ids), 500):
        batch = client_ids[start : start + 500]
        for client_id, key_version, sealed in conn.execute(
            "SELECT client_id, key_version, sealed FROM search_index"  # noqa: S608 - only "?" placeholders are generated
            f" WHERE client_id IN ({','.join('?' * len(batch))})",
            batch,
        ):
            # no row MAC covers the index (its AEAD does): a file writer's TEXT or INTEGER is a
            # damaged index like any other, rebuilt, never converted (bytes(10**13) was a
            # MemoryError from secret list/search: review9 R9-5)
            out[client_id] = (key_version, sealed if type(sealed) is bytes else b"")
    return out


def with_records(conn: sqlite3.Connection, client_ids: list[str]) -> set[str]:
    """Which of the clients have at least one record (indexed lookups)."""
    return {
        cid
        for cid in client_ids
        if conn.execute("SELECT 1 FROM records WHERE client_id = ? LIMIT 1", (cid,)).fetchone()
    }


def put_search_index(
    conn: sqlite3.Connection, client_id: str, key_version: int, sealed: bytes, now: int
) -> None:
    conn.execute(
        "INSERT INTO search_index (client_id, key_version, sealed, built_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (client_id) DO UPDATE SET key_version = excluded.key_version,"
        " sealed = excluded.sealed, built_at = excluded.built_at",
        (client_id, key_version, sealed, now),
    )


def destroy_search_index(conn: sqlite3.Connection, client_id: str) -> int:
    return conn.execute("DELETE FROM search_index WHERE client_id = ?", (client_id,)).rowcount
