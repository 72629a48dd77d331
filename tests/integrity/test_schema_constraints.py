"""A table rebuilt with what no PRAGMA shows is refused at open (review5 R5-5; docs/security.md
guarantee 23, "the schema is cvault's").

A table whose stored SQL text is not a fresh vault's is compared by its SQL tokens
(vault.store.schema.sql_tokens) as well as by the pragmas. The pragmas alone show no CHECK
constraint, no ON CONFLICT clause, no AUTOINCREMENT and a column's COLLATE only through an index,
so a file writer (A4) who rebuilt a table with plain sqlite3 (CREATE, INSERT ... SELECT, DROP,
RENAME) could make cvault's writes fail (a CHECK), have SQLite silently delete the row a write
collides with (ON CONFLICT REPLACE: records, audit rows), merge names (COLLATE NOCASE) or have ids
reused (AUTOINCREMENT removed); the vault opened. Each variant below is refused at open with exit
6 naming the table, by ``cvault doctor`` too, and listed by the library's doctor check; the same
table spelt otherwise opens, and so do the old-release fixtures
(tests/integrity/test_schema.py::test_the_old_fixtures_migrated_step_by_step_open)."""

from __future__ import annotations

import pytest

from tests.helpers import file_sql
from tests.integrity.test_schema import rebuild_table
from vault.store import db as store_db
from vault.store import schema

#: (test id, table, text in the fresh table, what the file writer puts instead)
PLANTED = [
    # CHECK constraints: a write cvault makes fails (DoS: no user name of 12 characters or more),
    # or a value it refuses is let in
    ("check-on-a-column", "users", "name                 TEXT NOT NULL UNIQUE",
     "name                 TEXT NOT NULL UNIQUE CHECK (length(name) < 12)"),
    ("table-check", "users", ", mac BLOB)", ", mac BLOB, CHECK (disabled = 0))"),
    ("check-widened", "account_requests", "'single_operator', 'init'", "'single_operator', 'init', 'x'"),
    ("check-removed", "outbox", " CHECK (op IN ('put', 'delete'))", ""),
    # ON CONFLICT: a colliding write silently deletes the row it collides with, or is dropped
    ("unique-on-conflict-replace", "clients", "name                TEXT NOT NULL UNIQUE",
     "name                TEXT NOT NULL UNIQUE ON CONFLICT REPLACE"),
    ("table-unique-on-conflict-replace", "records", "UNIQUE (client_id, path_tag)",
     "UNIQUE (client_id, path_tag) ON CONFLICT REPLACE"),
    ("primary-key-on-conflict-replace", "audit_events", "seq            INTEGER PRIMARY KEY",
     "seq            INTEGER PRIMARY KEY ON CONFLICT REPLACE"),
    ("not-null-on-conflict-ignore", "record_versions", "created_by  TEXT NOT NULL",
     "created_by  TEXT NOT NULL ON CONFLICT IGNORE"),
    # COLLATE: names that differ only in case become one (on an indexed column index_xinfo shows
    # it too; on another column only the tokens do)
    ("collate-nocase-unique-tag", "records", "path_tag        BLOB NOT NULL",
     "path_tag        BLOB NOT NULL COLLATE NOCASE"),
    ("collate-nocase-column", "sessions", "origin     TEXT NOT NULL",
     "origin     TEXT NOT NULL COLLATE NOCASE"),
    # REFERENCES actions: deleting a record or a client takes other rows with it (foreign_key_list
    # shows these too: kept so that a change to the comparison keeps them)
    ("fk-action-changed", "import_origins", "ON DELETE CASCADE", "ON DELETE SET NULL"),
    ("fk-action-added", "client_keys", "REFERENCES clients(id)", "REFERENCES clients(id) ON DELETE CASCADE"),
    # AUTOINCREMENT: ids of deleted rows reused, or the sequence another table's
    ("autoincrement-removed", "users", "INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER PRIMARY KEY"),
    ("autoincrement-added", "audit_events", "seq            INTEGER PRIMARY KEY",
     "seq            INTEGER PRIMARY KEY AUTOINCREMENT"),
    # GENERATED: a column whose value the file decides (table_xinfo shows it too: hidden 2)
    ("generated-column", "users", "training_valid_until INTEGER",
     "training_valid_until INTEGER GENERATED ALWAYS AS (4102444800) VIRTUAL"),
]  # fmt: skip


def _fresh_sql(table: str) -> str:
    (sql,) = (r[3] for r in schema.expected_rows(store_db.MIGRATIONS_DIR) if r[:2] == ("table", table))
    return sql


@pytest.mark.parametrize(("table", "old", "new"), [p[1:] for p in PLANTED], ids=[p[0] for p in PLANTED])
def test_a_table_rebuilt_with_what_no_pragma_shows_is_refused_at_open(vdir, table, old, new):
    assert old in _fresh_sql(table)  # the fresh table has the text the file writer replaces
    rebuild_table(vdir.home, table, old, new)
    line = f"table {table} differs from the one cvault creates"
    for args in (("client", "list"), ("doctor",)):
        proc = vdir.cli(*args)
        assert proc.returncode == 6, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and line in lines[0] and "run cvault doctor" in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
    db = store_db.Database(vdir.home / "vault.db")
    try:
        assert db.schema_problems() == [line]  # what the library's doctor lists, this table only
    finally:
        db.close()


#: text that differs from a fresh table's and means the same: whitespace, comments, the case of a
#: keyword, an identifier quoted (as ALTER TABLE ... RENAME writes the name), a quote style
SAME_MEANING = [
    ("spacing", "name                 TEXT NOT NULL UNIQUE", "name TEXT\n\tNOT   NULL UNIQUE"),
    ("comments", "locked_until         INTEGER,", "locked_until INTEGER /* until */, -- unlocked\n"),
    ("keyword-case", "created_by           TEXT NOT NULL,", "created_by TEXT not Null,"),
    ("quoted-names", "disabled             INTEGER NOT NULL DEFAULT 0",
     '"disabled" INTEGER NOT NULL DEFAULT 0'),
    ("brackets", "failed_count         INTEGER", "[failed_count] INTEGER"),
    ("backtick", "enrolled_at          INTEGER", "`enrolled_at` INTEGER"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new"), [p[1:] for p in SAME_MEANING], ids=[p[0] for p in SAME_MEANING])
def test_a_table_whose_text_differs_only_in_spelling_opens(vdir, old, new):
    """The vault migrated from an old release, or written by another SQLite, stores a table's
    text in other words: the same tokens open (and the pragmas agree)."""
    assert old in _fresh_sql("users")
    rebuild_table(vdir.home, "users", old, new)
    db = store_db.Database(vdir.home / "vault.db")
    try:
        stored = db.scalar("SELECT sql FROM sqlite_master WHERE name = 'users'")
        assert stored != _fresh_sql("users")  # compared by tokens, not as the same text
        assert db.schema_problems() == []
    finally:
        db.close()
    assert vdir.cli("client", "list").returncode == 0


@pytest.mark.parametrize(
    ("planted", "why"),
    [
        ('"NULL"', "a quoted identifier is not the keyword"),
        ("'0'", "a string is not the number"),
        ("0.0", "another number"),
    ],
)
def test_a_default_spelt_as_another_token_is_refused(vdir, planted, why):
    """Quoting is normalised for identifiers only (table_xinfo's dflt_value shows these too)."""
    rebuild_table(vdir.home, "users", "failed_count         INTEGER NOT NULL DEFAULT 0",
                  f"failed_count         INTEGER NOT NULL DEFAULT {planted}")  # fmt: skip
    db = store_db.Database(vdir.home / "vault.db")
    try:
        assert db.schema_problems() == ["table users differs from the one cvault creates"], why
    finally:
        db.close()


def test_sql_text_that_does_not_tokenise_is_refused():
    """Fail closed: what is not a statement's tokens never equals the fresh one."""
    fresh = _fresh_sql("users")
    assert schema.sql_tokens(fresh) == schema.sql_tokens(fresh.replace("    ", " /* x */ "))
    for bad in (
        fresh + " /* open",
        fresh.replace("(", "( ?", 1),
        fresh + " 'open",
        fresh + "\v",
        b"x",
        1,
        fresh.replace("-- ", "-- \x00", 1),
        fresh + " x'abc'",
        fresh + " x'zz'",
    ):
        with pytest.raises(ValueError):
            schema.sql_tokens(bad)
    assert not schema._same_tokens(fresh + " /* open", fresh)
    assert not schema._same_tokens(None, fresh) and schema._same_tokens(None, None)


@pytest.mark.parametrize(
    ("where", "opens"),
    [
        ("where  ended_at is   NULL -- open ones", True),  # the same tokens
        ("WHERE ended_at IS NULL AND user_id > 1", False),  # another condition: a second open one
        ("WHERE ended_by IS NULL", False),
    ],
)
def test_a_partial_index_is_compared_by_its_tokens(vdir, where, opens):
    """A partial index's condition is in its text only (``index_list`` says "partial", no more)."""
    file_sql(vdir, "DROP INDEX assignments_open")
    file_sql(vdir, f"CREATE UNIQUE INDEX assignments_open ON assignments(client_id, user_id) {where}")
    db = store_db.Database(vdir.home / "vault.db")
    try:
        expected = (
            []
            if opens
            else ["index assignments_open (on table assignments) differs from the one cvault creates"]
        )
        assert db.schema_problems() == expected
    finally:
        db.close()


def test_the_keywords_are_the_linked_sqlites():
    """A keyword never equals a quoted identifier, so the list must be SQLite's own
    (``sqlite3_keyword_name``), plus TRUE and FALSE (values only when bare)."""
    import _sqlite3
    import ctypes

    lib = ctypes.CDLL(_sqlite3.__file__)
    names = set()
    for i in range(lib.sqlite3_keyword_count()):
        text, size = ctypes.c_char_p(), ctypes.c_int()
        assert lib.sqlite3_keyword_name(i, ctypes.byref(text), ctypes.byref(size)) == 0
        names.add(text.value[: size.value].decode())
    assert names | {"TRUE", "FALSE"} == schema._KEYWORDS


def test_the_check_of_a_vault_whose_text_matches_is_one_query(vdir):
    """The tokens are compared only when a text differs: the check at open of a vault whose
    schema text is a fresh vault's stays one statement (docs/performance.md)."""
    db = store_db.Database(vdir.home / "vault.db")
    statements: list[str] = []
    try:
        db.conn.set_trace_callback(statements.append)
        assert schema.problems(db.conn, store_db.MIGRATIONS_DIR) == []
    finally:
        db.conn.set_trace_callback(None)
        db.close()
    assert statements == [schema._JOINED]
