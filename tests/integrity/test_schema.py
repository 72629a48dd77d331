"""The schema of vault.db is authenticated at open (review 4, R4-0; docs/security.md guarantee 23,
"the schema is cvault's"): a trigger, view, index or rebuilt table a file writer (A4) planted with
plain sqlite3 is an integrity failure (exit 6) naming the object, before any row is trusted, and
again when the schema changes while a connection is open (vault.store.schema).

The attacks are review4's reproductions (/work/brief/review4/test_r4_planted_triggers.py): SQLite
runs planted triggers inside cvault's own write transactions, so without the check cvault MACs the
file writer's values (a disable undone, an old password kept current, a purge that keeps the
client key, new accounts "trained until 2100")."""

from __future__ import annotations

import sqlite3
import tarfile

import pytest

from tests.helpers import ROOT, add_client, clock_at, file_sql, operator
from tests.integrity.test_upgrade_row_macs import _sql
from vault.principal import Principal
from vault.store import db as store_db
from vault.store import rowmac, schema, schema_expected
from vault.store.rowmac import RowTampered
from vault.store.schema import SchemaTampered

FIXTURES = ROOT / "tests" / "integrity" / "fixtures"


#: what a file writer does with plain sqlite3 on the real file (no key needed)
_plant = _sql


def _refused_at_open(vdir, clock, *names: str) -> str:
    with pytest.raises(SchemaTampered) as caught:
        vdir.open(clock=clock)
    message = caught.value.message
    assert "schema" in message and "run cvault doctor" in message, message
    for name in names:
        assert name in message, message
    return message


def rebuild_table(home, table: str, old: str, new: str) -> None:
    """What a file writer does with plain sqlite3 (no key): rebuild ``table`` with ``old``
    replaced by ``new`` in its SQL (CREATE the new one, INSERT ... SELECT the rows, DROP, RENAME,
    its indexes and triggers created again)."""
    conn = sqlite3.connect(home / "vault.db")
    try:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        sql = sql.fetchone()[0].replace(f'CREATE TABLE "{table}"', f"CREATE TABLE {table}", 1)
        planted = sql.replace(old, new)
        assert planted != sql, (table, old)
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("PRAGMA legacy_alter_table = ON")
        conn.execute(planted.replace(f"CREATE TABLE {table}", f"CREATE TABLE {table}_planted", 1))
        # every column SQLite lets one write (not a generated one)
        info = conn.execute(f"SELECT name FROM pragma_table_xinfo('{table}_planted') WHERE hidden = 0")
        columns = ", ".join(f'"{r[0]}"' for r in info)
        conn.execute(f"INSERT INTO {table}_planted ({columns}) SELECT {columns} FROM {table}")
        # its indexes and triggers go with the DROP: the file writer creates them again
        others = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND tbl_name = ?"
            " AND sql IS NOT NULL ORDER BY rowid",
            (table,),
        ).fetchall()
        conn.execute(f"DROP TABLE {table}")
        conn.execute(f"ALTER TABLE {table}_planted RENAME TO {table}")
        for (statement,) in others:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def test_a_trigger_that_undoes_a_disable_is_refused_at_open(staff):
    """R4-0 case 1: AFTER UPDATE triggers set ``users.disabled`` and the session's ``ended_at``
    back before cvault stamps the rows (bob kept reading acme's secrets, every row verified)."""
    clock = clock_at()
    uid = staff.bob.user_id
    _plant(
        staff.vdir.home,
        f"CREATE TRIGGER users_touch AFTER UPDATE OF disabled ON users WHEN NEW.id = {uid}"
        f" BEGIN UPDATE users SET disabled = 0 WHERE rowid = NEW.rowid; END",
        f"CREATE TRIGGER sessions_touch AFTER UPDATE OF ended_at ON sessions WHEN NEW.user_id = {uid}"
        f" BEGIN UPDATE sessions SET ended_at = NULL WHERE rowid = NEW.rowid; END",
    )
    message = _refused_at_open(staff.vdir, clock, "trigger sessions_touch (on table sessions)")
    assert "and 1 more" in message  # users_touch too (doctor lists each)


def test_a_trigger_that_keeps_the_old_password_current_is_refused_at_open(staff):
    """R4-0 case 2: ``records.current_version`` put back to 1 before cvault MACs the row."""
    clock = clock_at()
    v = staff.vdir.open(clock=clock)
    v.secrets.put(staff.bob.principal(v), "acme", "office/firewall", "note", {"text": "old-password"})
    v.close()
    _plant(
        staff.vdir.home,
        "CREATE TRIGGER records_touch AFTER UPDATE OF current_version ON records"
        " WHEN NEW.current_version > OLD.current_version"
        " BEGIN UPDATE records SET current_version = OLD.current_version WHERE rowid = NEW.rowid; END",
    )
    _refused_at_open(staff.vdir, clock, "trigger records_touch (on table records)")


def test_a_trigger_on_custody_jobs_is_refused_at_open(vdir):
    """R4-0 case 3: a new custody job's ``rotate_client_key`` turned off before cvault MACs it
    (a purge that kept the purged record's client key)."""
    clock = clock_at()
    v = vdir.open(clock)
    add_client(v, "acme")
    v.secrets.put(operator(), "acme", "office/firewall", "access", {"host": "fw", "password": "pw-1"})
    v.close()
    _plant(
        vdir.home,
        "CREATE TRIGGER custody_jobs_touch AFTER INSERT ON custody_jobs"
        " BEGIN UPDATE custody_jobs SET rotate_client_key = 0 WHERE rowid = NEW.rowid; END",
    )
    _refused_at_open(vdir, clock, "trigger custody_jobs_touch")


def test_a_rebuilt_table_with_a_planted_default_is_refused_at_open(staff):
    """R4-0 case 4: ``users`` rebuilt with ``training_valid_until DEFAULT <2100>`` (new accounts
    were MACed "trained until 2100"). Compared structurally: its text differs anyway."""
    rebuild_table(
        staff.vdir.home,
        "users",
        "training_valid_until INTEGER",
        "training_valid_until INTEGER DEFAULT 4102444800",
    )
    _refused_at_open(staff.vdir, clock_at(), "table users differs")


def test_a_planted_view_or_index_is_refused_at_open(vdir):
    _plant(vdir.home, "CREATE VIEW users_view AS SELECT * FROM users")
    _refused_at_open(vdir, None, "view users_view")
    _plant(vdir.home, "DROP VIEW users_view", "CREATE INDEX users_planted ON users(name)")
    _refused_at_open(vdir, None, "index users_planted (on table users)")


def test_an_edited_trigger_of_cvault_is_refused_at_open(vdir):
    """cvault's own triggers (0009's search_index_stale_*) are compared by their SQL text."""
    _plant(
        vdir.home,
        "DROP TRIGGER search_index_stale_insert",
        "CREATE TRIGGER search_index_stale_insert AFTER INSERT ON records BEGIN SELECT 1; END",
    )
    _refused_at_open(vdir, None, "trigger search_index_stale_insert (on table records) differs")
    _plant(vdir.home, "DROP TRIGGER search_index_stale_insert")
    _refused_at_open(vdir, None, "trigger search_index_stale_insert (on table records) is missing")


def test_a_trigger_planted_while_the_vault_is_open_is_refused_before_the_next_write(staff):
    """A running process (``cvault serve``): the file changes under an open connection. The next
    write transaction sees ``PRAGMA schema_version`` move, checks again and writes nothing."""
    clock = clock_at()
    v = staff.vdir.open(clock=clock)
    try:
        uid = staff.bob.user_id
        _plant(
            staff.vdir.home,
            f"CREATE TRIGGER users_touch AFTER UPDATE OF disabled ON users WHEN NEW.id = {uid}"
            f" BEGIN UPDATE users SET disabled = 0 WHERE rowid = NEW.rowid; END",
        )
        with pytest.raises(SchemaTampered, match="trigger users_touch"):
            v.users.disable(staff.alice.principal(v), "bob")
        assert v.ctx.db.scalar("SELECT disabled FROM users WHERE id = ?", (uid,)) == 0
        root = Principal(name="doctor", roles=frozenset({"system"}), kind="system")
        problems = v.maintenance.doctor(root).problems
        assert any("trigger users_touch (on table users)" in p for p in problems), problems
    finally:
        v.close()


def test_the_cli_refuses_a_planted_trigger_with_exit_6_and_one_line(vdir):
    v = vdir.open()
    add_client(v, "acme")
    v.secrets.put(operator(), "acme", "office/firewall", "access", {"host": "fw", "password": "pw-1"})
    v.close()
    assert vdir.cli("secret", "get", "acme", "office/firewall", "--field", "password").returncode == 0
    _plant(
        vdir.home,
        "CREATE TRIGGER audit_touch BEFORE INSERT ON audit_events BEGIN SELECT RAISE(IGNORE); END",
    )
    for args in (("secret", "get", "acme", "office/firewall", "--field", "password"), ("doctor",)):
        proc = vdir.cli(*args)
        assert proc.returncode == 6, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "trigger audit_touch (on table audit_events)" in lines[0], proc.stderr
        assert "pw-1" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


def test_a_table_whose_text_differs_is_compared_structurally(vdir):
    """A vault migrated step by step from an old release may store a table's SQL in other words
    (``ALTER TABLE`` rewrites it): the same structure opens, a planted default does not."""
    rebuild_table(vdir.home, "users", "training_valid_until INTEGER", "training_valid_until   INTEGER")
    stored = {tuple(r) for r in file_sql(vdir, "SELECT type, name, tbl_name, sql FROM sqlite_master")}
    differing = stored - schema.expected_rows(store_db.MIGRATIONS_DIR)
    assert [r[:2] for r in differing] == [("table", "users")]  # the structural comparison runs
    vdir.open().close()
    rebuild_table(
        vdir.home, "users", "training_valid_until   INTEGER", "training_valid_until INTEGER DEFAULT 1"
    )
    _refused_at_open(vdir, None, "table users differs")


def test_the_old_fixtures_migrated_step_by_step_open(tmp_path):
    for archive in ("pre_rowmac_vault.tar.gz", "pre_mark_vault.tar.gz"):
        with tarfile.open(FIXTURES / archive) as tar:
            tar.extractall(tmp_path / archive, filter="data")
        db = store_db.Database(tmp_path / archive / "vault" / "vault.db")
        try:
            db.migrate()  # checks the schema: raises if it were refused
            assert db.schema_problems() == []
            for *_, sql in db.all(schema._MASTER):
                if sql is not None:
                    schema.sql_tokens(sql)  # every stored statement tokenises (R5-5)
        finally:
            db.close()


def test_the_kept_schema_is_what_the_migrations_create():
    """vault/store/schema_expected.py must be the migrations' schema. After adding a migration:
    ``python -m vault.store.schema && ruff format vault/store/schema_expected.py``."""
    folder = store_db.MIGRATIONS_DIR
    assert schema.migration_key(folder) == schema_expected.MIGRATIONS, "regenerate schema_expected.py"
    assert set(schema_expected.OBJECTS) == set(schema.fresh_rows(folder)), "regenerate schema_expected.py"


def test_without_the_kept_schema_the_migrations_are_run_in_memory(tmp_path, monkeypatch):
    """A migration added without regenerating the kept copy: the expected schema is derived from
    the migrations (correct, slower), so a vault with the new migration still opens."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for _, path in store_db.migrations():
        (folder / path.name).write_text(path.read_text())
    (folder / "0099_extra.sql").write_text("CREATE TABLE extra (x INTEGER);\n")
    monkeypatch.setattr(store_db, "MIGRATIONS_DIR", str(folder))
    db = store_db.Database(tmp_path / "v.db", create=True)
    try:
        assert db.migrate() == 99
        assert db.schema_problems() == []
        db.conn.execute("CREATE TRIGGER extra_touch AFTER INSERT ON extra BEGIN SELECT 1; END")
        assert db.schema_problems() == ["trigger extra_touch (on table extra) is not one cvault creates"]
    finally:
        db.close()


# --- defence in depth: rowmac MACs what cvault wrote, never what it reads back --------------------


def _behind_the_check(v, *statements: str) -> None:
    """A schema change the open-time check did not see (as if it were bypassed): made on the
    vault's own connection, its cookie taken as checked, so only vault.store.rowmac stands."""
    db = v.ctx.db
    for statement in statements:
        db.conn.execute(statement)
    db._schema_cookie = db.conn.execute("PRAGMA schema_version").fetchone()[0]


def test_rowmac_refuses_an_update_a_trigger_changed_and_writes_nothing(staff):
    clock = clock_at()
    v = staff.vdir.open(clock=clock)
    try:
        uid = staff.bob.user_id
        _behind_the_check(
            v,
            f"CREATE TRIGGER users_touch AFTER UPDATE OF disabled ON users WHEN NEW.id = {uid}"
            f" BEGIN UPDATE users SET disabled = 0 WHERE rowid = NEW.rowid; END",
        )
        with pytest.raises(RowTampered, match="not stored as cvault wrote it"):
            v.users.disable(staff.alice.principal(v), "bob")
        _behind_the_check(
            v,
            "DROP TRIGGER users_touch",
            "CREATE TRIGGER users_ignore BEFORE UPDATE OF disabled ON users BEGIN SELECT RAISE(IGNORE); END",
        )
        with pytest.raises(RowTampered, match="not stored as cvault wrote it"):
            v.users.disable(staff.alice.principal(v), "bob")
        _behind_the_check(v, "DROP TRIGGER users_ignore")
        with v.ctx.db.read() as conn:  # nothing was written: bob's row is authentic and enabled
            assert rowmac.select(conn, "users", "id = ?", (uid,))[0][3] == 0
        v.users.disable(staff.alice.principal(v), "bob")  # the schema is cvault's again
        assert v.ctx.db.scalar("SELECT disabled FROM users WHERE id = ?", (uid,)) == 1
    finally:
        v.close()


def test_rowmac_refuses_an_insert_a_trigger_changed(vdir):
    v = vdir.open()
    try:
        add_client(v, "acme")
        v.secrets.put(operator(), "acme", "office/firewall", "access", {"host": "fw", "password": "pw-1"})
        _behind_the_check(
            v,
            "CREATE TRIGGER custody_jobs_touch AFTER INSERT ON custody_jobs"
            " BEGIN UPDATE custody_jobs SET rotate_client_key = 0 WHERE rowid = NEW.rowid; END",
        )
        with pytest.raises(RowTampered, match="custody_jobs row .* not stored as cvault wrote it"):
            v.secrets.rm(operator(), "acme", "office/firewall", purge=True)
    finally:
        v.close()


def test_rowmac_insert_writes_every_covered_column_so_a_planted_default_is_not_maced(staff):
    """A DEFAULT the check did not see: ``users.add`` writes ``training_valid_until`` (NULL) and
    ``disabled`` (0) itself, so the new account is neither trained nor disabled by the file."""
    v = staff.vdir.open(clock=clock_at())
    try:
        sql = v.ctx.db.scalar("SELECT sql FROM sqlite_master WHERE name = 'users'")
        planted = sql.replace(
            "training_valid_until INTEGER", "training_valid_until INTEGER DEFAULT 4102444800"
        )
        planted = planted.replace("DEFAULT 0", "DEFAULT 1", 1)
        assert "4102444800" in planted and "DEFAULT 1" in planted
        v.ctx.db.conn.execute("PRAGMA foreign_keys = OFF")
        v.ctx.db.conn.execute("PRAGMA legacy_alter_table = ON")
        _behind_the_check(
            v,
            planted.replace("CREATE TABLE users", "CREATE TABLE users_planted", 1),
            "INSERT INTO users_planted SELECT * FROM users",
            "DROP TABLE users",
            "ALTER TABLE users_planted RENAME TO users",
        )
        v.users.add(staff.alice.principal(v), "newbie", ["engineer"])
        with v.ctx.db.read() as conn:
            (row,) = rowmac.select(conn, "users", "name = ?", ("newbie",))
        assert row[3:6] == (0, None, None)  # disabled, locked_until, training_valid_until: MAC valid
    finally:
        v.close()


def test_rowmac_knows_each_covered_tables_rowid_column_and_defaults():
    """``rowmac.ROWID_COLUMNS`` / ``rowmac.DEFAULTS`` are the migrations': an insert leaves only
    the rowid to SQLite and writes every other covered column, with the DEFAULT cvault means."""
    conn = sqlite3.connect(":memory:")
    try:
        for row in sorted(schema_expected.OBJECTS, key=lambda r: (r[0] != "table", r[1])):
            if row[3] is not None and not row[1].startswith("sqlite_") and row[0] in ("table", "index"):
                conn.execute(row[3])
        for table, spec in rowmac.TABLES.items():
            info = {c[1]: c for c in conn.execute(f"PRAGMA table_xinfo({table})")}
            keys = [c for c in info.values() if c[5]]
            alias = keys[0][1] if len(keys) == 1 and keys[0][2].upper() == "INTEGER" else None
            assert rowmac.ROWID_COLUMNS.get(table) == alias, table
            defaults = {}
            for column in spec.columns:
                name = column.removesuffix(" IS NULL")
                if info[name][4] is not None:
                    defaults[name] = int(info[name][4])
            assert rowmac.DEFAULTS.get(table, {}) == defaults, table
    finally:
        conn.close()
