"""Row-MAC coverage 4: the custody rotation rows are authenticated, and a job's step must be the one
its custody versions show.

A file writer (attacker A4: can write every file in the vault folder, holds no key) who edits a
``custody_jobs`` row (its step, its versions), plants one, or puts back an older authentic copy of
one could have the rotation machinery skip a step (the job deleted as finished with the old custody
version alive: a backup from before a purge keeps opening the purged record) or repeat one. The
same for the ``client_custody`` rows (a retired version marked destroyed is left out of a shred's
manifest) and the ``custodians`` rows (where a secret is destroyed). Each edit is refused: exit 6,
audited ``integrity.row_failure``, nothing rotated, the old version not destroyed, doctor names it.
"""

from __future__ import annotations

import pytest

from tests.helpers import add_client, as_coverage, cli_upgrade
from tests.helpers import file_sql as _sql
from vault.errors import BackendError, IntegrityFailure, UpgradeRequired
from vault.principal import Principal
from vault.store import rowmac

JOB_COLUMNS = (
    "client_id, reason, from_version, to_version, rotate_client_key, step, started_at, updated_at, mac"
)


def _states(vdir, client_id: str) -> list[tuple]:
    return _sql(
        vdir, "SELECT version, state FROM client_custody WHERE client_id = ? ORDER BY version", (client_id,)
    )


def _job_row(vdir) -> tuple:
    (row,) = _sql(vdir, f"SELECT {JOB_COLUMNS} FROM custody_jobs")
    return row


def _put_job_back(vdir, row: tuple) -> None:
    """An older authentic copy of the job row written back (from a backup of the folder)."""
    marks = ", ".join("?" * len(row))
    _sql(vdir, f"INSERT OR REPLACE INTO custody_jobs ({JOB_COLUMNS}) VALUES ({marks})", row)


def _alarms(vault) -> list[str]:
    return [
        r[0]
        for r in vault.ctx.db.all(
            "SELECT reason FROM audit_events WHERE action = 'integrity.row_failure' ORDER BY seq"
        )
    ]


def _unreachable(*a, **k):
    raise BackendError("custodian unreachable")


def _rotation_at(vault, step: str, monkeypatch) -> str:
    """A rotation of globex (custody 1 -> 2) stopped at ``step``, as an outage leaves it."""
    add_client(vault, "globex")
    client_id = vault.ctx.client("globex").id
    custody = vault.ctx.custody
    with vault.ctx.db.write() as conn:
        custody.start_rotation(conn, client_id, "rotate", rotate_client_key=True)
    with monkeypatch.context() as m:
        if step == "created":
            m.setattr(type(custody), "_rewrap_step", lambda self, jobs, made, progress: None)
            m.setattr(type(custody), "_retire_step", lambda self, jobs: None)
        elif step == "rewrapped":
            m.setattr("vault.custody.service.destroy_items", _unreachable)
        if step != "started":
            with pytest.raises(BackendError) if step == "rewrapped" else _no_error():
                custody.run_jobs()
    assert vault.ctx.db.all("SELECT step FROM custody_jobs") == [(step,)]
    return client_id


class _no_error:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _refused(vault, vdir, client_id: str, before: list[tuple]) -> None:
    """The rotation is not run: exit 6, audited, the custody versions as they were, doctor says so."""
    alarms = len(_alarms(vault))
    with pytest.raises(IntegrityFailure) as err:
        vault.ctx.custody.run_jobs()
    assert err.value.exit_code == 6
    assert "integrity failure" in str(err.value)
    assert len(_alarms(vault)) == alarms + 1, "the refusal is audited"
    assert "custody.rotation" in _alarms(vault)[-1]
    assert _states(vdir, client_id) == before, "nothing rotated, nothing destroyed"
    problems = vault.maintenance.doctor(Principal.system("doctor")).problems
    assert any("failed authentication" in p or "put back from an older copy" in p for p in problems), problems


EDITS = {
    # (the step the rotation is stopped at, the file writer's edit)
    "step_moved_forward": ("started", "UPDATE custody_jobs SET step = 'retired'"),
    "step_moved_back": ("rewrapped", "UPDATE custody_jobs SET step = 'created'"),
    "from_version_edited": ("rewrapped", "UPDATE custody_jobs SET from_version = 2, to_version = 3"),
    "rotate_flag_cleared": ("created", "UPDATE custody_jobs SET rotate_client_key = 0"),
    "retired_version_marked_destroyed": (
        "rewrapped",
        "UPDATE client_custody SET state = 'destroyed' WHERE state = 'retired'",
    ),
    "custodian_redirected": (
        "rewrapped",
        'UPDATE custodians SET config = \'{"file": "/tmp/elsewhere.custody"}\'',
    ),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_custody_row_is_refused(vdir, monkeypatch, edit):
    step, sql = EDITS[edit]
    vault = vdir.open()
    try:
        client_id = _rotation_at(vault, step, monkeypatch)
    finally:
        vault.close()
    _sql(vdir, sql)
    before = _states(vdir, client_id)
    vault = vdir.open()  # the next command: its unseal audits the refused rotation and goes on
    try:
        assert len(_alarms(vault)) == 1
        _refused(vault, vdir, client_id, before)
    finally:
        vault.close()


def test_a_planted_job_row_is_refused(vdir, monkeypatch):
    """A job row written without cvault (no MAC) for a client with no rotation."""
    vault = vdir.open()
    try:
        add_client(vault, "globex")
        client_id = vault.ctx.client("globex").id
        _sql(
            vdir,
            "INSERT INTO custody_jobs (client_id, reason, from_version, to_version, rotate_client_key, step,"
            " started_at, updated_at) VALUES (?, 'rotate', 1, 2, 1, 'retired', 0, 0)",
            (client_id,),
        )
        _refused(vault, vdir, client_id, _states(vdir, client_id))
    finally:
        vault.close()


def test_a_job_row_revived_after_its_rotation_is_refused(vdir, monkeypatch):
    """The job row as it was at 'created' (MAC and all), put back after the rotation finished:
    it would re-wrap under version 1, destroyed since. Its versions say otherwise: refused."""
    vault = vdir.open()
    try:
        client_id = _rotation_at(vault, "created", monkeypatch)
        old = _job_row(vdir)
        assert vault.ctx.custody.run_jobs()["done"] == 1
        after = _states(vdir, client_id)
        assert after == [(1, "destroyed"), (2, "current")]
        _put_job_back(vdir, old)
        _refused(vault, vdir, client_id, after)
    finally:
        vault.close()


@pytest.mark.parametrize(("older", "now"), [("started", "created"), ("created", "rewrapped")])
def test_an_older_copy_of_an_open_job_is_refused(vdir, monkeypatch, older, now):
    """An open job's row put back to its authentic copy from an earlier step: 'started' again
    would have the custodian make version 2 a second time, 'created' again re-wrap under the
    retired version 1."""
    vault = vdir.open()
    try:
        client_id = _rotation_at(vault, older, monkeypatch)
        old = _job_row(vdir)
        with monkeypatch.context() as m:
            if now == "created":
                m.setattr(type(vault.ctx.custody), "_rewrap_step", lambda self, jobs, made, progress: None)
                vault.ctx.custody.run_jobs()
            else:
                m.setattr("vault.custody.service.destroy_items", _unreachable)
                with pytest.raises(BackendError):
                    vault.ctx.custody.run_jobs()
        assert vault.ctx.db.all("SELECT step FROM custody_jobs") == [(now,)]
        _put_job_back(vdir, old)
        _refused(vault, vdir, client_id, _states(vdir, client_id))
    finally:
        vault.close()


def test_an_honest_paused_rotation_resumes(vdir, monkeypatch):
    vault = vdir.open()
    try:
        client_id = _rotation_at(vault, "rewrapped", monkeypatch)
        assert vault.ctx.custody.run_jobs()["done"] == 1
        assert _states(vdir, client_id) == [(1, "destroyed"), (2, "current")]
        assert _alarms(vault) == []
        with vault.ctx.db.read() as conn:
            for table in ("custodians", "client_custody", "custody_jobs"):
                assert list(rowmac.verify_table(conn, table)) == []
    finally:
        vault.close()


def _edited_paused_rotation(vdir, monkeypatch, edit: str) -> tuple[str, list[tuple]]:
    """globex's rotation paused at ``rewrapped`` (acme beside it, untouched), then the file
    writer's ``edit`` of its job row: globex's id and its custody versions as they are then."""
    vault = vdir.open()
    try:
        client_id = _rotation_at(vault, "rewrapped", monkeypatch)
        add_client(vault, "acme")
    finally:
        vault.close()
    _sql(vdir, edit)
    return client_id, _states(vdir, client_id)


def test_the_cli_refuses_the_rotation_exit_6_and_other_commands_go_on(vdir, monkeypatch):
    """Through the CLI: every command's unseal audits the refused job and goes on (the rest of the
    vault is served); the command that rotates that client refuses it, exit 6, one line."""
    client_id, before = _edited_paused_rotation(vdir, monkeypatch, "UPDATE custody_jobs SET step = 'retired'")
    listed = vdir.cli("client", "list")
    assert listed.returncode == 0, listed.stderr
    proc = vdir.cli("client", "rotate-key", "globex")
    assert proc.returncode == 6, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "integrity failure" in lines[0] and "custody_jobs" in lines[0], lines
    assert "Traceback" not in proc.stdout + proc.stderr
    assert _states(vdir, client_id) == before
    other = vdir.cli("client", "rotate-key", "acme")  # another client's rotation is not held up
    assert other.returncode == 0, other.stderr
    doctor = vdir.cli("doctor")
    assert doctor.returncode == 6 and "custody_jobs" in doctor.stdout, doctor.stdout
    alarms = _sql(vdir, "SELECT count(*) FROM audit_events WHERE action = 'integrity.row_failure'")
    assert alarms[0][0] >= 3, alarms


def test_a_vault_at_coverage_3_needs_cvault_upgrade_for_its_custody_macs(vdir, monkeypatch):
    """A vault of the build before coverage 4, a rotation paused: sealed until `cvault upgrade`
    (never automatically, review R1), which names and MACs the custody rows once, audited; the
    rotation then finishes. A marker put back to 3 afterwards (to have a planted row MACed) meets
    custody rows that carry MACs: the upgrade is refused."""
    vault = vdir.open()
    try:
        client_id = _rotation_at(vault, "rewrapped", monkeypatch)
        with vault.ctx.db.write() as conn:
            as_coverage(conn, 3)
    finally:
        vault.close()
    (old_marker,) = _sql(vdir, "SELECT value, mac FROM meta WHERE key = 'row_macs'")
    with pytest.raises(
        UpgradeRequired,
        match="custodians, client_custody, custody_jobs, meta rows of this vault carry no MACs",
    ):
        vdir.open()
    proc = cli_upgrade(vdir.cli)
    assert proc.returncode == 0, proc.stderr
    assert "custody_jobs 1" in proc.stderr and "client_custody 2" in proc.stderr, proc.stderr
    vault = vdir.open()
    try:
        with vault.ctx.db.read() as conn:
            assert rowmac.coverage(conn) == rowmac.COVERAGE
        reasons = [
            r[0]
            for r in vault.ctx.db.all("SELECT reason FROM audit_events WHERE action = 'integrity.row_macs'")
        ]
        assert any("custodians, client_custody, custody_jobs, meta (coverage " in r for r in reasons), reasons
        # the upgrade's own unseal finished the rotation
        assert vault.ctx.db.all("SELECT count(*) FROM custody_jobs") == [(0,)]
        assert _states(vdir, client_id) == [(1, "destroyed"), (2, "current")]
    finally:
        vault.close()
    _sql(vdir, "UPDATE meta SET value = ?, mac = ? WHERE key = 'row_macs'", old_marker)
    _sql(
        vdir,
        "INSERT INTO custody_jobs (client_id, reason, from_version, to_version, rotate_client_key, step,"
        " started_at, updated_at) VALUES (?, 'rotate', 2, 3, 1, 'retired', 0, 0)",
        (client_id,),
    )
    with pytest.raises(
        IntegrityFailure, match="marker was rolled back|an older copy of the marker was put back"
    ):
        vdir.open(upgrade=True)
    assert _sql(vdir, "SELECT mac FROM custody_jobs") == [(None,)]


def test_the_upgrade_refuses_a_job_its_versions_contradict(vdir, monkeypatch):
    """Before coverage 4 a job row could be edited freely: the upgrade does not MAC a job whose
    step its custody versions contradict (nothing MACed, the marker stays at 3)."""
    vault = vdir.open()
    try:
        _rotation_at(vault, "rewrapped", monkeypatch)
        with vault.ctx.db.write() as conn:
            as_coverage(conn, 3)
    finally:
        vault.close()
    _sql(vdir, "UPDATE custody_jobs SET step = 'retired'")
    with pytest.raises(IntegrityFailure, match="put back from an older copy"):
        vdir.open(upgrade=True)
    assert _sql(vdir, "SELECT value FROM meta WHERE key = 'row_macs'") == [(3,)]
    assert _sql(vdir, "SELECT count(*) FROM client_custody WHERE mac IS NOT NULL") == [(0,)]


def test_the_service_answers_409_integrity_failure_for_the_refused_rotation(vdir, monkeypatch, tmp_path):
    from tests.helpers import OPERATOR_TOKEN
    from tests.server.harness import assert_error_shape, start_service

    client_id, before = _edited_paused_rotation(vdir, monkeypatch, "UPDATE custody_jobs SET from_version = 0")
    service = start_service(vdir, tmp_path / "service")
    try:
        api = service.client(OPERATOR_TOKEN)
        status, reply = api.post("/v1/clients/rotate-key", {"name": "globex"})
        err = assert_error_shape(reply, "integrity_failure")
        assert status == 409 and err["exit_code"] == 6, (status, reply)
        assert "custody_jobs" in err["message"], err
        status, reply = api.post("/v1/clients/rotate-key", {"name": "acme"})
        assert status == 200, reply
        assert "Traceback" not in service.log()
    finally:
        service.stop()
    assert _states(vdir, client_id) == before
    alarms = _sql(vdir, "SELECT reason FROM audit_events WHERE action = 'integrity.row_failure'")
    assert any("custody.rotation" in r[0] and "custody_jobs" in r[0] for r in alarms), alarms
