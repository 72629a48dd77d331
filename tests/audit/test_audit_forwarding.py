"""Logs for machines (issue 17): CSV per RFC 4180 (CRLF) with formula neutralisation on text
columns only, CEF with the vault's identity and ``src``, incremental exports for a forwarder
(``--after-seq N``, ``--since``)."""

from __future__ import annotations

import base64
import csv
import io
import json

from tests.factories import audit_cast, client_with_secrets
from tests.helpers import clock_at
from vault.audit.export import CSV_COLUMNS, cef_line, csv_lines


def _entry(**over):
    e = {
        "seq": 7,
        "at": "2026-06-01T09:00:00Z",
        "actor": "=HYPERLINK(evil)",
        "action": "secret.get",
        "client": "+acme",
        "outcome": "deny",
        "reason": "-1+1",
        "origin": "@api",
        "detail": "=cmd|' /C calc'!A0",
        "detail_key": 1,
        "detail_sealed": "+/8AAAEC==",  # base64 may start with + or =: never touched
        "prev_hash": "00" * 32,
        "entry_hash": "ff" * 32,
    }
    e.update(over)
    return e


def test_csv_neutralises_text_columns_only():
    header, line = list(csv_lines(iter([_entry()])))
    row = dict(zip(CSV_COLUMNS, next(csv.reader(io.StringIO(line))), strict=True))
    for text in ("actor", "client", "reason", "origin", "detail"):
        assert row[text].startswith("'"), (text, row[text])
    assert row["detail_sealed"] == "+/8AAAEC=="
    assert base64.b64decode(row["detail_sealed"], validate=True)
    assert row["seq"] == "7" and row["prev_hash"] == "00" * 32


def test_cef_carries_vault_identity_and_src():
    line = cef_line(_entry(origin="api:192.0.2.7"), "1.0", "msp-vault", "ab" * 16)
    assert " dvchost=msp-vault " in line and f" deviceExternalId={'ab' * 16} " in line
    assert " src=192.0.2.7" in line
    assert " src=" in cef_line(_entry(origin="api:::1"), "1.0", "v", "id")
    # an origin that is not an address (the CLI, the service's own jobs) gives no src
    for origin in ("cli", "service", "api:not-an-address"):
        assert " src=" not in cef_line(_entry(origin=origin), "1.0", "v", "id")


def _reviewer_cli(vdir, tmp_path):
    v = vdir.open(clock_at())
    cast = audit_cast(v)
    client_with_secrets(v, cast, paths=("office/firewall", "site/wifi"))
    session = cast.reviewer.session_file(tmp_path)
    vault_id = v.ctx.vault_id.hex()
    v.close()
    env = vdir.env(CVAULT_SESSION_FILE=str(session))
    return (lambda *args: vdir.cli(*args, env=env)), vault_id


def test_csv_file_is_rfc4180_and_base64_decodes(vdir, tmp_path):
    cli, _ = _reviewer_cli(vdir, tmp_path)
    out = tmp_path / "audit.csv"
    assert cli("audit", "export", "--format", "csv", "--out", str(out)).returncode == 0
    raw = out.read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\r\n") == raw.count(b"\n")  # CRLF, every line
    rows = list(csv.DictReader(io.StringIO(raw.decode("ascii"), newline="")))
    sealed = [r["detail_sealed"] for r in rows if r["detail_sealed"]]
    assert sealed and all(base64.b64decode(s, validate=True) for s in sealed)
    # standard output too: CRLF
    proc = cli("audit", "export", "--format", "csv")
    assert proc.returncode == 0


def test_cef_export_names_the_vault(vdir, tmp_path):
    cli, vault_id = _reviewer_cli(vdir, tmp_path)
    out = tmp_path / "audit.cef"
    assert cli("audit", "export", "--format", "cef", "--out", str(out)).returncode == 0
    lines = out.read_text().splitlines()
    assert lines and all(f"deviceExternalId={vault_id}" in line for line in lines)
    assert all(f" dvchost=cvault-{vault_id[:8]} " in line for line in lines)


def test_forwarder_exports_only_what_is_new(vdir, tmp_path):
    cli, _ = _reviewer_cli(vdir, tmp_path)
    first = tmp_path / "first.cef"
    proc = cli("audit", "export", "--format", "cef", "--out", str(first), "--json")
    assert proc.returncode == 0, proc.stderr
    head = json.loads(proc.stdout)["head_seq"]
    sent = [int(line.split("externalId=")[1].split()[0]) for line in first.read_text().splitlines()]
    assert sent and max(sent) == head
    assert cli("audit", "log").returncode == 0  # more events happen (the reads are audited)
    again = tmp_path / "again.cef"
    proc = cli("audit", "export", "--format", "cef", "--after-seq", str(head), "--out", str(again), "--json")
    assert proc.returncode == 0, proc.stderr
    new = [int(line.split("externalId=")[1].split()[0]) for line in again.read_text().splitlines()]
    assert new and min(new) == head + 1 and json.loads(proc.stdout)["head_seq"] == max(new)
    # --since: a time window; to standard output, the result goes to stderr with --json
    proc = cli("audit", "export", "--format", "csv", "--since", "1h", "--json")
    assert proc.returncode == 0 and proc.stdout.startswith("seq,at,")
    assert json.loads(proc.stderr)["format"] == "csv"
    future = cli("audit", "export", "--format", "csv", "--since", "+1d")
    assert future.returncode == 0 and future.stdout.strip().splitlines() == [",".join(CSV_COLUMNS)]
    # a JSON Lines export is the whole log, so it verifies on its own
    proc = cli("audit", "export", "--format", "jsonl", "--after-seq", "3")
    assert proc.returncode == 2 and "whole log" in proc.stderr


def test_unattended_forwarder_on_the_host_acts_as_system(vdir, tmp_path):
    """No session, the key file at hand: the forwarder exports as ``system:forwarder`` (audited)."""
    env = vdir.env(CVAULT_SESSION_FILE=str(tmp_path / "no-session.json"))
    proc = vdir.cli("audit", "export", "--format", "cef", "--after-seq", "0", env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("CEF:0|"), proc.stderr
    log = vdir.cli("audit", "log", "--action", "audit.export", "--json")
    assert json.loads(log.stdout)[-1]["actor"] == "system:forwarder"
