"""Row MACs: the rows a decision reads carry a MAC under a root-derived key (issue 12).

Someone who can write ``vault.db`` but holds no unseal secret (docs/security.md, attacker A4) must
not be able to edit it into granting access. Every row whose values the policy (or ``secret get``)
reads carries, in its ``mac`` column, ``HMAC-SHA256(K_row, encoding)`` where ``K_row`` is the
purpose key ``row-mac`` (``vault.keys.PURPOSE_ROW_MAC``: HKDF of the root key) and the encoding
(docs/format.md, "Row MACs") is canonical: the table name, then each covered column of
:data:`TABLES` in order, each value typed and length-prefixed. A row whose MAC is missing or wrong
is an integrity failure (:class:`RowTampered`, exit 6), never a value.

API (every module that writes or reads such a row uses it; ``conn`` is a connection of
:class:`vault.store.db.Database`, which carries the vault's keyring: sealed, every call raises
VaultSealed)::

    from vault.store import rowmac

    # a new row, MACed by its rowid (ids known only now); None if OR IGNORE ignored it. insert
    # and update MAC the values their statement wrote (RETURNING), never values read back, and
    # check the stored row against them (a planted trigger: docs/security.md, guarantee 23)
    rowid = rowmac.insert(conn, "users", {"name": name, "created_at": t, "created_by": who})
    # change covered columns: verify the rows' MACs, update, MAC them again (never MAC a row
    # whose old MAC failed: that would launder a tampered value)
    rowmac.update(conn, "users", "disabled = ?", (1,), "id = ?", (user_id,))
    # a read: the covered values as read (in TABLES order) and the stored mac
    rowmac.check(conn, "users", (uid, name, disabled, locked, trained), mac)
    # verified rows of the covered columns (plus rowid first), for reads that need no others
    rows = rowmac.select(conn, "assignments", "user_id = ? AND ended_at IS NULL", (uid,))
    # the MAC of values in hand (bulk inserts that write the mac column themselves)
    tag = rowmac.mac(conn, "records", (record_id, client_id, path_tag, 1))

A table joins by adding a ``mac BLOB`` column in its migration and a :class:`Table` entry to
:data:`TABLES` (the columns: its ids and every value a decision reads; a column that changes
often and decides nothing is better left out). :func:`backfill` (the first unseal after the
upgrade, vault.facade) MACs every row of every table once; ``doctor`` checks them all
(:func:`verify_table`).

What a row MAC cannot tell: a row deleted, or a whole row replaced by an older authentic copy of
itself (a rollback of that row, or of the whole folder): docs/security.md, "File writer".
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

from vault import crypto
from vault.errors import IntegrityFailure, VaultSealed
from vault.tuples import NamedTuple

LABEL = b"cvault/v1/row-mac"
_U32 = struct.Struct(">I").pack
_I64 = struct.Struct(">q").pack
_NULL, _INT, _TEXT, _BLOB = b"\x00", b"\x01", b"\x02", b"\x03"


class Table(NamedTuple):
    name: str
    #: SQL expressions over the table's columns, in MAC order (ids first)
    columns: tuple[str, ...]
    #: how a failure names the row: the column giving its id
    id_column: str

    @property
    def select(self) -> str:
        return ", ".join(self.columns)


#: every table whose rows carry a MAC, and what the MAC covers (docs/format.md, "Row MACs")
TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        # the policy's meta facts: single-operator mode, the settings (session lengths, step-up
        # window, minimum grace) and the row-MAC marker itself
        Table("meta", ("key", "value"), "key"),
        Table(
            "users",
            ("id", "name", "disabled", "locked_until", "training_valid_until", "password_hash IS NULL"),
            "id",
        ),
        Table("user_roles", ("user_id", "role", "granted_at", "granted_by"), "user_id"),
        Table(
            "sessions",
            ("token_hash", "user_id", "created_at", "last_seen", "stepup_at", "ended_at", "token_mac"),
            "user_id",
        ),
        Table(
            "assignments",
            ("id", "client_id", "user_id", "created_at", "created_by", "ends_at", "ended_at"),
            "id",
        ),
        Table(
            "clients",
            ("id", "name", "sla_end", "grace_days", "current_key_version", "shred_state"),
            "name",
        ),
        Table("records", ("id", "client_id", "path_tag", "current_version"), "id"),
        Table(
            "record_versions",
            (
                "record_id",
                "version",
                "wrapped_dek IS NULL",  # the delete marker
                "blob_name",
                "size",
                "created_at",
                "created_by",
                # a packed version's place in its pack (migration 0024); not encoded when NULL,
                # so every version written before (and every unpacked one) keeps its MAC
                "pack_offset",
            ),
            "record_id",
        ),
        # teams (0011_moving_in.sql; docs/identity.md "Teams"): need-to-know through a team
        Table("teams", ("id", "name", "removed_at"), "id"),
        Table("team_members", ("id", "team_id", "user_id", "added_at", "removed_at"), "id"),
        Table(
            "team_assignments",
            ("id", "client_id", "team_id", "created_at", "created_by", "ends_at", "ended_at"),
            "id",
        ),
        # two-person requests (early shred, minimum grace): who asked decides who may approve
        Table(
            "shred_requests",
            (
                "id",
                "client_id",
                "requested_by",
                "requested_at",
                "reason",
                "approved_by",
                "approved_at",
                "orig_sla_end",
                "orig_grace_days",
                "cancelled_by",
                "cancelled_at",
                "cancel_reason",
                "executed_at",
            ),
            "id",
        ),
        Table(
            "setting_requests",
            (
                "id",
                "name",
                "value",
                "requested_by",
                "requested_at",
                "approved_by",
                "approved_at",
                "cancelled_at",
            ),
            "id",
        ),
        Table(
            "account_requests",
            (
                "id",
                "user_id",
                "kind",
                "requested_by",
                "requested_at",
                "approved_by",
                "approved_at",
                "mode",
                "confirmed_by",
                "confirmed_at",
            ),
            "id",
        ),
        # PSA integrations (0011_moving_in.sql; docs/sla.md "Contract events"): which names may
        # sign contract events, with which sealed secret, and whether they are still enabled.
        # Covered since coverage 2 (:data:`COVERAGE`): an older vault gets these on its next unseal
        Table(
            "integrations",
            ("id", "name", "secret_sealed", "created_at", "created_by", "disabled_at"),
            "id",
        ),
        # the shred state machine (vault/sla/shred.py; independent review R11): the step says which
        # destructions are done, the manifest what to destroy, the result the custodian's
        # receipts the certificate requires. The step times decide nothing. Covered since coverage 3
        Table(
            "shred_jobs",
            (
                "client_id",
                "step",
                "trigger",
                "request_id",
                "performed_by",
                "sla_end",
                "grace_days",
                "manifest",
                "result",
            ),
            "client_id",
        ),
        # custody (0005_custody.sql; docs/sla.md section 6): where each custody secret is created
        # and destroyed, which version opens a client's keys and which ones a rotation or a shred
        # destroys, and the rotations' steps. The bookkeeping times (created_at of a version, a
        # job's started_at/updated_at) decide nothing. Covered since coverage 4
        Table("custodians", ("id", "kind", "config", "created_at", "retired_at"), "id"),
        Table(
            "client_custody",
            (
                "client_id",
                "version",
                "custodian_id",
                "state",
                "fingerprint",
                "key_id",
                "wrapped",
                "destroyed_at",
                "receipt",
            ),
            "client_id",
        ),
        Table(
            "custody_jobs",
            ("client_id", "reason", "from_version", "to_version", "rotate_client_key", "step"),
            "client_id",
        ),
        # the import origin (0011_moving_in.sql; docs/import.md "Writing"): the version the last
        # import wrote decides whether a re-run may overwrite the record. Covered since coverage 6
        Table("import_origins", ("record_id", "version", "source"), "record_id"),
    )
}

#: tables whose last covered column is left out of the encoding when it is NULL (a column added
#: later whose NULL means "as before": the rows written before keep their MACs, and a row with a
#: value is MACed over one more value, so the value can be neither added, edited nor removed)
NULL_TAIL = frozenset({"record_versions"})

#: the meta rows that are MACed (others are written before the keys exist or decide nothing);
#: ``two_admins``: the vault has had two enrolled admins, the bootstrap window is closed (review2 S1);
#: ``remote.onedrive``: the replica configuration, which names the credential cvault reads and the
#: hosts it sends it to (review4 R4-4; covered since coverage 5); ``custody_format`` (the vault's
#: client keys are wrapped under custody: a vault without it is migrated at unseal) and
#: ``custody_migrated_at`` (what a shred certificate lists as able to undo it): since coverage 7
META_KEYS = (
    "settings",
    "single_operator",
    "row_macs",
    "two_admins",
    "remote.onedrive",
    "custody_format",
    "custody_migrated_at",
)
#: meta key of the marker that this vault's rows carry MACs (written at init or by the backfill);
#: its value is the coverage: which tables carry them
MARKER = "row_macs"
#: the coverage this build writes: 1 = the tables of issue 12 and the teams; 2 = also integrations;
#: 3 = also shred_jobs (independent review R11); 4 = also custodians, client_custody, custody_jobs;
#: 5 = also the meta row ``remote.onedrive`` (review4 R4-4); 6 = also import_origins (review4 R4-7);
#: 7 = also the meta rows ``custody_format`` and ``custody_migrated_at`` (markfix)
COVERAGE = 7
#: the tables each coverage added after the first: a vault at an older coverage gets their MACs on
#: its next unseal (:func:`upgrade`), under the rules of :func:`backfill`
ADDED = {
    2: ("integrations",),
    3: ("shred_jobs",),
    4: ("custodians", "client_custody", "custody_jobs"),
    5: ("meta",),
    6: ("import_origins",),
    7: ("meta",),
}
#: the meta keys a coverage added (a coverage that lists ``meta`` in :data:`ADDED` MACs only these)
META_ADDED = {5: ("remote.onedrive",), 7: ("custody_format", "custody_migrated_at")}


def _scope(table: str, level: int | None = None) -> tuple[str, tuple]:
    """The WHERE clause (and its parameters) of the rows of ``table`` that carry MACs: every row,
    or for ``meta`` the :data:`META_KEYS` rows; with ``level``, the rows that coverage added."""
    if table != "meta":
        return "1", ()
    keys = META_KEYS if level is None else META_ADDED[level]
    return f"key IN ({','.join('?' * len(keys))})", keys


def _pending(have: int) -> tuple[tuple[int, str], ...]:
    """(coverage, table) of what a vault at coverage ``have`` lacks, in order."""
    return tuple((level, t) for level in range(have + 1, COVERAGE + 1) for t in ADDED.get(level, ()))


#: the covered id column that is the table's rowid (INTEGER PRIMARY KEY): SQLite assigns it when
#: an insert leaves it out
ROWID_COLUMNS = {
    t: "id"
    for t in (
        "users",
        "assignments",
        "records",
        "teams",
        "team_members",
        "team_assignments",
        "shred_requests",
        "setting_requests",
        "account_requests",
        "integrations",
        "custodians",
    )
} | {"import_origins": "record_id"}
#: what a covered column an insert leaves out means, when not NULL (the migrations' DEFAULT):
#: :func:`insert` writes every covered column explicitly, so no covered value is ever left to a
#: DEFAULT stored in the file (review 4, R4-0: a rebuilt table's DEFAULT was MACed)
DEFAULTS: dict[str, dict[str, Any]] = {"users": {"disabled": 0}}


class RowTampered(IntegrityFailure):
    """integrity failure: a row of the vault database failed authentication."""


# --- the encoding and the MAC --------------------------------------------------------------------


def encode(table: str, values: Sequence[Any]) -> bytes:
    """The canonical bytes a row MAC covers (docs/format.md, "Row MACs"). Raises TypeError for a
    value of a type no covered column holds (a tampered REAL, say): the caller fails closed."""
    prefix = _PREFIXES.get(table)
    if prefix is None:
        prefix = _PREFIXES[table] = LABEL + _U32(len(table)) + table.encode("ascii")
    if values and values[-1] is None and table in NULL_TAIL:
        values = values[:-1]
    out = [prefix]
    append = out.append
    for value in values:
        kind = type(value)
        if kind is int or kind is bool:
            append(_INT + _I64(value))
        elif value is None:
            append(_NULL)
        elif kind is str:
            data = value.encode("utf-8", "surrogateescape")  # the bytes as stored
            append(_TEXT + _U32(len(data)) + data)
        elif isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            append(_BLOB + _U32(len(data)) + data)
        else:
            raise TypeError(f"no row-MAC encoding for {type(value).__name__}")
    return b"".join(out)


#: ``LABEL || u32 len(table) || table`` of each table (constant: built once)
_PREFIXES: dict[str, bytes] = {}


def table_prefix(table: str) -> bytes:
    """The constant start of every encoding of ``table`` (``encode(table, ())``)."""
    return encode(table, ())


def encode_value(value: Any) -> bytes:
    """``E(value)``, one value's part of :func:`encode` (bulk writers: the encoding of a row is
    ``table_prefix(table) + E(v1) + ... + E(vn)``, so values shared by a batch are encoded once;
    a NULL_TAIL table's trailing NULL is left out by the caller)."""
    return encode("", (value,))[len(_PREFIXES[""]) :]


def int_value(value: int) -> bytes:
    """``E(value)`` of an integer (the bulk writers' per-row values)."""
    return _INT + _I64(value)


def blob_value(value: bytes) -> bytes:
    """``E(value)`` of bytes."""
    return _BLOB + _U32(len(value)) + value


def macer(conn: Any) -> crypto.Mac:
    """The row-MAC key's HMAC (bulk writers: ``macer(conn).mac(encode(table, values))``)."""
    keyring = getattr(conn, "keyring", None)
    if keyring is None or not keyring.unsealed:
        raise VaultSealed("vault sealed: the row-MAC key is not available")
    return keyring.row_macer()


def mac(conn: Any, table: str, values: Sequence[Any]) -> bytes:
    return macer(conn).mac(encode(table, values))


def _valid(m: crypto.Mac, table: str, values: Sequence[Any], tag: Any) -> bool:
    if not isinstance(tag, bytes) or len(tag) != crypto.MAC_LEN:
        return False
    try:
        message = encode(table, values)
    except (TypeError, OverflowError, struct.error):
        return False
    return m.verify(message, tag)


def _failure(table: str, values: Sequence[Any]) -> RowTampered:
    spec = TABLES[table]
    index = spec.columns.index(spec.id_column)
    ident = values[index] if index < len(values) else "?"
    if isinstance(ident, bytes | bytearray):
        ident = bytes(ident).hex()[:16]
    return RowTampered(
        f"integrity failure: a {table} row ({spec.id_column} {str(ident)[:64]}) failed authentication"
        " (edited outside cvault?); run cvault doctor"
    )


def check(conn: Any, table: str, values: Sequence[Any], tag: Any) -> None:
    """Raise :class:`RowTampered` unless ``tag`` is the MAC of ``values`` (the covered columns of
    ``table`` as read, in :data:`TABLES` order). Constant-time comparison."""
    if not _valid(macer(conn), table, values, tag):
        raise _failure(table, values)


def select(conn: Any, table: str, where: str, params: tuple = (), order: str = "") -> list[tuple]:
    """``(rowid, *covered columns)`` of the rows matching ``where``, each verified."""
    spec = TABLES[table]
    m = macer(conn)
    sql = f"SELECT rowid, {spec.select}, mac FROM {table} WHERE {where}"  # noqa: S608 - table and columns are constants of TABLES; values are bound
    if order:
        sql += f" ORDER BY {order}"
    out = []
    for row in conn.execute(sql, params):
        values = row[1:-1]
        if not _valid(m, table, values, row[-1]):
            raise _failure(table, values)
        out.append(row[:-1])
    return out


def insert(conn: Any, table: str, values: dict[str, Any], *, or_ignore: bool = False) -> int | None:
    """``INSERT INTO table`` one row and MAC it, by the rowid SQLite gave it (never by a
    condition: a row a file writer planted for an id not yet used must not get a MAC). Every
    covered column is written explicitly (:data:`DEFAULTS`), and the MAC is over the values the
    INSERT wrote (``RETURNING``), checked against the row as stored (:func:`_seal`). Returns the
    rowid (the INTEGER PRIMARY KEY where there is one), None if ``or_ignore`` ignored it."""
    if not conn.in_transaction:
        raise RuntimeError("rowmac.insert runs inside a write transaction")
    spec = TABLES[table]
    row = dict(values)
    defaults = DEFAULTS.get(table, {})
    for column in spec.columns:
        name = column.removesuffix(" IS NULL")
        if name not in row and name != ROWID_COLUMNS.get(table):
            row[name] = defaults.get(name)
    columns = ", ".join(row)
    marks = ", ".join("?" * len(row))
    verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
    written = conn.execute(
        f"{verb} INTO {table} ({columns}) VALUES ({marks}) RETURNING rowid, {spec.select}",
        tuple(row.values()),
    ).fetchall()
    if len(written) != 1:
        return None
    _seal(conn, table, written)
    return int(written[0][0])


def _seal(conn: Any, table: str, written: list[tuple]) -> None:
    """MAC ``written`` (``(rowid, *covered values)`` as cvault's own INSERT or UPDATE wrote them:
    its ``RETURNING`` rows, which no trigger's later change reaches), then read the rows back: a
    row that is not exactly what was written and MACed (a trigger changed it, or the mac) is an
    integrity failure, and the caller's transaction writes nothing (review 4, R4-0: never MAC
    values read back)."""
    m = macer(conn)
    want: dict[int, tuple[tuple, bytes]] = {}
    for row in written:
        try:
            want[row[0]] = (tuple(row[1:]), m.mac(encode(table, row[1:])))
        except (TypeError, OverflowError, struct.error):
            raise _failure(table, row[1:]) from None
    conn.executemany(
        f"UPDATE {table} SET mac = ? WHERE rowid = ?",  # noqa: S608 - a constant table name
        [(tag, rowid) for rowid, (_, tag) in want.items()],
    )
    spec = TABLES[table]
    rowids = list(want)
    for start in range(0, len(rowids), 500):
        batch = rowids[start : start + 500]
        marks = ",".join("?" * len(batch))
        stored = conn.execute(
            f"SELECT rowid, {spec.select}, mac FROM {table} WHERE rowid IN ({marks})",  # noqa: S608 - constants of TABLES; values are bound
            tuple(batch),
        ).fetchall()
        found = {r[0]: (tuple(r[1:-1]), r[-1]) for r in stored}
        for rowid in batch:
            if found.get(rowid) != want[rowid]:
                raise _changed(table, want[rowid][0])


def _changed(table: str, values: Sequence[Any]) -> RowTampered:
    failure = _failure(table, values)
    return RowTampered(
        failure.message.replace(
            "failed authentication (edited outside cvault?)",
            "was not stored as cvault wrote it (a trigger or default not cvault's?); nothing was written",
        )
    )


def stamp(conn: Any, table: str, where: str, params: tuple = ()) -> int:
    """MAC the rows matching ``where`` from their stored values: the row :func:`insert` just
    wrote (by rowid), the one-time :func:`backfill`, tests' fixtures. Never for a row that had a
    MAC (use :func:`update`, which verifies it first), nor by a condition a planted row could
    match. Returns how many rows were stamped."""
    if not conn.in_transaction:
        raise RuntimeError("rowmac.stamp runs inside a write transaction")
    spec = TABLES[table]
    m = macer(conn)
    rows = conn.execute(f"SELECT rowid, {spec.select} FROM {table} WHERE {where}", params).fetchall()  # noqa: S608 - constants of TABLES; values are bound
    updates = []
    for row in rows:
        try:
            updates.append((m.mac(encode(table, row[1:])), row[0]))
        except (TypeError, OverflowError, struct.error):
            raise _failure(table, row[1:]) from None
    conn.executemany(f"UPDATE {table} SET mac = ? WHERE rowid = ?", updates)  # noqa: S608 - a constant table name
    return len(updates)


def update(conn: Any, table: str, sets: str, set_params: tuple, where: str, where_params: tuple = ()) -> int:
    """``UPDATE table SET sets WHERE where`` for authenticated rows: each matching row's MAC is
    verified first (a failure raises and changes nothing), then the rows are updated and MACed
    again, over the values the UPDATE wrote (``RETURNING``), checked against the rows as stored
    (:func:`_seal`); a verified row the UPDATE did not change is an integrity failure too.
    Returns how many rows changed."""
    if not conn.in_transaction:
        raise RuntimeError("rowmac.update runs inside a write transaction")
    rowids = [r[0] for r in select(conn, table, where, where_params)]
    if not rowids:
        return 0
    spec = TABLES[table]
    for start in range(0, len(rowids), 500):
        batch = rowids[start : start + 500]
        marks = ",".join("?" * len(batch))
        written = conn.execute(
            f"UPDATE {table} SET {sets} WHERE rowid IN ({marks}) RETURNING rowid, {spec.select}",  # noqa: S608 - constant SQL from the caller; values are bound
            (*set_params, *batch),
        ).fetchall()
        if len(written) != len(batch):
            # a verified row the UPDATE did not change (a trigger's RAISE(IGNORE)): fail closed
            missing = set(batch) - {r[0] for r in written}
            raise _changed(table, select(conn, table, "rowid = ?", (min(missing),))[0][1:])
        _seal(conn, table, written)
    return len(rowids)


def verify_table(conn: Any, table: str, *, batch: int = 10_000) -> Iterator[str]:
    """doctor: one line per row of ``table`` whose MAC fails (every row is read once)."""
    spec = TABLES[table]
    m = macer(conn)
    where, params = _scope(table)
    cursor = conn.execute(f"SELECT {spec.select}, mac FROM {table} WHERE {where}", params)  # noqa: S608 - constants of TABLES
    while True:
        rows = cursor.fetchmany(batch)
        if not rows:
            return
        for row in rows:
            if not _valid(m, table, row[:-1], row[-1]):
                yield str(_failure(table, row[:-1]))


def count_rows(conn: Any) -> int:
    """How many rows carry a MAC (doctor's rate)."""
    total = 0
    for table in TABLES:
        where, params = _scope(table)
        total += conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]  # noqa: S608 - constants of TABLES
    return total


# --- the marker and the backfill ------------------------------------------------------------------


def enabled(conn: Any) -> bool:
    """Whether this vault's rows carry MACs: the marker row exists (and is authentic: raises
    RowTampered if not)."""
    row = conn.execute("SELECT key, value, mac FROM meta WHERE key = ?", (MARKER,)).fetchone()
    if row is None:
        return False
    check(conn, "meta", row[:2], row[2])
    return True


def any_mac(conn: Any) -> bool:
    """Whether any row of any covered table carries a MAC: a vault that never had row MACs has
    none, so a backfill is refused when one is there (a stripped marker, not an upgrade)."""
    for table in TABLES:
        if conn.execute(f"SELECT 1 FROM {table} WHERE mac IS NOT NULL LIMIT 1").fetchone():  # noqa: S608 - constants of TABLES
            return True
    return False


def backfill(conn: Any, now: int) -> dict[str, int]:
    """MAC every row of every table (inside the caller's write transaction) and write the marker:
    the first unseal of a vault from before row MACs (and ``init``). Sessions from before carry no
    keyed token MAC: they are ended (their users log in again). Returns the counts."""
    if not conn.in_transaction:
        raise RuntimeError("rowmac.backfill runs inside a write transaction")
    ended = conn.execute(
        "UPDATE sessions SET ended_at = ? WHERE token_mac IS NULL AND ended_at IS NULL", (now,)
    ).rowcount
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (MARKER, COVERAGE))
    counts = {}
    for table in TABLES:
        counts[table] = stamp(conn, table, *_scope(table))
    counts["sessions_ended"] = ended
    return counts


def coverage(conn: Any) -> int:
    """The marker's coverage (0 without a marker; raises RowTampered if it fails its MAC)."""
    value = meta_value(conn, MARKER)
    if value is None:
        return 0
    if type(value) is not int or not 1 <= value <= COVERAGE:
        raise RowTampered(
            f"integrity failure: this vault's row-MAC marker says coverage {str(value)[:16]!r}, which"
            " this cvault does not know (written by a newer cvault?); run cvault doctor"
        )
    return value


def pending_tables(conn: Any) -> tuple[str, ...]:
    """The tables the vault's coverage does not MAC yet (empty: up to date, or no marker)."""
    have = coverage(conn)
    if have == 0:
        return ()
    return tuple(dict.fromkeys(t for _, t in _pending(have)))  # meta once (coverage 5 and 7)


def pending_rows(conn: Any) -> tuple[tuple[str, str, tuple], ...]:
    """(table, WHERE clause, parameters) of the rows the vault's coverage does not MAC yet."""
    have = coverage(conn)
    return tuple((table, *_scope(table, level)) for level, table in (_pending(have) if have else ()))


def upgrade(conn: Any, verify_row: Any = None) -> dict[str, int]:
    """MAC the rows of the tables added since the vault's coverage, and raise the marker to
    :data:`COVERAGE` (inside the caller's write transaction; the first unseal after an upgrade).

    The rules of :func:`backfill`: a table that already has a MAC on any row had them added
    already, so the marker was rolled back (an older authentic copy of its row): an integrity
    failure, nothing MACed. ``verify_row(table, row)`` (``row``: rowid and covered values) may
    check each row against what a file writer cannot forge before it is MACed (an integration's
    sealed secret is bound to its id) and raise. Returns the counts per table."""
    if not conn.in_transaction:
        raise RuntimeError("rowmac.upgrade runs inside a write transaction")
    have = coverage(conn)
    pending = _pending(have) if have else ()
    counts: dict[str, int] = {}
    for level, table in pending:
        where, params = _scope(table, level)
        if conn.execute(
            f"SELECT 1 FROM {table} WHERE ({where}) AND mac IS NOT NULL LIMIT 1",  # noqa: S608 - constants of TABLES
            params,
        ).fetchone():
            raise RowTampered(
                f"integrity failure: the {table} rows carry MACs but the vault's row-MAC marker says"
                " they were never added (the marker was rolled back?); run cvault doctor"
            )
        if verify_row is not None:
            spec = TABLES[table]
            for row in conn.execute(f"SELECT rowid, {spec.select} FROM {table} WHERE {where}", params):  # noqa: S608 - constants of TABLES
                verify_row(table, row)
        counts[table] = counts.get(table, 0) + stamp(conn, table, where, params)
    if pending:
        put_meta(conn, MARKER, COVERAGE)
    return counts


def upgrade_digest(conn: Any) -> str:
    """A digest of exactly what ``cvault upgrade`` would authenticate now (independent review S6),
    readable sealed (the summary is shown before the passphrase is asked): SHA-256 over the
    marker's value as stored and, for each table an upgrade would MAC (every covered table
    without a marker, else the ones the marker's coverage lacks), each row's rowid and the
    canonical bytes its MAC would cover, in rowid order. The summary prints it; the upgrade
    recomputes it inside the write transaction that adds the MACs (after the marker was verified)
    and refuses on any difference, so a row planted or changed after the operator checked the
    summary is never authenticated. 32 hex digits (128 bits)."""
    import hashlib  # not on the read path (tests/core/test_fast_paths.py)

    row = conn.execute("SELECT value FROM meta WHERE key = ?", (MARKER,)).fetchone()
    have = None if row is None else row[0]
    digest = hashlib.sha256(b"cvault/v1/upgrade-digest\0")
    digest.update(encode_value(have) if have is None or type(have) in (int, str, bytes) else b"?")
    if have is None:
        tables: tuple[tuple[int | None, str], ...] = tuple((None, t) for t in TABLES)
    elif type(have) is int and 1 <= have <= COVERAGE:
        tables = _pending(have)
    else:
        tables = ()  # a marker this build does not know: the upgrade refuses it anyway
    for level, table in tables:
        spec = TABLES[table]
        where, params = _scope(table, level)
        digest.update(table_prefix(table))
        query = f"SELECT rowid, {spec.select} FROM {table} WHERE {where} ORDER BY rowid"  # noqa: S608 - constants of TABLES
        for found in conn.execute(query, params):
            try:
                data = encode(table, found[1:])
            except TypeError:
                raise _failure(table, found[1:]) from None
            digest.update(struct.pack(">qI", found[0], len(data)) + data)
    return digest.hexdigest()[:32]


def meta_value(conn: Any, key: str) -> Any:
    """A MACed meta row's value (None without the row); raises RowTampered if it fails."""
    if key not in META_KEYS:
        raise ValueError(f"meta key {key} carries no MAC")
    row = conn.execute("SELECT key, value, mac FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    check(conn, "meta", row[:2], row[2])
    return row[1]


def put_meta(conn: Any, key: str, value: Any) -> None:
    """Write a MACed meta row (inside a write transaction). An existing row is verified first."""
    if key not in META_KEYS:
        raise ValueError(f"meta key {key} carries no MAC")
    meta_value(conn, key)
    conn.execute(
        "INSERT INTO meta (key, value, mac) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
        " SET value = excluded.value, mac = excluded.mac",
        (key, value, mac(conn, "meta", (key, value))),
    )
