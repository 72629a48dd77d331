"""The ``outbox`` table (0001_core.sql): blob operations waiting for the remote replica.

Every local blob write queues a 'put', every destroyed version or shred a 'delete'
(:mod:`vault.sync.outbox` drains it). Queued in the same transaction as the change they mirror, so
a commit never leaves the replica without its instruction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable


def queue_put(conn: sqlite3.Connection, names: Iterable[str], now: int) -> None:
    conn.executemany(
        "INSERT INTO outbox (op, blob_name, queued_at) VALUES ('put', ?, ?)", [(n, now) for n in names]
    )


def queue_puts(conn: sqlite3.Connection, rows: list[tuple[str, int]]) -> None:
    """:func:`queue_put` of ``(name, now)`` rows built by the caller (the bulk import's SQL thread)."""
    conn.executemany("INSERT INTO outbox (op, blob_name, queued_at) VALUES ('put', ?, ?)", rows)


def queue_delete(conn: sqlite3.Connection, names: Iterable[str], now: int) -> None:
    conn.executemany(
        "INSERT INTO outbox (op, blob_name, queued_at) VALUES ('delete', ?, ?)", [(n, now) for n in names]
    )


def queue_shred_deletes(conn: sqlite3.Connection, client_id: str, now: int) -> tuple[int, int]:
    """A shredded client's blobs: drop their pending uploads and queue one permanent delete each.
    Returns ``(uploads_dropped, deletes_queued)``."""
    dropped = conn.execute(
        "DELETE FROM outbox WHERE op = 'put' AND blob_name IN"
        " (SELECT blob_name FROM shred_blobs WHERE client_id = ?)",
        (client_id,),
    ).rowcount
    queued = conn.execute(
        "INSERT INTO outbox (op, blob_name, queued_at) SELECT 'delete', blob_name, ?"
        " FROM shred_blobs WHERE client_id = ?",
        (now, client_id),
    ).rowcount
    return dropped, queued


def shred_deletes_pending(conn: sqlite3.Connection, client_id: str) -> int:
    """Permanent remote deletes of a shredded client's blobs still waiting (a row leaves the
    outbox once the remote delete succeeded)."""
    return conn.execute(
        "SELECT count(*) FROM outbox o JOIN shred_blobs s ON s.blob_name = o.blob_name"
        " WHERE s.client_id = ? AND o.op = 'delete'",
        (client_id,),
    ).fetchone()[0]
