"""A file writer (A4: writes ``vault.db`` with plain sqlite3, holds no key) edits or plants the
custody rows (row-MAC coverage 4: ``custodians``, ``client_custody``, ``custody_jobs``) that
``cvault custody show`` and the backup's custody summary read. Both read every row through the
MAC-verifying select: the edit is an integrity failure (exit 6, one line naming the table, no
traceback), audited as ``integrity.row_failure``, and no backup file is written
(docs/security.md guarantee 46)."""

from __future__ import annotations

import pytest

from tests.helpers import add_client
from tests.helpers import file_sql as _sql


def _alarms(vdir) -> list[str]:
    return [
        r[0]
        for r in _sql(
            vdir, "SELECT reason FROM audit_events WHERE action = 'integrity.row_failure' ORDER BY seq"
        )
    ]


@pytest.fixture
def custody_vault(vdir):
    v = vdir.open()
    try:
        add_client(v, "acme")
        add_client(v, "globex")
        acme = v.ctx.client("acme").id
    finally:
        v.close()
    return vdir, acme


EDITS = {
    # the current custody version of acme counted as destroyed (custody show's counts)
    "version_marked_destroyed": (
        "client_custody",
        "UPDATE client_custody SET state = 'destroyed' WHERE client_id = ?",
    ),
    # the backup's summary would name another custodian for acme's secret
    "version_moved_to_another_custodian": (
        "client_custody",
        "UPDATE client_custody SET custodian_id = custodian_id + 1 WHERE client_id = ?",
    ),
    # a version row planted with no MAC (a pending one: a rotation under way)
    "version_planted": (
        "client_custody",
        "INSERT INTO client_custody (client_id, version, custodian_id, state, fingerprint, created_at)"
        " SELECT client_id, version + 7, custodian_id, 'pending', fingerprint, created_at FROM client_custody"
        " WHERE client_id = ?",
    ),
    # where the custody secrets live, as custody show prints it and a backup records it
    "custodian_redirected": (
        "custodians",
        'UPDATE custodians SET config = \'{"file": "/tmp/elsewhere.custody"}\' WHERE ? IS NOT NULL',
    ),
}


def _edit(vdir, client_id: str, name: str) -> str:
    table, sql = EDITS[name]
    _sql(vdir, sql, (client_id,))
    return table


def _one_line_refusal(proc, table: str) -> None:
    assert proc.returncode == 6, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "integrity failure" in lines[0] and table in lines[0], lines
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(EDITS))
def test_custody_show_refuses_an_edited_or_planted_custody_row(custody_vault, name):
    vdir, acme = custody_vault
    assert vdir.cli("custody", "show").returncode == 0
    alarms = len(_alarms(vdir))
    table = _edit(vdir, acme, name)
    proc = vdir.cli("custody", "show")
    _one_line_refusal(proc, table)
    assert proc.stdout == ""
    assert len(_alarms(vdir)) == alarms + 1 and "custody.show" in _alarms(vdir)[-1], _alarms(vdir)


def test_custody_show_refuses_a_planted_rotation_job(custody_vault):
    """A rotation job planted with no MAC: ``custody show`` would list it as pending."""
    vdir, acme = custody_vault
    _sql(
        vdir,
        "INSERT INTO custody_jobs (client_id, reason, from_version, to_version, rotate_client_key, step,"
        " started_at, updated_at) VALUES (?, 'rotate', 1, 2, 0, 'started', 0, 0)",
        (acme,),
    )
    proc = vdir.cli("custody", "show")
    _one_line_refusal(proc, "custody_jobs")
    assert any("custody.show" in a for a in _alarms(vdir))


@pytest.mark.parametrize("name", sorted(EDITS))
def test_a_backup_refuses_an_edited_or_planted_custody_row(custody_vault, tmp_path, name):
    vdir, acme = custody_vault
    out = tmp_path / "backups"
    out.mkdir()
    alarms = len(_alarms(vdir))
    table = _edit(vdir, acme, name)
    proc = vdir.cli("backup", "--out", str(out))
    _one_line_refusal(proc, table)
    assert list(out.iterdir()) == [], "no backup (and no partial file) is written"
    assert not list(vdir.home.glob(".snapshot-*")), "the snapshot is removed"
    assert len(_alarms(vdir)) == alarms + 1 and "backup" in _alarms(vdir)[-1], _alarms(vdir)


def test_a_backup_refuses_a_planted_client_it_would_count(custody_vault, tmp_path):
    """The summary's client count reads the clients table through the MAC check too."""
    vdir, _ = custody_vault
    _sql(
        vdir,
        "INSERT INTO clients (id, name, sla_end, grace_days, current_key_version, created_at, created_by)"
        " SELECT 'planted', 'planted', sla_end, grace_days, current_key_version, created_at, created_by"
        " FROM clients LIMIT 1",
    )
    out = tmp_path / "b.cvbk"
    proc = vdir.cli("backup", "--out", str(out))
    assert proc.returncode == 6 and "integrity failure" in proc.stderr, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and not out.exists()
