"""``cvault upgrade``'s summary shows the values of the policy and custody rows its digest binds,
not only their counts (review4 R4-2; docs/security.md guarantee 38, docs/format.md "Upgrades").

A file writer (A4) who plants ``meta.single_operator = 1`` (two-person rules off) and ``settings``
with ``min_grace_days = 0`` into a vault from before row MACs had both authenticated by an operator
who checked the summary as documented: it showed row counts only."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from tests.helpers import T0, clock_at, run_cli
from tests.integrity.test_upgrade_row_macs import _sql, old_vault  # noqa: F401 (fixture)
from vault.identity import facts


def test_the_summary_names_the_policy_rows_it_authenticates(old_vault, tmp_path):  # noqa: F811
    vdir, _cast = old_vault
    env = vdir.env(CVAULT_SESSION_FILE=str(tmp_path / "none.json"))
    # the file writer, before the operator looks: two-person rules off, no minimum grace period
    _sql(
        vdir.home,
        "INSERT INTO meta (key, value) VALUES ('single_operator', '1')",
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('settings', '"
        + json.dumps({"min_grace_days": 0, "stepup_seconds": 86400})
        + "')",
    )
    looked = run_cli("upgrade", env=env)  # the documented flow: read the summary, then --yes
    named = re.search(r"--digest ([0-9a-f]{32})", looked.stderr)
    assert looked.returncode == 2 and named, looked.stderr
    lines = looked.stderr.splitlines()
    single = next(line for line in lines if line.startswith("single-operator mode: "))
    assert single.startswith("single-operator mode: YES") and "NOT recorded" in single, single
    changed = next(line for line in lines if line.startswith("settings that differ from the defaults: "))
    assert "min_grace_days=0" in changed and "stepup_seconds=86400" in changed, changed
    assert any(line.startswith("custody versions: ") for line in lines), looked.stderr
    # meta counts only the rows the upgrade MACs (the four MACed keys), not every meta row
    without = next(line for line in lines if line.startswith("rows without a MAC: "))
    meta = re.search(r"\bmeta (\d+)", without)
    assert meta and int(meta.group(1)) <= 4, without
    # what the operator then authenticates is exactly what was shown (--json: the same values)
    done = run_cli("--json", "upgrade", "--yes", "--digest", named.group(1), env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["policy"]["single_operator"] is True
    assert summary["policy"]["single_operator_recorded_at_init"] is False
    assert summary["policy"]["settings_changed"] == {"min_grace_days": 0, "stepup_seconds": 86400}
    v = vdir.open(clock=clock_at(T0 + timedelta(hours=1)))
    try:
        assert facts.single_operator(v.ctx.db.conn) and v.ctx.min_grace_days() == 0
    finally:
        v.close()
