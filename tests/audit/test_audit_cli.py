"""``cvault audit ...`` end to end in subprocesses, as a reviewer would run it."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tests.factories import audit_cast, client_with_secrets
from tests.helpers import ROOT, clock_at, run_cli


@pytest.fixture
def setup(vdir, tmp_path):
    v = vdir.open(clock_at())
    c = audit_cast(v)
    client_with_secrets(v, c, paths=("office/firewall", "site/wifi"))
    sessions = {"reviewer": c.reviewer.session_file(tmp_path), "engineer": c.engineer.session_file(tmp_path)}
    vault_id = v.ctx.vault_id.hex()
    v.close()

    def cli(who: str, *args: str):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT),
            "HOME": str(tmp_path),
            "CVAULT_HOME": str(vdir.home),
            "CVAULT_KEY_FILE": str(vdir.key_file),
            "CVAULT_SESSION_FILE": str(sessions[who]),
        }
        return run_cli(*args, env=env)

    return cli, tmp_path, vault_id


def test_pubkey_log_filters_and_json(setup):
    cli, _, vault_id = setup
    pub = cli("reviewer", "audit", "pubkey")
    assert pub.returncode == 0 and pub.stdout.startswith("ed25519:")
    assert json.loads(cli("reviewer", "audit", "pubkey", "--json").stdout)["vault_id"] == vault_id
    r = cli("reviewer", "audit", "log", "--json", "--limit", "0")
    rows = json.loads(r.stdout)
    assert [row["seq"] for row in rows] == sorted(row["seq"] for row in rows)
    assert {"seq", "at", "actor", "action", "client", "outcome", "reason", "origin", "detail"} <= set(rows[0])
    puts = json.loads(
        cli(
            "reviewer",
            "audit",
            "log",
            "--json",
            "--user",
            "eve",
            "--action",
            "secret.put",
            "--client",
            "acme",
            "--outcome",
            "allow",
            "--limit",
            "0",
        ).stdout
    )
    assert [p["detail"] for p in puts] == ["office/firewall", "site/wifi"]
    family = json.loads(
        cli("reviewer", "audit", "log", "--json", "--action", "secret", "--limit", "0").stdout
    )
    assert {f["action"] for f in family} == {"secret.put"}
    window = json.loads(
        cli(
            "reviewer",
            "audit",
            "log",
            "--json",
            "--since",
            "2026-06-01T08:59:59Z",
            "--until",
            "2026-06-01T09:00:00Z",
            "--limit",
            "0",
        ).stdout
    )
    assert window and all(w["at"].startswith("2026-06-01T09:00:00") for w in window)
    assert (
        json.loads(
            cli("reviewer", "audit", "log", "--json", "--since", "2d", "--action", "secret.put").stdout
        )
        == []
    )  # the fixture's events are months old
    assert len(json.loads(cli("reviewer", "audit", "log", "--json", "--limit", "3").stdout)) == 3
    human = cli("reviewer", "audit", "log", "--action", "secret.put")
    assert human.returncode == 0 and "office/firewall" in human.stdout and "SEQ" in human.stdout


def test_engineer_may_not_read_the_log(setup):
    cli, _, _ = setup
    r = cli("engineer", "audit", "log")
    assert r.returncode == 4 and len(r.stderr.strip().splitlines()) == 1


def test_export_and_offline_verify_with_the_printed_key(setup):
    cli, tmp, _ = setup
    out = tmp / "export.jsonl"
    r = cli("reviewer", "audit", "export", "--format", "jsonl", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert cli("reviewer", "audit", "export", "--out", str(out)).returncode == 2  # never overwritten
    key = tmp / "audit.pub"
    key.write_text(cli("reviewer", "audit", "pubkey").stdout)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "HOME": str(tmp)}
    ok = run_cli(
        "--home", str(tmp / "nowhere"), "audit", "verify", "--file", str(out), "--pubkey", str(key), env=env
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("audit verify: ok")
    lines = out.read_text().splitlines()
    entries = [i for i, line in enumerate(lines) if '"type":"entry"' in line]
    del lines[entries[3]]
    bad = tmp / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    failed = run_cli("audit", "verify", "--file", str(bad), "--pubkey", str(key), env=env)
    assert failed.returncode == 6 and "entry 4 missing" in failed.stderr
    csv_out = cli("reviewer", "audit", "export", "--format", "csv")
    assert csv_out.returncode == 0 and csv_out.stdout.startswith("seq,at,actor,action")
    cef = cli("reviewer", "audit", "export", "--format", "cef")
    assert all(line.startswith("CEF:0|cvault|") for line in cef.stdout.splitlines())


def no_minimum(vdir) -> None:
    """Set the vault's audit retention minimum to 0 days (the settings row in meta)."""
    v = vdir.open()  # the settings row is MACed (issue 12): written the product's way
    try:
        with v.ctx.db.write() as conn:
            v.ctx.save_settings(conn, {"audit_min_retention_days": 0})
    finally:
        v.close()


def test_live_verify_checkpoint_report_and_prune(setup, vdir):
    cli, _, _ = setup
    v = cli("reviewer", "audit", "verify")
    assert v.returncode == 0 and "audit verify: ok" in v.stdout, v.stderr
    cp = json.loads(cli("reviewer", "audit", "checkpoint", "--json").stdout)
    assert cp["type"] == "checkpoint" and cp["kind"] == "manual"
    rep = cli("reviewer", "audit", "report", "--since", "2026-01-01")
    assert rep.returncode == 0 and "Access per user" in rep.stdout and "eve" in rep.stdout
    data = json.loads(cli("reviewer", "audit", "report", "--json", "--since", "365d").stdout)
    assert {"access_per_user", "bursts", "shreds", "off_hours_access"} <= set(data)
    refused = cli("reviewer", "audit", "prune", "--before", "+1d")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    recent = cli("reviewer", "audit", "prune", "--before", "+1d", "--yes")
    assert recent.returncode == 2 and "retention minimum" in recent.stderr
    no_minimum(vdir)  # a vault configured to keep no minimum retention
    pruned = cli("reviewer", "audit", "prune", "--before", "now", "--yes", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["base_seq"] == cp["seq"]
    again = cli("reviewer", "audit", "verify", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["base_seq"] == cp["seq"]


def test_audit_log_limit_0_pages_through_the_whole_log_with_the_same_output(tmp_path, monkeypatch, capsys):
    """``--limit 0`` pages with after_seq (issue 20 item 6): the JSON is the same array one request
    would give (five pages of 5 here), and the table lists every event once."""
    import json as _json

    from cli.commands import audit as audit_cmd
    from cli.main import run
    from tests.helpers import add_client, make_vault

    vdir = make_vault(tmp_path)
    v = vdir.open()
    try:
        add_client(v, "acme")
        for i in range(23):
            v.ctx.audit.append(actor=f"u{i}", action="secret.get", outcome="allow", client="acme")
    finally:
        v.close()
    for key, value in vdir.env().items():
        if key.startswith("CVAULT_"):
            monkeypatch.setenv(key, value)
    assert run(["--json", "audit", "log", "--limit", "100000"]) == 0
    one_answer = _json.loads(capsys.readouterr().out)
    monkeypatch.setattr(audit_cmd, "LOG_PAGE", 5)
    assert run(["--json", "audit", "log", "--limit", "0"]) == 0
    paged = capsys.readouterr().out
    rows = _json.loads(paged)
    # the same events (the paged run's own audit.log decisions come after them)
    assert rows[: len(one_answer)] == one_answer
    assert len({r["seq"] for r in rows}) == len(rows)
    assert paged.rstrip("\n") == _json.dumps(rows, indent=2, sort_keys=True, ensure_ascii=True)
    assert run(["audit", "log", "--limit", "0", "--client", "acme"]) == 0
    table = capsys.readouterr().out
    assert table.count("secret.get") == 23 and table.count("SEQ") == 1


def test_report_sections_are_capped_with_a_count_line_and_full_lists_all(vdir):
    """Issue 20 item 6: a cut section says how many it left out ("... and N more: --full ..."),
    --full lists every entry and drops the line; --json has the totals."""
    from datetime import datetime, timedelta

    from tests.helpers import add_client, operator
    from vault.clock import UTC

    saturday = datetime.now(UTC) - timedelta(days=3)
    saturday -= timedelta(days=(saturday.weekday() - 5) % 7)  # the last Saturday 3+ days ago
    clock = clock_at(saturday.replace(hour=12, minute=0, second=0, microsecond=0))
    v = vdir.open(clock)
    add_client(v, "acme")
    v.secrets.put(operator(), "acme", "office/fw", "note", {"text": "x"})
    for _ in range(103):  # weekend reads: off-hours
        v.secrets.get(operator(), "acme", "office/fw")
        clock.advance(minutes=11)
    v.close()
    cut = vdir.cli("audit", "report", "--since", "10d")
    assert cut.returncode == 0, cut.stderr
    assert "... and 4 more: --full lists them all" in cut.stdout  # 103 reads and the put
    full = vdir.cli("audit", "report", "--since", "10d", "--full")
    assert full.returncode == 0 and "more: --full" not in full.stdout
    data = json.loads(vdir.cli("audit", "report", "--since", "10d", "--json").stdout)
    assert data["totals"]["off_hours_access"] == 104 and len(data["off_hours_access"]) == 100
    assert data["truncated"] == ["off_hours_access"]
