"""``cvault upgrade`` authenticates exactly what its summary showed, and never a rolled-back
coverage (independent review 2: S6 and S2; docs/format.md "Upgrades").

S6: the summary and the upgrade were two separate reads; rows a file writer planted between
``cvault upgrade`` (the summary, exit 2) and ``cvault upgrade --yes`` were MACed, and rita read acme.
S2: an older copy of the row-MAC marker (coverage 1) put back, with the newer tables' MACs
stripped, had ``cvault upgrade`` MAC a removed integration although the signed log records the
vault's upgrade to a higher coverage."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from datetime import timedelta

import pytest

from tests.helpers import T0, cli_upgrade, clock_at, newer_coverage_strips, run_cli
from tests.integrity.test_upgrade_row_macs import _query, _sql, old_vault  # noqa: F401 (fixture)
from vault.errors import IntegrityFailure, UpgradeRequired
from vault.store import rowmac


def put_back_older_marker(home, backup, *statements: tuple) -> None:
    """The file writer: the row-MAC marker of an older copy put back, the tables added after
    coverage 1 stripped of their MACs, then ``statements`` ((sql, params) each), in one commit."""
    db, old = sqlite3.connect(home / "vault.db"), sqlite3.connect(backup)
    try:
        db.execute(
            "INSERT OR REPLACE INTO meta (key, value, mac) SELECT ?, ?, ?",
            old.execute("SELECT key, value, mac FROM meta WHERE key = 'row_macs'").fetchone(),
        )
        for statement in newer_coverage_strips():
            db.execute(statement)
        for sql, params in statements:
            db.execute(sql, params)
        db.commit()
    finally:
        db.close()
        old.close()


def _digest(proc) -> str:
    named = re.search(r"--digest ([0-9a-f]{32})", proc.stderr)
    assert proc.returncode == 2 and named, proc.stderr
    return named.group(1)


def test_rows_planted_after_the_summary_are_never_authenticated(old_vault, tmp_path):  # noqa: F811
    vdir, cast = old_vault
    rita, bob = cast["users"]["rita"], cast["users"]["bob"]
    env = vdir.env(CVAULT_SESSION_FILE=str(tmp_path / "none.json"))
    looked = run_cli("upgrade", env=env)  # the operator reads the summary (exit 2)
    digest = _digest(looked)
    engineers = re.search(r"^engineer \(2\): (.*)$", looked.stderr, re.M)
    assert engineers and "rita" not in engineers.group(1), looked.stderr
    # the file writer, after the summary
    _sql(
        vdir.home,
        f"UPDATE users SET training_valid_until = 4102444800 WHERE id = {rita}",
        f"INSERT INTO user_roles (user_id, role, granted_at, granted_by) VALUES ({rita}, 'engineer', 0, 'x')",
        f"INSERT INTO assignments (client_id, user_id, created_at, created_by) SELECT client_id,"
        f" {rita}, created_at, created_by FROM assignments WHERE user_id = {bob}",
    )
    done = run_cli("upgrade", "--yes", "--digest", digest, env=env)
    assert done.returncode == 6, done.stdout + done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith("cvault: integrity failure: the rows to authenticate changed"), last
    assert "Traceback" not in done.stderr
    assert _query(vdir.home, "SELECT count(*) FROM users WHERE mac IS NOT NULL") == [(0,)]  # nothing MACed
    # the next summary names rita among the engineers: the operator sees what would be authenticated
    again = run_cli("--json", "upgrade", env=env)
    assert _digest(again) != digest
    shown = run_cli("upgrade", env=env).stderr
    assert re.search(r"^engineer \(3\): .*rita", shown, re.M), shown
    with pytest.raises(UpgradeRequired):  # and the vault stays sealed: rita reads nothing
        vdir.open(clock=clock_at(T0 + timedelta(hours=2)))


def test_yes_without_the_digest_is_refused(old_vault, tmp_path):  # noqa: F811
    vdir, _cast = old_vault
    env = vdir.env(CVAULT_SESSION_FILE=str(tmp_path / "none.json"))
    proc = run_cli("upgrade", "--yes", env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("cvault: cvault upgrade --yes needs --digest DIGEST")
    wrong = run_cli("upgrade", "--yes", "--digest", "0" * 32, env=env)
    assert wrong.returncode == 6, wrong.stderr
    assert _query(vdir.home, "SELECT count(*) FROM users WHERE mac IS NOT NULL") == [(0,)]
    upgraded = cli_upgrade(lambda *argv: run_cli("--json", *argv, env=env))
    assert upgraded.returncode == 0, upgraded.stderr
    assert json.loads(upgraded.stdout)["upgraded"][0] == "row MACs added"


def test_a_rolled_back_coverage_marker_is_refused_by_the_upgrade(old_vault, tmp_path, monkeypatch):  # noqa: F811
    vdir, _cast = old_vault
    env = vdir.env(CVAULT_SESSION_FILE=str(tmp_path / "none.json"))
    strip = newer_coverage_strips()
    # 1. the vault as a coverage-1 build left it: the first backfill at coverage 1 (its audit
    #    event says so), the tables added later without MACs
    with monkeypatch.context() as older_build:
        older_build.setattr(rowmac, "COVERAGE", 1)
        vdir.open(clock=clock_at(T0 + timedelta(hours=1)), upgrade=True).close()
    _sql(vdir.home, *strip)
    backup = tmp_path / "older-copy.db"  # what the file writer kept: an authentic coverage-1 marker
    shutil.copy2(vdir.home / "vault.db", backup)
    # 2. the operator's legitimate upgrade to this build's coverage (its signed event names it)
    up = cli_upgrade(lambda *argv: run_cli(*argv, env=env))
    assert up.returncode == 0, up.stderr
    assert _query(vdir.home, "SELECT value FROM meta WHERE key = 'row_macs'") == [(rowmac.COVERAGE,)]
    # 3. the file writer: the older marker row back, the newer tables' MACs stripped (to have a
    #    removed integration or an edited shred job MACed by the next upgrade)
    put_back_older_marker(vdir.home, backup)
    # 4. every command is refused, and so is the upgrade: exit 6, nothing MACed
    for proc in (run_cli("client", "list", env=env), cli_upgrade(lambda *argv: run_cli(*argv, env=env))):
        assert proc.returncode == 6, proc.stdout + proc.stderr
        assert "audit log records coverage" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    with pytest.raises(IntegrityFailure):
        vdir.open(clock=clock_at(T0 + timedelta(hours=2)))
