"""The migration runner is set-based (issue 12; vault/store/db.py): every known migration number
not recorded in ``schema_migrations`` is applied, whatever numbers the vault already has, and
vaults from before the table (only ``PRAGMA user_version``) upgrade cleanly."""

import sqlite3

import pytest

from vault.store import db as store_db
from vault.store.db import Database, SchemaError, SchemaTooNew, migrations


def _sql(path, *statements):
    conn = sqlite3.connect(path)
    try:
        for sql in statements:
            conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


def _query(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _indexes(path) -> set[str]:
    return {r[0] for r in _query(path, "SELECT name FROM sqlite_master WHERE type = 'index'")}


@pytest.fixture
def migdir(tmp_path, monkeypatch):
    folder = tmp_path / "migrations"
    folder.mkdir()
    monkeypatch.setattr(store_db, "MIGRATIONS_DIR", folder)
    return folder


def test_a_number_that_lands_below_the_highest_applied_is_applied(migdir, tmp_path):
    (migdir / "0001_a.sql").write_text("CREATE TABLE a (x INTEGER);\n")
    (migdir / "0003_c.sql").write_text("CREATE TABLE c (x INTEGER);\n")
    path = tmp_path / "v.db"
    db = Database(path, create=True)
    assert db.migrate() == 3
    assert db.applied_migrations() == {1, 3}
    db.close()
    # 0002 lands after the vault already has 0003 (numbers are reserved per issue, land in any order)
    (migdir / "0002_b.sql").write_text("CREATE TABLE b (x INTEGER);\nINSERT INTO b VALUES (2);\n")
    db = Database(path)
    assert db.pending_migrations() == [2]
    assert db.migrate() == 3  # the highest number applied is still 3
    assert db.applied_migrations() == {1, 2, 3}
    assert db.pending_migrations() == []
    assert db.all("SELECT x FROM b") == [(2,)]
    assert db.schema_version() == 3
    # nothing is applied twice
    assert db.migrate() == 3
    assert db.all("SELECT x FROM b") == [(2,)]
    db.close()


def test_a_vault_from_before_the_table_is_recorded_and_gets_the_rest(tmp_path):
    """A database the previous runner wrote: migrations 0001-0011 applied in order, only
    ``user_version`` (11) recording it, no ``schema_migrations``."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for number, migration in migrations():
        if number <= 11:
            for statement in store_db._statements(migration.read_text()):
                conn.execute(statement)
    conn.execute("PRAGMA user_version=11")
    conn.commit()
    conn.close()
    known = [n for n, _ in migrations()]
    db = Database(path)
    assert db.applied_migrations() is None
    assert db.migrate() == max(known)  # would fail ("already exists") if 0001-0011 ran again
    assert db.applied_migrations() == set(known)
    assert db.pending_migrations() == []
    assert {"audit_events_client_seq", "audit_events_actor_seq"} <= _indexes(path)
    assert "mac" in {r[1] for r in db.all("PRAGMA table_info(users)")}  # 0014 applied
    db.close()


def test_a_missing_number_in_the_middle_is_applied_again(vdir):
    path = vdir.home / "vault.db"
    _sql(
        path,
        "DELETE FROM schema_migrations WHERE number = 13",
        "DROP INDEX audit_events_client_seq",
    )
    v = vdir.open()
    try:
        assert 13 in v.ctx.db.applied_migrations()
        assert v.ctx.db.pending_migrations() == []
    finally:
        v.close()
    assert "audit_events_client_seq" in _indexes(path)


@pytest.mark.parametrize("number", [12, 9999])
def test_a_migration_this_build_does_not_know_is_refused(vdir, number):
    """0012 is reserved and unused by this build: a vault that has it was written by a newer one."""
    _sql(vdir.home / "vault.db", f"INSERT INTO schema_migrations (number) VALUES ({number})")
    with pytest.raises(SchemaTooNew):
        Database(vdir.home / "vault.db").migrate()
    proc = vdir.cli("client", "list")
    assert proc.returncode == 6, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "newer" in lines[0] and "upgrade cvault" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_user_version_that_disagrees_with_the_table_is_refused(vdir):
    top = max(n for n, _ in migrations())
    _sql(vdir.home / "vault.db", f"DELETE FROM schema_migrations WHERE number = {top}")
    # the table now ends below user_version: the highest migration's effects are there, its row not
    with pytest.raises(SchemaError):
        Database(vdir.home / "vault.db").migrate()
