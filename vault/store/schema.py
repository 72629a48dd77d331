"""The schema of ``vault.db`` is part of the format and is authenticated at open (review 4, R4-0).

SQLite runs every trigger stored in the file inside cvault's own write transactions, and fills
every column an INSERT leaves out with the default stored in the file: a file writer (attacker
A4, docs/security.md) who plants a trigger, a view, an index or a rebuilt table changes what
cvault writes and then MACs. So before anything trusts a row (``Database.migrate``, at every
open, and again whenever ``PRAGMA schema_version`` moved during a connection's life, checked at
the start of each write transaction), ``sqlite_master`` must describe exactly the schema cvault's
migrations create:

* triggers and views: the same set, with the same SQL text (today: the three
  ``search_index_stale_*`` triggers of 0009 and no view);
* tables and indexes: the same set; an object whose stored SQL text equals a fresh vault's is
  what it says. A table's text may differ in a vault migrated step by step from an old release
  or by another SQLite (``ALTER TABLE ... RENAME`` quotes the name it writes, a file rebuilt by
  hand spaces it otherwise). Such an object must have the same SQL *tokens* (:func:`sql_tokens`:
  SQLite's tokenizer rules, whitespace and comments dropped, keywords case-folded, a quoted
  identifier equal to the bare one, everything else exact), so every CHECK, COLLATE, ON CONFLICT,
  AUTOINCREMENT, GENERATED, DEFAULT and REFERENCES action counts (review5 R5-5: the pragmas show
  no CHECK, ON CONFLICT or AUTOINCREMENT, a COLLATE only through an index); text that does not
  tokenise is refused (fail closed). It must
  also have the same structure by what SQLite says it is: ``PRAGMA table_xinfo`` (names, types,
  NOT NULL, defaults, primary key, hidden/generated), ``pragma_table_list`` (WITHOUT ROWID,
  STRICT), ``foreign_key_list`` and every index's ``index_list`` / ``index_xinfo`` (unique,
  origin, partial, columns, order, collation).

"Expected" comes from the migrations themselves: a fresh in-memory database migrated with them.
Doing that costs ~100 ms, so its ``sqlite_master`` rows are also kept in
:mod:`vault.store.schema_expected` (``python -m vault.store.schema && ruff format
vault/store/schema_expected.py`` writes it after a migration is added), used only while
its record of the migration files' names is the directory's; otherwise the in-memory
migration runs (correct, slower) and ``tests/integrity/test_schema.py`` fails until it is written
again. The check on a vault whose text matches is one query (docs/performance.md).

Anything else is :class:`SchemaTampered` (exit 6) naming the object; ``doctor`` lists them all.
"""

from __future__ import annotations

import os
import re
import sqlite3
from typing import Any

from vault.errors import IntegrityFailure

#: (type, name, tbl_name, sql) of every object, in one order
Row = tuple[str, str, str, Any]

_MASTER = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"
#: the same rows as one string joined by SQLite, in the order they were created (one value to
#: fetch and compare, no sort: the check on a vault created as a fresh one costs ~0.1 ms; another
#: order, as in a vault migrated from an old release, is compared row by row)
_JOINED = (
    "SELECT group_concat(type || char(31) || name || char(31) || tbl_name || char(31) ||"
    " ifnull(sql, char(0)), char(30)) FROM sqlite_master"
)


class SchemaTampered(IntegrityFailure):
    """integrity failure: the vault database's schema is not the one cvault's migrations create."""


def migration_key(folder: str) -> tuple[str, ...]:
    """What the expected schema is derived from: the migration files' names (a landed migration
    is never edited; tests/integrity/test_schema.py compares the kept copy with their text)."""
    from vault.store import db

    return tuple(sorted(name for name in os.listdir(folder) if db._migration_number(name) is not None))


#: migration key -> the expected rows and their :data:`_JOINED` string (one per process and key)
_CACHE: dict[tuple[str, ...], tuple[frozenset[Row], str]] = {}


def _expected(folder: str) -> tuple[frozenset[Row], str]:
    key = migration_key(folder)
    found = _CACHE.get(key)
    if found is not None:
        return found
    from vault.store import schema_expected

    rows = list(schema_expected.OBJECTS) if key == schema_expected.MIGRATIONS else fresh_rows(folder)
    joined = "\x1e".join("\x1f".join((r[0], r[1], r[2], "\x00" if r[3] is None else r[3])) for r in rows)
    found = _CACHE[key] = (frozenset(rows), joined)
    return found


def expected_rows(folder: str) -> frozenset[Row]:
    """The ``sqlite_master`` rows of a vault freshly migrated with the migrations in ``folder``."""
    return _expected(folder)[0]


def fresh_rows(folder: str) -> list[Row]:
    """Migrate an in-memory database with the migrations in ``folder``, as ``Database.migrate``
    does for a new vault, and return its ``sqlite_master`` rows."""
    from vault.store import db

    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(db.SCHEMA_MIGRATIONS_TABLE)
        for number, name in db._migration_names_in(folder):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                script = f.read()
            for statement in db._statements(script):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (number) VALUES (?)", (number,))
        return [tuple(r) for r in conn.execute(_MASTER)]
    finally:
        conn.close()


def problems(conn: sqlite3.Connection, folder: str) -> list[str]:
    """One line per schema object of ``conn``'s database that is not what the migrations in
    ``folder`` create (empty: the schema is cvault's)."""
    expected, joined = _expected(folder)
    if conn.execute(_JOINED).fetchone()[0] == joined:
        return []  # every object's stored SQL text is a fresh vault's: the common case, one query
    actual = [tuple(r) for r in conn.execute(_MASTER)]
    if len(actual) == len(expected) and expected.issuperset(actual):
        return []
    have = {(r[0], r[1]): r for r in actual}
    want = {(r[0], r[1]): r for r in expected}
    out: list[str] = []
    differing: list[tuple[Row, Row]] = []
    for key in sorted(have.keys() - want.keys()):
        out.append(f"{_name(have[key])} is not one cvault creates")
    for key in sorted(want.keys() - have.keys()):
        out.append(f"{_name(want[key])} is missing")
    for key in sorted(have.keys() & want.keys()):
        got, wanted = have[key], want[key]
        if got == wanted:
            continue
        if got[0] in ("table", "index") and got[2] == wanted[2]:
            differing.append((got, wanted))
        else:
            out.append(f"{_name(got)} differs from the one cvault creates")
    if differing:
        out.extend(_structural(conn, expected, differing))
    return out


def check(conn: sqlite3.Connection, folder: str) -> None:
    """Raise :class:`SchemaTampered` naming the first object that is not cvault's."""
    found = problems(conn, folder)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise SchemaTampered(
            f"integrity failure: the vault database's schema was changed outside cvault: {found[0]}"
            f"{more}; run cvault doctor"
        )


def _name(row: Row) -> str:
    kind, name, table = row[0], row[1], row[2]
    on = f" (on table {str(table)[:64]})" if kind in ("trigger", "index") else ""
    return f"{kind} {str(name)[:64]}{on}"


def _structural(
    conn: sqlite3.Connection, expected: frozenset[Row], pairs: list[tuple[Row, Row]]
) -> list[str]:
    """Tables and indexes whose stored text differs from a fresh vault's (a vault migrated from an
    old release): compared by what SQLite says they are."""
    fresh = sqlite3.connect(":memory:")
    try:
        # the expected schema built from its SQL text: tables first (sqlite_sequence comes by itself)
        order = {"table": 0, "index": 1, "view": 2, "trigger": 3}
        for row in sorted(expected, key=lambda r: (order.get(r[0], 9), r[1])):
            if row[3] is not None and not row[1].startswith("sqlite_"):
                fresh.execute(row[3])
        out = []
        for got, wanted in pairs:
            kind, name = got[0], got[1]
            # the same tokens: what no PRAGMA shows (CHECK, COLLATE, ON CONFLICT, AUTOINCREMENT, a
            # partial index's condition) counts too
            same = _same_tokens(got[3], wanted[3])
            if same and kind == "table":
                same = _table_shape(conn, name) == _table_shape(fresh, name)
            elif same:
                same = _index_shape(conn, name) == _index_shape(fresh, name)
            if not same:
                out.append(f"{_name(got)} differs from the one cvault creates")
        return out
    finally:
        fresh.close()


#: SQLite's keywords (https://sqlite.org/lang_keywords.html; ``sqlite3_keyword_name``), plus TRUE
#: and FALSE, which SQLite reads as values only when bare: a keyword is compared case-folded, and
#: never equals a quoted identifier (``DEFAULT NULL`` is not ``DEFAULT "NULL"``)
_KEYWORD_LIST = """
    ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE BEGIN
    BETWEEN BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE CROSS CURRENT
    CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT DEFERRABLE DEFERRED DELETE DESC
    DETACH DISTINCT DO DROP EACH ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE EXISTS EXPLAIN FAIL FILTER
    FIRST FOLLOWING FOR FOREIGN FROM FULL GENERATED GLOB GROUP GROUPS HAVING IF IGNORE IMMEDIATE IN
    INDEX INDEXED INITIALLY INNER INSERT INSTEAD INTERSECT INTO IS ISNULL JOIN KEY LAST LEFT LIKE
    LIMIT MATCH MATERIALIZED NATURAL NO NOT NOTHING NOTNULL NULL NULLS OF OFFSET ON OR ORDER OTHERS
    OUTER OVER PARTITION PLAN PRAGMA PRECEDING PRIMARY QUERY RAISE RANGE RECURSIVE REFERENCES REGEXP
    REINDEX RELEASE RENAME REPLACE RESTRICT RETURNING RIGHT ROLLBACK ROW ROWS SAVEPOINT SELECT SET
    TABLE TEMP TEMPORARY THEN TIES TO TRANSACTION TRIGGER UNBOUNDED UNION UNIQUE UPDATE USING VACUUM
    VALUES VIEW VIRTUAL WHEN WHERE WINDOW WITH WITHOUT TRUE FALSE"""
_KEYWORDS = frozenset(_KEYWORD_LIST.split())
#: SQLite's whitespace between tokens (tokenize.c: CC_SPACE; a vertical tab is not one)
_SPACE = " \t\n\f\r"
#: operators, longest first (tokenize.c)
_OPERATORS = (
    "->>", "->", "||", "<=", ">=", "==", "!=", "<>", "<<", ">>",
    "(", ")", ",", ";", "+", "-", "*", "/", "%", "=", "<", ">", "&", "|", "~", ".",
)  # fmt: skip
_NUMBER = re.compile(r"0[xX][0-9A-Fa-f]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BLOB = re.compile(r"[xX]'(?:[0-9A-Fa-f]{2})*'")


def _id_char(c: str, first: bool = False) -> bool:
    # tokenize.c: letters, "_", any byte >= 0x80 (so any non-ASCII character); then digits and "$"
    if not c.isascii():
        return True
    return c.isalpha() or c == "_" or (not first and (c.isdigit() or c == "$"))


def sql_tokens(sql: object) -> tuple[tuple[str, str], ...]:
    """The tokens of one stored SQL statement by SQLite's tokenizer rules, as (kind, value):
    whitespace and comments dropped, a keyword upper-cased (``kw``), an identifier bare or quoted
    (``"x"``, ``[x]``, `` `x` ``) as its name, exact case (``id``), strings, blobs, numbers and
    operators exact. Two statements with the same tokens are parsed alike. Raises ``ValueError``
    on anything that is not such a statement's text (the caller refuses it: fail closed)."""
    if not isinstance(sql, str):
        raise ValueError("not SQL text")
    if "\x00" in sql:
        # SQLite parses a schema row's text up to its first NUL: what follows (in a comment, say)
        # would be tokens here and nothing there
        raise ValueError("a NUL in SQL text")
    out: list[tuple[str, str]] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in _SPACE:
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise ValueError("unterminated comment")
            i = end + 2
        elif c in "'\"`":
            end = i + 1
            while True:
                end = sql.find(c, end)
                if end < 0:
                    raise ValueError("unterminated quote")
                if not sql.startswith(c, end + 1):
                    break
                end += 2
            body = sql[i + 1 : end]
            out.append(("str", sql[i : end + 1]) if c == "'" else ("id", body.replace(c + c, c)))
            i = end + 1
        elif c == "[":
            end = sql.find("]", i)
            if end < 0:
                raise ValueError("unterminated quote")
            out.append(("id", sql[i + 1 : end]))
            i = end + 1
        elif c in "xX" and sql.startswith("'", i + 1):
            blob = _BLOB.match(sql, i)
            if blob is None:
                raise ValueError("malformed blob")  # SQLite: TK_ILLEGAL
            out.append(("blob", blob.group().lower()))
            i = blob.end()
        elif (number := _NUMBER.match(sql, i)) is not None and (c.isdigit() or c == "."):
            i = number.end()
            if i < n and _id_char(sql[i]):
                raise ValueError("malformed number")
            out.append(("num", number.group()))
        elif _id_char(c, first=True):
            end = i + 1
            while end < n and _id_char(sql[end]):
                end += 1
            word = sql[i:end]
            folded = word.upper() if word.isascii() else word
            out.append(("kw", folded) if folded in _KEYWORDS else ("id", word))
            i = end
        else:
            op = next((o for o in _OPERATORS if sql.startswith(o, i)), None)
            if op is None:
                raise ValueError("not a token")
            out.append(("op", op))
            i += len(op)
    return tuple(out)


def _same_tokens(got: object, wanted: object) -> bool:
    if got is None or wanted is None:
        return got is wanted
    try:
        return sql_tokens(got) == sql_tokens(wanted)
    except ValueError:
        return False


def _table_shape(conn: sqlite3.Connection, table: str) -> tuple:
    columns = conn.execute("SELECT * FROM pragma_table_xinfo(?) ORDER BY cid", (table,)).fetchall()
    kind = conn.execute(
        "SELECT type, ncol, wr, strict FROM pragma_table_list WHERE schema = 'main' AND name = ?", (table,)
    ).fetchall()
    keys = conn.execute("SELECT * FROM pragma_foreign_key_list(?) ORDER BY id, seq", (table,)).fetchall()
    indexes = conn.execute(
        'SELECT name, "unique", origin, partial FROM pragma_index_list(?) ORDER BY name', (table,)
    ).fetchall()
    return (columns, kind, keys, [(ix, _index_columns(conn, ix[0])) for ix in indexes])


def _index_shape(conn: sqlite3.Connection, index: str) -> list[tuple]:
    table = conn.execute("SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name = ?", (index,))
    row = table.fetchone()
    if row is None:
        return []
    listed = conn.execute(
        'SELECT name, "unique", origin, partial FROM pragma_index_list(?) WHERE name = ?', (row[0], index)
    ).fetchall()
    return [(*listed[0], tuple(_index_columns(conn, index)))] if listed else []


def _index_columns(conn: sqlite3.Connection, index: str) -> list[tuple]:
    return conn.execute("SELECT * FROM pragma_index_xinfo(?) ORDER BY seqno", (index,)).fetchall()


def write_expected(path: str | None = None) -> str:
    """Write :mod:`vault.store.schema_expected` from the migrations (returns the file's path)."""
    from vault.store import db

    path = path or os.path.join(os.path.dirname(__file__), "schema_expected.py")
    rows = fresh_rows(db.MIGRATIONS_DIR)  # in the order a fresh vault creates them
    lines = [
        "# ruff: noqa: E501",
        '"""The schema a fresh vault has: generated by ``python -m vault.store.schema`` from the',
        'migrations (vault.store.schema; tests/integrity/test_schema.py keeps it current). Do not edit."""',
        "",
        "#: the migration files' names when this was written",
        "MIGRATIONS = (",
        *(f"    {name!r}," for name in migration_key(db.MIGRATIONS_DIR)),
        ")",
        "#: (type, name, tbl_name, sql) of every object in sqlite_master, in the order created",
        "OBJECTS = (",
        *(f"    {row!r}," for row in rows),
        ")",
        "",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path


if __name__ == "__main__":  # pragma: no cover - the maintainer's command
    print(f"wrote {write_expected()}; now: ruff format vault/store/schema_expected.py")
