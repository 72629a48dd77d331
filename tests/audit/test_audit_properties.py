"""Audit log properties: export formats, fail-closed writes, shredded details, no secret logged."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import stat
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from tests.factories import Person, assign, audit_cast, client_with_secrets, edit_rows, onboard, person
from tests.helpers import ROOT, clock_at, run_cli
from vault.audit.details import destroy_client_audit_key
from vault.audit.export import CSV_TEXT_COLUMNS, cef_line, csv_lines
from vault.audit.verify import verify_export
from vault.errors import AuditFailure, AuthenticationFailed, InvalidInput, NotFound
from vault.store import rowmac

NASTY = 'evil\n{"seq":1,"type":"entry"}\r\x1b[31m|pipe\\back=eq\u2028\u202e'


@pytest.fixture
def opened(vdir):
    clock = clock_at()
    v = vdir.open(clock)
    c = audit_cast(v)
    client_with_secrets(v, c, paths=("office/firewall", "site/wifi"))
    yield vdir, v, c
    v.close()


def cli_env(vdir, session) -> dict:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(vdir.home.parent),
        "CVAULT_HOME": str(vdir.home),
        "CVAULT_KEY_FILE": str(vdir.key_file),
        "CVAULT_SESSION_FILE": str(session),
    }


def nasty_event(v) -> int:
    """An event whose actor and reason carry every character that could forge a line or field."""
    return v.ctx.audit.append(
        actor=NASTY, action="test.nasty", outcome="deny", client="acme", reason=NASTY, origin=NASTY
    )


# --- formats ------------------------------------------------------------------------------------


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A strict CEF:0 parser: 7 header fields split on unescaped '|', extension key=value pairs."""
    assert line.startswith("CEF:0|") and "\n" not in line and "\r" not in line
    fields, buf, i = [], "", 0
    while len(fields) < 7:
        ch = line[i]
        if ch == "\\":
            nxt = line[i + 1]
            assert nxt in "\\|", f"bad header escape \\{nxt}"
            buf += nxt
            i += 2
            continue
        if ch == "|":
            fields.append(buf)
            buf = ""
        else:
            buf += ch
        i += 1
    ext = line[i:]
    pairs = {}
    # keys are [A-Za-z0-9]+ preceding an unescaped '='
    tokens = re.split(r"(?<!\\) (?=[A-Za-z0-9]+=)", ext)
    for token in tokens:
        key, _, raw = token.partition("=")
        assert re.fullmatch(r"[A-Za-z0-9]+", key), key
        assert re.search(r"(?<!\\)=", raw) is None or raw.count("\\=") >= 1
        value, j = "", 0
        while j < len(raw):
            if raw[j] == "\\":
                nxt = raw[j + 1]
                assert nxt in "\\=nr", f"bad extension escape \\{nxt}"
                value += {"n": "\n", "r": "\r"}.get(nxt, nxt)
                j += 2
            else:
                assert raw[j] != "=", "unescaped = in a value"
                value += raw[j]
                j += 1
        pairs[key] = value
    return fields, pairs


def test_cef_is_valid_and_escapes_everything(opened, tmp_path):
    _, v, c = opened
    seq = nasty_event(v)
    out = tmp_path / "audit.cef"
    v.audit.export(c.reviewer.principal(), "cef", out=out)
    lines = out.read_text().split("\n")[:-1]
    assert (
        len(lines)
        == v.ctx.db.one(
            "SELECT count(*) FROM audit_events WHERE seq <= (SELECT max(seq) FROM audit_checkpoints)"
        )[0]
    )
    parsed = {}
    for line in lines:
        header, ext = parse_cef(line)
        assert header[0] == "CEF:0" and header[1] == "cvault" and len(header) == 7
        assert 0 <= int(header[6]) <= 10
        parsed[int(ext["externalId"])] = (header, ext)
    header, ext = parsed[seq]
    assert header[4] == "test.nasty"
    assert ext["suser"].startswith("evil\n{") and "\x1b" not in ext["suser"]  # CEF \n; others escaped
    assert "|pipe\\back=eq" in ext["reason"]
    # a header field with | and \ in it
    fields, _ = parse_cef(
        cef_line(
            {"seq": 1, "at": "2026-01-01T00:00:00Z", "actor": "a", "action": "x|y\\z", "outcome": "ok"}, "1|0"
        )
    )
    assert fields[3] == "1|0" and fields[4] == "x|y\\z"


def test_csv_round_trips_through_the_csv_module(opened, tmp_path):
    _, v, c = opened
    seq = nasty_event(v)
    v.ctx.audit.append(actor="=cmd|' /C calc'!A0", action="test.formula", outcome="ok")
    out = tmp_path / "audit.csv"
    v.audit.export(c.reviewer.principal(), "csv", out=out)
    text = out.read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(text.splitlines()) == len(rows) + 1  # one physical line per event
    by_seq = {int(r["seq"]): r for r in rows}
    assert (
        by_seq[seq]["reason"] == NASTY.encode("unicode_escape").decode().replace("\\\\", "\\")
        or "\\n" in by_seq[seq]["reason"]
    )
    assert "\n" not in by_seq[seq]["reason"] and "\u2028" not in by_seq[seq]["reason"]
    assert by_seq[seq + 1]["actor"].startswith("'=")
    again = list(csv.reader(io.StringIO("\n".join(csv_lines(iter([{k: r[k] for k in r} for r in rows]))))))
    # only the free-text columns are neutralised (CSV_TEXT_COLUMNS): a sealed detail's base64 may
    # start with "+" (1 run in 64 for a random nonce), and a second export leaves it as it is
    assert again[1:] == [
        [("'" + r[k] if k in CSV_TEXT_COLUMNS and r[k].startswith(("=", "+", "-", "@")) else r[k]) for k in r]
        for r in rows
    ]


def test_jsonl_export_parses_line_by_line_and_is_private(opened, tmp_path):
    _, v, c = opened
    seq = nasty_event(v)
    out = tmp_path / "audit.jsonl"
    v.audit.export(c.reviewer.principal(), "jsonl", out=out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    raw = out.read_bytes()
    assert raw.isascii()
    docs = [json.loads(line) for line in raw.decode().split("\n")[:-1]]
    assert [d["type"] for d in docs[:1]] == ["header"] and docs[-1]["type"] == "trailer"
    assert {d["type"] for d in docs} == {"header", "checkpoint", "entry", "trailer"}
    assert docs[0]["public_key"] == v.audit.public_key()["public_key"]
    nasty = next(d for d in docs if d.get("seq") == seq and d["type"] == "entry")
    assert nasty["reason"] == NASTY
    assert verify_export(raw.decode().splitlines()).ok
    with pytest.raises(InvalidInput, match="already exists"):
        v.audit.export(c.reviewer.principal(), "jsonl", out=out)  # never overwritten


def test_log_output_escapes_control_characters(opened, tmp_path):
    vdir, v, c = opened
    nasty_event(v)
    session = c.reviewer.session_file(tmp_path)
    r = run_cli("audit", "log", "--action", "test.nasty", env=cli_env(vdir, session))
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 2  # header + one event line
    assert "\x1b" not in r.stdout and "\u2028" not in r.stdout and "\u202e" not in r.stdout
    j = run_cli("audit", "log", "--action", "test.nasty", "--json", env=cli_env(vdir, session))
    assert j.stdout.isascii() and json.loads(j.stdout)[0]["reason"] == NASTY


# --- fail closed ----------------------------------------------------------------------------------


def test_audit_write_failure_refuses_the_secret_read_through_the_cli(opened, tmp_path):
    vdir, v, c = opened
    secret = "s3cr3t-value"
    session = c.engineer.session_file(tmp_path)
    env = cli_env(vdir, session)
    ok = run_cli("secret", "get", "acme", "office/firewall", env=env)
    assert ok.returncode == 0 and secret in ok.stdout, ok.stderr
    conn = sqlite3.connect(vdir.home / "vault.db")
    conn.execute(
        "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    conn.commit()
    conn.close()
    r = run_cli("secret", "get", "acme", "office/firewall", env=env)
    # a trigger is not cvault's schema: refused at open (exit 6) before the audit write is tried
    # (review 4, R4-0: tests/integrity/test_schema.py); the write failure itself is the
    # fail-injector tests' below
    assert r.returncode == 6
    assert secret not in r.stdout and secret not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "trigger audit_down" in r.stderr
    assert "Traceback" not in r.stderr


def test_fail_injector_refuses_every_operation(opened):
    _, v, c = opened
    before = v.ctx.db.one("SELECT max(seq) FROM audit_events")[0]

    def boom():
        raise OSError("disk gone")

    v.ctx.audit.fail_injector = boom
    with pytest.raises(AuditFailure):
        v.secrets.get(c.engineer.principal(), "acme", "office/firewall")
    with pytest.raises(AuditFailure):
        v.secrets.put(c.engineer.principal(), "acme", "x/y", "note", {"text": "t"})
    v.ctx.audit.fail_injector = None
    assert v.ctx.db.one("SELECT max(seq) FROM audit_events")[0] == before
    with pytest.raises(NotFound):
        v.secrets.get(c.engineer.principal(), "acme", "x/y")  # the put never happened


# --- client details: survive rotation, shredded with the client -----------------------------------


def test_details_survive_key_rotation(opened):
    _, v, c = opened
    v.clients.rotate_key(c.manager.principal(), "acme")
    v.secrets.get(c.engineer.principal(), "acme", "site/wifi")
    rows = v.audit.log(c.reviewer.principal(), client="acme", action="secret", limit=0)
    details = [r["detail"] for r in rows if r["action"] in ("secret.put", "secret.get")]
    assert details == ["office/firewall", "site/wifi", "site/wifi"]
    stored = v.ctx.db.all("SELECT detail_sealed FROM audit_events WHERE detail_sealed IS NOT NULL")
    assert all(b"office" not in bytes(r[0]) for r in stored)  # sealed, never plain


def test_destroyed_audit_key_shows_shredded_and_the_chain_still_verifies(opened, tmp_path):
    _, v, c = opened
    client = v.ctx.client("acme")
    with v.ctx.db.write() as conn:
        fp = destroy_client_audit_key(conn, client.id)
        assert fp and destroy_client_audit_key(conn, client.id) is None  # idempotent
    r = c.reviewer.principal()
    rows = v.audit.log(r, client="acme", limit=0)
    details = {row["detail"] for row in rows if row["action"].startswith("secret.")}
    assert details == {"[shredded]"}
    assert v.audit.verify(r).ok
    out = tmp_path / "after.jsonl"
    v.audit.export(r, "jsonl", out=out)
    text = out.read_text()
    assert "office/firewall" not in text and "[shredded]" in text
    assert verify_export(text.splitlines()).ok


def test_no_key_is_recreated_for_a_client_being_shredded(opened):
    _, v, c = opened
    client = v.ctx.client("acme")
    with v.ctx.db.write() as conn:
        destroy_client_audit_key(conn, client.id)
        rowmac.update(conn, "clients", "shred_state = 'shredding'", (), "id = ?", (client.id,))
    sealed, ref = v.ctx.audit.details.seal(client.id, client.name, "office/firewall")
    assert (sealed, ref) == (None, None)
    assert v.ctx.db.one("SELECT count(*) FROM client_audit_keys WHERE client_id = ?", (client.id,))[0] == 0


# --- no secret in the log -----------------------------------------------------------------------------


def test_no_secret_password_code_or_token_is_ever_logged(vdir, tmp_path):
    from vault.identity import totp

    clock = clock_at()
    v = vdir.open(clock)
    admin = person(v, "ada", "admin")
    c = audit_cast(v)
    v.clients.add(c.manager.principal(), "acme", sla_end=clock.now() + timedelta(days=365))
    secrets_seen: list[str] = []

    second = person(v, "alma", "admin")
    added = onboard(v, "bob", ["engineer"], requester=admin, approver=second)
    secrets_seen.append(added["enrollment_code"])
    password = "correct horse battery staple 42"
    enrolled = v.users.enroll("bob", added["enrollment_code"], password)
    totp_secret = parse_qs(urlparse(enrolled["otpauth_uri"]).query)["secret"][0]
    secrets_seen += [password, totp_secret, enrolled["otpauth_uri"], *enrolled["recovery_codes"]]
    codes_seen: list[str] = []

    with pytest.raises(AuthenticationFailed):
        v.users.login("bob", "wrong " + password, totp="000000")
    with pytest.raises(AuthenticationFailed):
        v.users.login("bob", password, totp="12345")  # malformed code
    code = totp.code_at(totp_secret, clock.now())
    codes_seen.append(code)
    login = v.users.login("bob", password, totp=code)
    secrets_seen += [login.token, login.principal.session_id]
    with pytest.raises(AuthenticationFailed):
        v.users.login("bob", password, totp=code)  # replay of the same step
    login2 = v.users.login("bob", password, recovery_code=enrolled["recovery_codes"][0])
    secrets_seen.append(login2.token)
    edit_rows(
        v,
        "users",
        "training_valid_until = ?",
        (int((clock.now() + timedelta(days=365)).timestamp()),),
        "name = 'bob'",
    )
    assign(v, Person("bob", login.principal.user_id, frozenset({"engineer"})), "acme")
    p = v.users.resume(login.token)
    values = ["wifi-key-Zq8!x", "fw-admin-pass-7Hk", "api-token-ABCDEF123456"]
    secrets_seen += values
    v.secrets.put(p, "acme", "office/wifi", "note", {"text": values[0]})
    v.secrets.put(
        p,
        "acme",
        "office/firewall",
        "access",
        {"system": "fw", "username": "admin", "password": values[1], "api_token": values[2]},
    )
    clock.advance(16 * 60)
    p = v.users.resume(login.token)
    code2 = totp.code_at(totp_secret, clock.now())
    codes_seen.append(code2)
    v.users.step_up(p, code2)
    p = v.users.resume(login.token)
    assert v.secrets.get(p, "acme", "office/firewall").fields["password"] == values[1]
    new_password = "another long passphrase 99"
    secrets_seen.append(new_password)
    v.users.passwd(p, password, new_password)

    r = c.reviewer.principal()
    exports = []
    for f in ("jsonl", "csv", "cef"):
        out = tmp_path / f"all.{f}"
        v.audit.export(r, f, out=out)
        exports.append(out.read_text())
    table = "\n".join(repr(row) for row in v.ctx.db.all("SELECT * FROM audit_events"))
    table += "\n".join(repr(row) for row in v.ctx.db.all("SELECT * FROM audit_checkpoints"))
    haystacks = exports + [table]
    for needle in secrets_seen:
        for hay in haystacks:
            assert needle not in hay, "a secret reached the audit log"
            assert needle.lower() not in hay.lower() or len(needle) < 8
    # TOTP codes are 6 digits: look for them in every readable field, not inside hashes
    readable = "\n".join(
        " ".join(str(x) for x in row)
        for row in v.ctx.db.all("SELECT actor, action, client, outcome, reason, origin FROM audit_events")
    )
    for code_ in codes_seen + ["000000", "12345"]:
        assert not re.search(rf"(?<!\d){code_}(?!\d)", readable)
    actions = {row[0] for row in v.ctx.db.all("SELECT DISTINCT action FROM audit_events")}
    assert {"auth.login", "auth.totp_replay", "auth.recovery_code", "secret.get"} <= actions
    v.close()
