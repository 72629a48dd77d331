"""A vault written by cvault before row MACs (tests/integrity/fixtures/pre_rowmac_vault.tar.gz, made
by main at 9aa0ac5: schema 0013, sessions as SHA-256 only) opens with this build, gets its MACs
on the first unseal (once), and is then protected like a new one (issue 12; docs/format.md, "Row
MACs"), and only through the operator's explicit ``cvault upgrade``: nothing older is ever
authenticated automatically (independent review R1; docs/format.md "Upgrades")."""

from __future__ import annotations

import json
import sqlite3
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest

from tests.factories import Person, write_session_file
from tests.helpers import ROOT, T0, VaultDir, cli_upgrade, clock_at, run_cli
from vault.errors import AuthenticationFailed, IntegrityFailure, NotFound
from vault.facade import Vault
from vault.store import rowmac
from vault.store.db import migrations

FIXTURE = ROOT / "tests" / "integrity" / "fixtures" / "pre_rowmac_vault.tar.gz"


def _sql(home: Path, *statements: str) -> None:
    conn = sqlite3.connect(home / "vault.db")
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def _query(home: Path, sql: str):
    conn = sqlite3.connect(home / "vault.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def old_vault(tmp_path) -> tuple[VaultDir, dict]:
    return unpack_old_vault(tmp_path, FIXTURE)


def unpack_old_vault(tmp_path: Path, archive: Path) -> tuple[VaultDir, dict]:
    """An archive made by a fixtures/make_*.py script: the vault folder, its key and custody
    files and cast.json, with the permissions and custody path this copy needs."""
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    home, key = tmp_path / "vault", tmp_path / "vault.key"
    for path in (home, *home.rglob("*"), key, tmp_path / "vault.custody"):
        path.chmod(0o700 if path.is_dir() else 0o600)
    # the custody file is where this copy is (a moved vault: the custodian's config says where)
    _sql(
        home,
        "UPDATE custodians SET config = '"
        + json.dumps({"file": str((tmp_path / "vault.custody").resolve())})
        + "' WHERE kind = 'local'",
    )
    cast = json.loads((tmp_path / "cast.json").read_text())
    return VaultDir(home, key), cast


def _bob(cast) -> Person:
    from tests.factories import totp_secret_for

    return Person("bob", cast["users"]["bob"], frozenset({"engineer"}), totp_secret=totp_secret_for("bob"))


def test_the_fixture_is_a_vault_from_before_row_macs(old_vault):
    vdir, cast = old_vault
    assert _query(vdir.home, "PRAGMA user_version") == [(13,)]
    tables = {r[0] for r in _query(vdir.home, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "schema_migrations" not in tables
    assert "mac" not in {r[1] for r in _query(vdir.home, "PRAGMA table_info(users)")}


def test_an_old_vault_stays_sealed_until_the_operator_upgrades_it(old_vault):
    """Review R1: an automatic backfill at unseal MACs whatever a file writer planted after
    stripping the MACs, so the unseal refuses (exit 8, one line naming ``cvault upgrade``) and
    leaves the vault sealed and unchanged."""
    from vault.errors import UpgradeRequired

    vdir, _cast = old_vault
    v = Vault.open(vdir.home, clock=clock_at(T0 + timedelta(hours=1)))
    try:
        with pytest.raises(UpgradeRequired, match="cvault upgrade"):
            v.unseal_key_file(vdir.key_file)
        assert not v.unsealed
    finally:
        v.close()
    assert _query(vdir.home, "SELECT count(*) FROM users WHERE mac IS NOT NULL") == [(0,)]
    assert _query(vdir.home, "SELECT count(*) FROM audit_events WHERE action = 'integrity.row_macs'") == [
        (0,)
    ]
    proc = run_cli("client", "list", env=vdir.env(CVAULT_SESSION_FILE=str(vdir.home.parent / "x.json")))
    assert proc.returncode == 8, proc.stderr
    assert proc.stderr.count("\n") == 1 and "cvault upgrade" in proc.stderr, proc.stderr


def test_an_old_vault_gets_its_macs_at_the_operators_upgrade(old_vault):
    vdir, cast = old_vault
    clock = clock_at(T0 + timedelta(hours=1))
    v = Vault.open(vdir.home, clock=clock)
    try:
        # opened (sealed): the schema is upgraded, the rows have no MAC yet
        assert v.ctx.db.applied_migrations() == {n for n, _ in migrations()}
        assert _query(vdir.home, "SELECT count(*) FROM users WHERE mac IS NOT NULL") == [(0,)]
        v.unseal_key_file(vdir.key_file, upgrade=True)
        # unsealed: every row of every MACed table has a valid MAC, and the marker is there
        with v.ctx.db.read() as conn:
            assert rowmac.enabled(conn)
            for table in rowmac.TABLES:
                assert list(rowmac.verify_table(conn, table)) == [], table
        events = v.ctx.db.all("SELECT actor, reason FROM audit_events WHERE action = 'integrity.row_macs'")
        assert len(events) == 1 and events[0][0] == "system:upgrade", events
        assert "3 session(s) from before ended" in events[0][1], events  # amy, bob x2
        # the session from before (SHA-256 only, no keyed MAC) is ended: its user logs in again
        with pytest.raises(AuthenticationFailed, match="session ended"):
            v.users.resume(cast["bob_token"])
        bob = _bob(cast)
        p = bob.principal(v)
        assert v.secrets.get(p, "acme", "office/firewall").fields["text"] == "current-value-2"
        with pytest.raises(NotFound):
            v.secrets.get(p, "acme", "office/gone")
        from vault.principal import Principal

        assert v.maintenance.doctor(Principal.system("cli")).checked_row_macs > 20
    finally:
        v.close()
    # the second unseal adds nothing (once per vault)
    v = vdir.open(clock=clock)
    v.close()
    assert len(_query(vdir.home, "SELECT 1 FROM audit_events WHERE action = 'integrity.row_macs'")) == 1


def test_an_upgraded_vault_through_the_cli(old_vault, tmp_path):
    vdir, cast = old_vault
    env = vdir.env(CVAULT_SESSION_FILE=str(tmp_path / "none.json"))
    refused = run_cli("upgrade", env=env)  # not a terminal: the summary, then "run it with --yes"
    assert refused.returncode == 2, refused.stderr
    assert "rows without a MAC: " in refused.stderr and "upgrade --yes --digest " in refused.stderr
    assert _query(vdir.home, "SELECT count(*) FROM users WHERE mac IS NOT NULL") == [(0,)]
    upgraded = cli_upgrade(lambda *argv: run_cli("--json", *argv, env=env))
    assert upgraded.returncode == 0, upgraded.stderr
    result = json.loads(upgraded.stdout)
    assert result["upgraded"] == ["row MACs added", "audit high-water mark written"], result
    assert result["rows_without_mac"]["users"] > 0 and result["roles"], result
    again = cli_upgrade(lambda *argv: run_cli("--json", *argv, env=env))
    assert again.returncode == 0 and json.loads(again.stdout)["upgraded"] == [], again.stderr
    doctor = run_cli("--json", "doctor", env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["ok"] and report["checked_row_macs"] > 20, report
    v = vdir.open()
    try:
        token = _bob(cast).token(v)
    finally:
        v.close()
    session = write_session_file(tmp_path / "bob.json", cast["vault_id"], "bob", token)
    got = run_cli(
        "secret",
        "get",
        "acme",
        "office/firewall",
        "--field",
        "text",
        env=vdir.env(CVAULT_SESSION_FILE=str(session)),
    )
    assert got.returncode == 0 and got.stdout.strip() == "current-value-2", got.stderr


def test_stripping_the_macs_does_not_get_a_second_backfill(old_vault):
    """A file writer who deletes the marker and every MAC (to have cvault MAC edited rows on the
    next unseal) gets an integrity failure: the audit log says the MACs were added already."""
    vdir, cast = old_vault
    vdir.open(clock=clock_at(T0 + timedelta(hours=1)), upgrade=True).close()
    bob = cast["users"]["bob"]
    _sql(
        vdir.home,
        "DELETE FROM meta WHERE key = 'row_macs'",
        *[f"UPDATE {table} SET mac = NULL" for table in rowmac.TABLES],
        f"UPDATE users SET training_valid_until = 4102444800 WHERE id = {cast['users']['rita']}",
        f"INSERT INTO user_roles (user_id, role, granted_at, granted_by) VALUES ({cast['users']['rita']},"
        " 'engineer', 0, 'x')",
        f"INSERT INTO assignments (client_id, user_id, created_at, created_by) SELECT client_id,"
        f" {cast['users']['rita']}, created_at, created_by FROM assignments WHERE user_id = {bob}",
    )
    with pytest.raises(IntegrityFailure, match="row MACs were removed"):
        vdir.open(clock=clock_at(T0 + timedelta(hours=2)))
    proc = run_cli("client", "list", env=vdir.env(CVAULT_SESSION_FILE=str(vdir.home.parent / "x.json")))
    assert proc.returncode == 6, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "row MACs were removed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _query(vdir.home, "SELECT count(*) FROM users WHERE mac IS NOT NULL") == [(0,)]


@pytest.mark.parametrize("strip_macs", [False, True], ids=["macs-kept", "macs-nulled"])
def test_renaming_the_backfill_event_too_gets_no_second_backfill(old_vault, strip_macs):
    """Independent review F1: the marker and the ``integrity.row_macs`` audit event are plain
    rows; a file writer who deletes the one and renames the other had the next unseal MAC every
    planted row. What decides now is what the writer cannot forge (the audit key sealed under the
    high-water-mark context, and any MAC left on a row): an integrity failure, nothing MACed."""
    vdir, cast = old_vault
    vdir.open(clock=clock_at(T0 + timedelta(hours=1)), upgrade=True).close()
    rita = cast["users"]["rita"]
    _sql(
        vdir.home,
        "DELETE FROM meta WHERE key = 'row_macs'",
        "UPDATE audit_events SET action = 'x.renamed' WHERE action = 'integrity.row_macs'",
        *([f"UPDATE {table} SET mac = NULL" for table in rowmac.TABLES] if strip_macs else []),
        f"UPDATE users SET disabled = 1 WHERE id = {rita}",
    )
    with pytest.raises(IntegrityFailure, match="row MACs were removed"):
        vdir.open(clock=clock_at(T0 + timedelta(hours=2)))
    assert _query(vdir.home, "SELECT value FROM meta WHERE key = 'row_macs'") == []
    if strip_macs:
        assert _query(vdir.home, f"SELECT mac FROM users WHERE id = {rita}") == [(None,)]
