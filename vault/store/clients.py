"""The ``clients`` table (0001_core.sql, 0004_sla.sql): one typed row and its queries.

Read by the policy's facts, the secrets, SLA, shred, access and doctor code; written by the client
service (create, rotate), the SLA service (renew, expire, approve) and the shred (state)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from vault.clock import from_epoch, stored_epoch
from vault.store import rowmac
from vault.tuples import NamedTuple

#: every read of a client row checks its MAC (vault.store.rowmac: id, name, SLA end, grace, key
#: version, shred state)
CLIENT_COLUMNS = "id, name, sla_end, grace_days, current_key_version, shred_state, created_at, mac"


class ClientRow(NamedTuple):
    id: str
    name: str
    sla_end: datetime
    grace_days: int
    key_version: int
    shred_state: str | None
    created_at: datetime

    @property
    def id_bytes(self) -> bytes:
        return bytes.fromhex(self.id)

    def state(self, now: datetime) -> str:
        """active -> expired (SLA end passed) -> shred_pending (grace passed) -> shredding/shredded."""
        if self.shred_state:
            return self.shred_state
        if now < self.sla_end:
            return "active"
        if now < self.sla_end + timedelta(days=self.grace_days):
            return "expired"
        return "shred_pending"


def client_from_row(conn: sqlite3.Connection, row: tuple) -> ClientRow:
    """A row of ``SELECT CLIENT_COLUMNS``, its MAC checked (RowTampered if it fails)."""
    rowmac.check(conn, "clients", row[:6], row[7])
    # created_at (row[6]) is outside the MAC: read strictly (review7 R7-4)
    return ClientRow(
        row[0], row[1], from_epoch(row[2]), row[3], row[4], row[5], stored_epoch(row[6], "clients.created_at")
    )


def by_name(conn: sqlite3.Connection, name: str) -> ClientRow | None:
    row = conn.execute(f"SELECT {CLIENT_COLUMNS} FROM clients WHERE name = ?", (name,)).fetchone()  # noqa: S608 - a constant column list; values are bound
    return client_from_row(conn, row) if row else None


def by_id(conn: sqlite3.Connection, client_id: str) -> ClientRow | None:
    row = conn.execute(f"SELECT {CLIENT_COLUMNS} FROM clients WHERE id = ?", (client_id,)).fetchone()  # noqa: S608 - a constant column list; values are bound
    return client_from_row(conn, row) if row else None


def all_clients(conn: sqlite3.Connection, where: str = "", params: tuple = ()) -> list[ClientRow]:
    """Every client (``where``: an optional SQL condition on the clients table), by name."""
    sql = f"SELECT {CLIENT_COLUMNS} FROM clients"  # noqa: S608 - constant columns; callers pass a constant condition, values in params
    if where:
        sql += f" WHERE {where}"
    return [client_from_row(conn, r) for r in conn.execute(sql + " ORDER BY name", params)]


def key_state(conn: sqlite3.Connection, client_id: str) -> tuple | None:
    """What a key rotation changes: (client-key version, current custody version, shred state)."""
    return conn.execute(
        "SELECT c.current_key_version, (SELECT version FROM client_custody WHERE client_id = c.id"
        " AND state = 'current'), c.shred_state FROM clients c WHERE c.id = ?",
        (client_id,),
    ).fetchone()


def wrapped_key(conn: sqlite3.Connection, client_id: str, version: int) -> bytes | None:
    """The wrapped client key as stored (a tampered row may hold text: the unwrap refuses it)."""
    row = conn.execute(
        "SELECT wrapped FROM client_keys WHERE client_id = ? AND version = ?", (client_id, version)
    ).fetchone()
    return None if row is None else row[0]


def insert_key(
    conn: sqlite3.Connection, client_id: str, version: int, wrapped: bytes, fingerprint: str, now: int
) -> None:
    conn.execute(
        "INSERT INTO client_keys (client_id, version, wrapped, fingerprint, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (client_id, version, wrapped, fingerprint, now),
    )


def destroy_keys(conn: sqlite3.Connection, client_id: str, below_version: int | None = None) -> int:
    """Delete the client's key versions (all, or those below ``below_version``); returns how many."""
    if below_version is None:
        return conn.execute("DELETE FROM client_keys WHERE client_id = ?", (client_id,)).rowcount
    return conn.execute(
        "DELETE FROM client_keys WHERE client_id = ? AND version < ?", (client_id, below_version)
    ).rowcount
