"""``cvault sla sweep`` as an unattended job: key file, no session -> ``system:sweep``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from tests.factories import sla_client, sla_staff
from tests.helpers import cli_env, clock_at
from vault.clock import UTC
from vault.sla.service import sweep_lock


def test_unattended_sweep_nothing_due_dry_run_and_lock(vdir):
    clock = clock_at(datetime.now(UTC).replace(microsecond=0) - timedelta(days=60))
    vault = vdir.open(clock)
    people = sla_staff(vault)
    sla_client(vault, people.manager, "beta", days=2000, records=1, engineer=people.engineer)
    vault.close()
    env = cli_env(vdir)
    res = vdir.cli("sla", "sweep", env=env)
    assert (res.returncode, res.stdout.strip()) == (0, "nothing due"), res.stderr
    vault = vdir.open(clock)
    for who in (people.manager, people.engineer):
        who.vault = vault
    sla_client(vault, people.manager, "acme", days=10, grace_days=5, records=2, engineer=people.engineer)
    actor = vault.ctx.db.one(
        "SELECT actor FROM audit_events WHERE action = 'sla.sweep' ORDER BY seq DESC LIMIT 1"
    )[0]
    assert actor == "system:sweep"
    vault.close()
    res = vdir.cli("sla", "sweep", "--dry-run", "--json", env=env)
    assert res.returncode == 0 and [d["client"] for d in json.loads(res.stdout)["due"]] == ["acme"]
    with sweep_lock(vdir.home / "locks") as held:
        assert held
        res = vdir.cli("sla", "sweep", env=env)
        assert (res.returncode, res.stdout.strip()) == (0, "sweep skipped: another sweep is running")
    res = vdir.cli("sla", "sweep", env=env)
    assert res.returncode == 0 and "shredded acme" in res.stdout, res.stderr
    res = vdir.cli("sla", "sweep", env=env)
    assert (res.returncode, res.stdout.strip()) == (0, "nothing due")
    res = vdir.cli("sla", "show", "acme", env=env)  # no session: sla commands other than sweep
    assert res.returncode == 3
