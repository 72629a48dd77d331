"""SQLite metadata store: connection settings, transactions and ordered schema migrations.

Settings (why):
* ``journal_mode=WAL``: readers never block the one writer; several CLI processes work at once.
* ``busy_timeout``: a writer waits for the lock instead of failing with "database is locked".
* ``synchronous=FULL``: a commit is on disk before the CLI acknowledges a write (kill -9 and
  power loss never lose an acknowledged write).
* ``secure_delete=ON``: deleted key material is overwritten with zeros in the page, not left in
  free pages (crypto-shredding, docs/spec.md §7).
* ``foreign_keys=ON``.

Every write goes through :meth:`Database.write` which takes the write lock up front
(``BEGIN IMMEDIATE``), so a read-then-write transaction never deadlocks or fails mid-way.

Migrations are the files ``migrations/NNNN_name.sql``. The set of numbers applied is recorded in
the table ``schema_migrations`` (one row per number, written in the same transaction as the
migration itself), and every known number not in it is applied, lowest first: numbers are
reserved per issue and land in any order, so a vault that already has 0016 still gets a 0015
that landed after it. ``PRAGMA user_version`` keeps the highest number applied (what builds
before ``schema_migrations`` read). A vault from before the table (only ``user_version``) had
every known number up to its version applied: the table is filled with those on first open.
A vault with a migration this code does not know (a newer cvault wrote it) is refused rather than
guessed at (exit 6), and so is one whose ``user_version`` disagrees with its table.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from typing import TYPE_CHECKING, Any, TypeVar

from vault.errors import (
    BackendError,
    IntegrityFailure,
    InvalidInput,
    StorageFull,
    StorageReadOnly,
    VaultError,
    VaultLocked,
)
from vault.store.clients import key_state

if TYPE_CHECKING:
    from pathlib import Path

#: (a string: opening a vault for ``secret get`` never loads pathlib, docs/performance.md)
MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "migrations")
BUSY_TIMEOUT_MS = 30_000
_MIGRATION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
#: the table recording the migrations applied (created by :meth:`Database.migrate`)
SCHEMA_MIGRATIONS_TABLE = "CREATE TABLE schema_migrations (number INTEGER PRIMARY KEY) WITHOUT ROWID"


def _migration_number(name: str) -> int | None:
    """``NNNN_name.sql`` -> NNNN (four ASCII digits, then ``_`` and [a-z0-9_]+), else None: a
    string check rather than a regular expression compiled on every open (docs/performance.md)."""
    digits, stem = name[:4], name[5:-4]
    if not (name.endswith(".sql") and name[4:5] == "_" and stem):
        return None
    if not (digits.isascii() and digits.isdigit() and _MIGRATION_CHARS.issuperset(stem)):
        return None
    return int(digits)


#: a read is tried at most this often when key rotations keep overtaking its snapshot
SNAPSHOT_ATTEMPTS = 4
T = TypeVar("T")


class SchemaTooNew(VaultError):
    """this vault was written by a newer cvault; upgrade cvault to open it."""

    exit_code = 6
    code = "integrity_failure"


class SchemaError(VaultError):
    """the vault database is damaged or not a cvault database."""

    exit_code = 6
    code = "integrity_failure"


def migration_numbers() -> set[int]:
    """The numbers of the migrations this cvault knows (``migrations()`` without their files)."""
    return {n for n, _ in _migration_names()}


def _migration_names() -> list[tuple[int, str]]:
    return _migration_names_in(MIGRATIONS_DIR)


def _migration_names_in(folder: str) -> list[tuple[int, str]]:
    found = []
    for name in os.listdir(folder):
        number = _migration_number(name)
        if number is not None:
            found.append((number, name))
    found.sort()
    numbers = [n for n, _ in found]
    # numbers are reserved per issue (docs/architecture.md): gaps are allowed and numbers land in
    # any order (schema_migrations records the set applied), a number never twice
    if len(set(numbers)) != len(numbers) or (numbers and numbers[0] != 1):
        raise RuntimeError(f"migration numbers must be unique and start at 1, got {numbers}")
    return found


def migrations() -> list[tuple[int, Path]]:
    from pathlib import Path

    return [(n, Path(MIGRATIONS_DIR) / name) for n, name in _migration_names()]


def inserted_id(cursor: sqlite3.Cursor) -> int:
    """The row id an INSERT just created."""
    if cursor.lastrowid is None:
        raise SchemaError("the vault database did not return the new row's id")
    return cursor.lastrowid


def latest_schema_version() -> int:
    known = migrations()
    return known[-1][0] if known else 0


class VaultConnection(sqlite3.Connection):
    """A vault's SQLite connection. ``keyring``: the vault's keyring (set by ``VaultContext``),
    which the row MACs of the rows it reads and writes are checked and made with
    (``vault.store.rowmac``); None on a connection that opens no vault's rows."""

    keyring: Any = None


class WriteNotHere(Exception):
    """A write transaction asked for inside :func:`writes_elsewhere`: the caller (the service's
    event loop thread, which must never wait for the host write lock: review11 R11-1) runs the
    operation again where it may wait."""


#: ``.on`` set by :func:`writes_elsewhere` in the thread running its block (which is synchronous:
#: no other code of that thread runs meanwhile; a thread-local, not a ContextVar, keeps
#: ``contextvars`` off ``secret get``'s imports)
_WRITES_ELSEWHERE = threading.local()


@contextmanager
def writes_elsewhere() -> Iterator[None]:
    """Within it, :meth:`Database.write` raises :class:`WriteNotHere` instead of waiting for the
    write lock (a file writer's ``flock`` on it, or a long import, would otherwise stop every
    connection of a service worker's event loop)."""
    before = getattr(_WRITES_ELSEWHERE, "on", False)
    _WRITES_ELSEWHERE.on = True
    try:
        yield
    finally:
        _WRITES_ELSEWHERE.on = before


class Database:
    """One SQLite connection. ``write_lock``: a lock every :meth:`write` takes before SQLite's own
    (the service shares one among its pooled connections: ``vault.server.pool``)."""

    def __init__(self, path: Path | str, *, create: bool = False, write_lock: threading.RLock | None = None):
        #: the database file (``path`` gives it as a Path)
        self.file = os.fspath(path)
        self.write_lock = write_lock
        #: write transactions begun on this connection (vault.identity.facts.AccountSnapshot: a
        #: request's account rows are lent to its decision only if nothing was written in between)
        self.writes = 0
        #: ``PRAGMA schema_version`` when the schema was last authenticated (None: not yet, i.e.
        #: before or during :meth:`migrate`); a write transaction that finds it changed checks
        #: the schema again before anything is written (vault.store.schema)
        self._schema_cookie: int | None = None
        if not create and not os.path.exists(self.file):
            raise FileNotFoundError(self.file)
        if create and not os.path.exists(self.file):
            # create the file 0600 before SQLite does, so -wal and -shm inherit the mode
            fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        #: the vault is on read-only storage (a mounted backup, a snapshot): opened for reading only
        self.read_only = not create and on_read_only_storage(self.file)
        try:
            self.conn: VaultConnection = sqlite3.connect(
                self._read_only_uri() if self.read_only else self.file,
                isolation_level=None,
                timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
                uri=self.read_only,
                factory=VaultConnection,
            )
            # a tampered row may hold bytes that are not UTF-8 where text was expected (or text
            # where a blob was): decode leniently so that the integrity checks, not the driver,
            # report it
            self.conn.text_factory = _lenient_text
            self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if self.read_only:
                self.conn.execute("PRAGMA foreign_keys=ON")
                self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens now
                return
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise SchemaError("the vault database could not be switched to WAL mode")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA secure_delete=ON")
            self.conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            translated = storage_error(exc, path=self.path)
            if isinstance(translated, BackendError):
                raise translated from None
            raise SchemaError(f"the vault database cannot be opened: {_sqlite_reason(exc)}") from None

    @property
    def path(self) -> Path:
        from pathlib import Path

        return Path(self.file)

    def _read_only_uri(self) -> str:
        """SQLite's read-only open of a WAL database: with its ``-wal`` and ``-shm`` files as they
        are; without any ``-wal`` (a cleanly closed vault) as immutable (no locks, no ``-shm``
        to create). A ``-wal`` holding commits but no ``-shm`` beside it cannot be read on
        read-only storage: refused rather than read without those commits."""
        import urllib.parse
        from pathlib import Path

        quoted = urllib.parse.quote(str(self.path.resolve()))
        wal = Path(f"{self.path}-wal")
        shm = Path(f"{self.path}-shm")
        has_wal = wal.exists() and wal.stat().st_size > 0
        if has_wal and not shm.exists():
            raise StorageReadOnly(
                f"the vault at {self.path.parent} is on read-only storage and its write-ahead log "
                f"cannot be read without {shm.name}: copy the vault folder to writable storage"
            )
        return f"file:{quoted}?mode=ro" + ("" if has_wal else "&immutable=1")

    # --- transactions ------------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database write lock from its first statement.

        All or nothing: a failure anywhere, the commit included, rolls it back. A full or
        read-only disk becomes :class:`StorageFull` / :class:`StorageReadOnly` (exit 9) and a
        damaged file an integrity failure (exit 6), not a driver exception (``storage_error``).
        Inside :func:`writes_elsewhere` it raises :class:`WriteNotHere` before taking any lock."""
        if getattr(_WRITES_ELSEWHERE, "on", False):
            raise WriteNotHere("a write where the caller cannot wait for the write lock")
        self.writes += 1
        with self.write_lock if self.write_lock is not None else nullcontext():
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise storage_error(exc, path=self.path) or exc from None
            try:
                if self._schema_cookie is not None:
                    self._recheck_schema()
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as exc:
                if self.conn.in_transaction:
                    with suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error | OSError):
                    raise storage_error(exc, path=self.path) or exc from None
                raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several SELECTs.

        Inside a transaction already open on this connection (a write), that one is used: a write
        transaction's snapshot is the newest there is."""
        if self.conn.in_transaction:
            yield self.conn
            return
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")

    def read_retrying(self, body: Callable[[sqlite3.Connection, Callable[[str], None]], T]) -> T:
        """``body(conn, touch)`` in one read snapshot, again in a fresh one if it failed only because
        a key rotation committed after the snapshot began (docs/architecture.md, "Key versions
        under concurrency").

        ``body`` calls ``touch(client_id)`` before it opens a client's keys. A rotation destroys
        the old custody secret *after* its transaction commits, so a reader whose snapshot still
        names the old version can find that secret gone: if the body raises IntegrityFailure and
        the key state of a client it touched (client-key version, current custody version, shred
        state) is different now, the failure was the stale snapshot, not tampering, and the body
        runs again. Otherwise (or after ``SNAPSHOT_ATTEMPTS``) the failure stands. Inside an open
        transaction nothing is retried (its snapshot cannot move)."""
        nested = self.conn.in_transaction
        for attempt in range(1, SNAPSHOT_ATTEMPTS + 1):
            touched: list[str] = []
            with self.read() as conn:
                try:
                    return body(conn, touched.append)
                except IntegrityFailure as exc:
                    if nested or not touched or attempt == SNAPSHOT_ATTEMPTS:
                        raise
                    seen = [key_state(conn, c) for c in touched]
                    failure = exc
            if [key_state(self.conn, c) for c in touched] == seen:
                raise failure
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def one(self, sql: str, params: tuple | dict = ()) -> tuple | None:
        return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: tuple | dict = ()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def one_or_raise(self, sql: str, params: tuple | dict, error: VaultError) -> tuple:
        """The first row, or raise ``error`` (typically NotFound) if there is none."""
        row = self.conn.execute(sql, params).fetchone()
        if row is None:
            raise error
        return row

    def scalar(self, sql: str, params: tuple | dict = ()) -> Any:
        """The first column of the first row (None without a row): ``count(*)``, ``max(...)``."""
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self.conn.close()

    # --- schema --------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def check_schema(self) -> None:
        """Authenticate the schema (vault.store.schema): raise SchemaTampered (exit 6) naming the
        first trigger, view, table or index that is not what the migrations create. From now on
        each write transaction checks again if ``PRAGMA schema_version`` moved."""
        from vault.store import schema

        try:
            cookie = self.conn.execute("PRAGMA schema_version").fetchone()[0]
            schema.check(self.conn, MIGRATIONS_DIR)
        except sqlite3.DatabaseError as exc:
            raise SchemaError(f"the vault database is damaged: {_sqlite_reason(exc)}") from None
        self._schema_cookie = cookie

    def schema_problems(self) -> list[str]:
        """doctor: one line per schema object that is not what the migrations create."""
        from vault.store import schema

        return schema.problems(self.conn, MIGRATIONS_DIR)

    def _recheck_schema(self) -> None:
        """Inside a write transaction just begun: the schema again if it changed since checked
        (the schema cannot change under the write lock this transaction now holds)."""
        if self.conn.execute("PRAGMA schema_version").fetchone()[0] != self._schema_cookie:
            self._schema_cookie = None
            self.check_schema()

    def applied_migrations(self, conn: sqlite3.Connection | None = None) -> set[int] | None:
        """The migration numbers recorded in ``schema_migrations`` (None: a vault from before the
        table)."""
        conn = conn or self.conn
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone():
            return None
        return {int(r[0]) for r in conn.execute("SELECT number FROM schema_migrations")}

    def pending_migrations(self) -> list[int]:
        """Known migration numbers not applied to this vault (empty once :meth:`migrate` ran)."""
        applied = self.applied_migrations() or set()
        return [n for n, _ in migrations() if n not in applied]

    def migrate(self) -> int:
        """Apply every known migration not applied yet (lowest first); returns the highest number
        now applied (``PRAGMA user_version``)."""
        numbers = migration_numbers()
        try:
            current = self.schema_version()
            applied = self.applied_migrations()
        except sqlite3.DatabaseError as exc:
            raise SchemaError(f"the vault database is damaged: {_sqlite_reason(exc)}") from None
        self._check_versions(numbers, current, applied)
        if applied is not None and numbers <= applied:
            self.check_schema()
            return current
        known = migrations()
        if current == 0 and applied is None and self._has_tables():
            # a database with tables but no schema version: not written by any cvault release
            raise SchemaError("the vault database has no cvault schema version: not a cvault vault")
        try:
            with self.write() as conn:
                # re-read under the lock: another process may have migrated meanwhile
                current = conn.execute("PRAGMA user_version").fetchone()[0]
                applied = self.applied_migrations(conn)
                self._check_versions(numbers, current, applied)
                if applied is None:
                    conn.execute(SCHEMA_MIGRATIONS_TABLE)
                    # a vault from before the table: the old runner applied every number up to
                    # its user_version, in order
                    applied = {n for n in numbers if n <= current}
                    conn.executemany(
                        "INSERT INTO schema_migrations (number) VALUES (?)",
                        [(n,) for n in sorted(applied)],
                    )
                for number, path in known:
                    if number in applied:
                        continue
                    for statement in _statements(path.read_text()):
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_migrations (number) VALUES (?)", (number,))
                    applied.add(number)
                    current = max(current, number)
                    conn.execute(f"PRAGMA user_version={current}")
        except sqlite3.DatabaseError as exc:
            # the recorded version does not describe the tables (an older number written over a
            # newer schema, or a damaged file): refuse rather than guess
            raise SchemaError(
                f"the vault database's schema does not match its version {current}: upgrading it"
                f" failed ({_sqlite_reason(exc)})"
            ) from None
        self.check_schema()
        return current

    @staticmethod
    def _check_versions(numbers: set[int], current: int, applied: set[int] | None) -> None:
        """Refuse a vault a newer cvault wrote, and one whose two records of its schema disagree."""
        latest = max(numbers, default=0)
        unknown = sorted((applied or set()) - numbers)
        if current > latest or unknown:
            newest = max([current, *unknown])
            raise SchemaTooNew(
                f"this vault's schema (version {newest}) is newer than this cvault reads (up to"
                f" {latest}): upgrade cvault to open it"
            )
        if applied is not None and current != max(applied, default=0):
            if current == 0:
                raise SchemaError("the vault database has no cvault schema version: not a cvault vault")
            raise SchemaError(
                f"the vault database's schema does not match its version {current}: its recorded"
                f" migrations end at {max(applied, default=0)}"
            )

    def _has_tables(self) -> bool:
        row = self.conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
        return bool(row[0])

    def checkpoint_truncate(self, attempts: int = 5, wait: float = 0.2) -> bool:
        """Copy the WAL into the main file and truncate it to zero bytes.

        Returns False if another connection's open read kept old pages alive after ``attempts``
        tries (their bytes, e.g. a destroyed wrapped key, then stay until a later checkpoint)."""
        # TRUNCATE waits in the busy handler for readers to move on: bound each try to ``wait``
        self.conn.execute(f"PRAGMA busy_timeout={max(1, int(wait * 1000))}")
        try:
            for _ in range(attempts):
                if not self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                    return True
            return False
        finally:
            self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def scrub(self, attempts: int = 5, wait: float = 0.2) -> bool:
        """Leave no old page content anywhere: checkpoint, VACUUM (rebuilds the file without free
        pages), checkpoint again. False if a reader in another process kept the WAL busy."""
        if not self.checkpoint_truncate(attempts, wait):
            return False
        self.conn.execute("VACUUM")
        return self.checkpoint_truncate(attempts, wait)


def on_read_only_storage(path: Path | str) -> bool:
    """The vault's database cannot be written here: a read-only mount, or no write permission on
    the file or its folder (SQLite needs both, for the ``-wal`` and ``-shm`` files)."""
    folder = os.path.dirname(os.fspath(path)) or "."
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not (os.access(folder, os.W_OK) and os.access(path, os.W_OK))


_FULL = (errno.ENOSPC, errno.EDQUOT)
#: below this many free bytes a failed write is taken for a full disk
_LOW_SPACE = 1 << 20


def _no_space(path: Path) -> bool:
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _LOW_SPACE


def unexpected_constraint(exc: BaseException) -> VaultError | None:
    """What an ``sqlite3.IntegrityError`` that no caller handled means (review6 R6-5): cvault
    catches every constraint its own schema enforces where it can fail (a name taken, a path
    given twice), so one that reaches the CLI's or the service's top is a constraint cvault's
    schema does not have (a file writer's planted CHECK, trigger or ON CONFLICT) or a bug:
    either way the write did not happen, and it is an integrity failure (exit 6, fail closed),
    never "internal error". Only the top-level error handlers call this: inside the library an
    IntegrityError stays the caller's to handle (:func:`storage_error` returns None for it)."""
    if not isinstance(exc, sqlite3.IntegrityError):
        return None
    return IntegrityFailure(
        "integrity failure: the vault database refused a write with a constraint cvault did not"
        " expect (nothing was written; its schema may have been changed outside cvault): run"
        " cvault doctor"
    )


def storage_error(
    exc: BaseException, where: str = "the vault's storage", path: Path | None = None
) -> VaultError | None:
    """The user-facing error for a storage-level failure, or None if ``exc`` is not one.

    One place for every layer (the database, the local blob store, the CLI's and the service's
    error handlers): disk full -> StorageFull, read-only -> StorageReadOnly (exit 9), a damaged
    database file -> integrity failure (exit 6), an integer SQLite cannot hold -> invalid input
    (exit 2). Messages name the condition, never data. ``path``: the file being written, whose
    file system is asked for its free space when SQLite reports a plain "disk I/O error" (what
    it says when the write-ahead log cannot grow on a full disk)."""
    if isinstance(exc, VaultError):
        return exc
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if "full" in text:
            return StorageFull(f"no space left on {where} (database or disk is full); nothing was written")
        if "readonly" in text or "read-only" in text:
            return StorageReadOnly(f"{where} is read-only; nothing was written")
        if "disk i/o" in text:
            if path is not None and _no_space(path):
                return StorageFull(f"no space left on {where} (disk full); nothing was written")
            return BackendError(f"disk I/O error on {where}")
        if "locked" in text or "busy" in text:
            return VaultLocked("the vault database is locked by another process; try again")
        if "unable to open" in text:
            return BackendError(f"the vault database cannot be opened on {where}")
        return None
    if isinstance(exc, sqlite3.IntegrityError):
        return None  # a constraint the caller (or a trigger) enforces: the caller's to handle
    if isinstance(exc, sqlite3.DatabaseError):  # malformed, not a database
        return SchemaError(f"integrity failure: the vault database is damaged ({_sqlite_reason(exc)})")
    if isinstance(exc, OSError):
        if exc.errno in _FULL:
            return StorageFull(f"no space left on {where}; nothing was written")
        if exc.errno == errno.EROFS:
            return StorageReadOnly(f"{where} is read-only; nothing was written")
        return None
    if isinstance(exc, OverflowError):
        return InvalidInput("a number is out of range")
    if isinstance(exc, RecursionError):
        return InvalidInput("input nested too deeply")
    return None


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _statements(script: str) -> list[str]:
    """Split a migration script on ';' at line ends (migrations contain no triggers or strings with ;)."""
    parts, buf = [], []
    for line in script.splitlines():
        stripped = line.strip()
        if stripped.startswith("--") or not stripped:
            continue
        buf.append(line)
        if stripped.endswith(";"):
            parts.append("\n".join(buf))
            buf = []
    if buf:
        parts.append("\n".join(buf))
    return parts


def _sqlite_reason(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
