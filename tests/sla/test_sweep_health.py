"""The sweep never stops silently (issue 17): it logs one line per run, exits 1 on an unfinished
shred, records its last success, and ``doctor`` warns when that is older than the schedule."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta

from tests.factories import sla_client, sla_staff
from tests.helpers import cli_env, clock_at, operator


def _sweep_warnings(vault) -> list[str]:
    report = vault.maintenance.doctor(operator())
    return [w for w in report.warnings if w.startswith("sweep")]


def test_doctor_warns_when_the_last_successful_sweep_is_older_than_its_schedule(vdir):
    clock = clock_at()
    vault = vdir.open(clock)
    assert "no successful SLA sweep recorded" in _sweep_warnings(vault)[0]
    vault.sla.sweep(operator(), every="1h")
    assert _sweep_warnings(vault) == []
    clock.advance(minutes=70)  # within the schedule and the 15 minutes of slack
    assert _sweep_warnings(vault) == []
    clock.advance(minutes=10)
    (warning,) = _sweep_warnings(vault)
    assert warning.startswith("sweep overdue") and "every 60 min" in warning and "80 min ago" in warning
    vault.sla.sweep(operator(), every="6h")  # a sweep scheduled less often: its own schedule
    clock.advance(hours=5)
    assert _sweep_warnings(vault) == []
    vault.close()


def test_an_unfinished_shred_exits_1_logs_and_is_not_a_success(vdir):
    clock = clock_at()
    vault = vdir.open(clock)
    people = sla_staff(vault)
    sla_client(vault, people.manager, "acme", days=10, grace_days=5, records=2, engineer=people.engineer)
    vault.close()
    env = cli_env(vdir)
    # another process holds a read open on vault.db: the scrub step cannot truncate the WAL
    reader = sqlite3.connect(vdir.home / "vault.db")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM meta").fetchone()
    try:
        res = vdir.cli("sla", "sweep", env=env)
    finally:
        reader.rollback()
        reader.close()
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert re.fullmatch(r"cvault sla sweep \S+Z: 0 shredded, 1 unfinished", lines[0]), res.stderr
    assert lines[-1].startswith("cvault: 1 shred(s) unfinished; acme:"), res.stderr
    vault = vdir.open(clock_at(clock.now() + timedelta(minutes=1)))
    assert vault.sla.last_sweep()["run_ok"] is False and "ok_at" not in vault.sla.last_sweep()
    vault.close()
    res = vdir.cli("sla", "sweep", env=env)  # the next run resumes and finishes
    assert res.returncode == 0 and "shredded acme" in res.stdout, res.stderr
    assert re.search(r"cvault sla sweep \S+Z: 1 shredded, ok", res.stderr)
