"""Identity through the real CLI (subprocesses): onboarding, login, step-up, refusals, exit codes,
secrets at rest, the import cost of ``secret get``, and the demo."""

import json
import re
import subprocess
import sys

from tests.factories import edit_rows, totp_code
from tests.helpers import (
    ROOT,
    cli_login,
    grep_tree,
    make_staff_vault,
    run_cli,
)
from vault.identity.totp import secret_from_uri


def _one_line(proc, code, text):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], proc.stderr


def test_onboarding_login_stepup_logout(staff, tmp_path):
    vd = staff.vdir
    _, admin_env = cli_login(vd, staff.alice, tmp_path)
    added = json.loads(vd.cli("user", "add", "dora", "--role", "engineer", "--json", env=admin_env).stdout)
    assert added["state"] == "pending_approval" and "enrollment_code" not in added
    _, second_env = cli_login(vd, staff.ada, tmp_path)
    approved = json.loads(vd.cli("user", "approve", "dora", "--json", env=second_env).stdout)
    code = approved["enrollment_code"]
    dora_env = vd.env(CVAULT_SESSION_FILE=str(tmp_path / "dora.json"))
    bad = vd.cli(
        "user",
        "enroll",
        "dora",
        "--code-stdin",
        "--password-stdin",
        input="0000-0000-0000\ndora-password-123\n",
        env=dora_env,
    )
    _one_line(bad, 3, "enrollment failed")
    enrolled = vd.cli(
        "user",
        "enroll",
        "dora",
        "--code-stdin",
        "--password-stdin",
        "--json",
        input=f"{code}\ndora-password-123\n",
        env=dora_env,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    doc = json.loads(enrolled.stdout)
    # the issuer is the vault's name (default cvault-<8 hex of the vault id>), with every parameter
    assert re.fullmatch(
        r"otpauth://totp/(cvault-[0-9a-f]{8}):dora\?secret=[A-Z2-7]+&issuer=\1&algorithm=SHA1&digits=6&period=30",
        doc["otpauth_uri"],
    ), doc["otpauth_uri"]
    assert len(doc["recovery_codes"]) == 10
    secret = secret_from_uri(doc["otpauth_uri"])
    # not logged in yet: exit 3, one line
    _one_line(vd.cli("client", "list", env=dora_env), 3, "not logged in: run cvault login NAME")
    # wrong password, non-numeric code: exit 3, one line, nothing secret echoed
    wrong = vd.cli(
        "login",
        "dora",
        "--password-stdin",
        "--totp",
        totp_code(secret),
        input="not-the-password\n",
        env=dora_env,
    )
    _one_line(wrong, 3, "authentication failed")
    assert "not-the-password" not in wrong.stderr
    _one_line(
        vd.cli(
            "login", "dora", "--password-stdin", "--totp", "abcdef", input="dora-password-123\n", env=dora_env
        ),
        3,
        "authentication failed",
    )
    ok = vd.cli(
        "login",
        "dora",
        "--password-stdin",
        "--totp",
        totp_code(secret),
        "--json",
        input="dora-password-123\n",
        env=dora_env,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["user"] == "dora" and "cvs1_" not in ok.stdout
    session_file = tmp_path / "dora.json"
    assert (session_file.stat().st_mode & 0o777) == 0o600
    who = json.loads(vd.cli("whoami", "--json", env=dora_env).stdout)
    assert who["user"] == "dora" and who["roles"] == ["engineer"]
    # the admin sees the failures counted
    shown = json.loads(vd.cli("user", "show", "dora", "--json", env=admin_env).stdout)
    assert shown["state"] == "active" and shown["consecutive_failures"] == 0
    logout = vd.cli("logout", env=dora_env)
    assert logout.returncode == 0 and not session_file.exists()
    _one_line(vd.cli("whoami", env=dora_env), 3, "not logged in")


def test_stepup_through_the_cli(staff, tmp_path):
    vd = staff.vdir
    env = vd.env(CVAULT_SESSION_FILE=str(staff.bob.session_file(tmp_path, vault=vd)))
    assert (
        vd.cli(
            "secret", "put", "acme", "n", "--type", "note", "--from-stdin", input="hello-value\n", env=env
        ).returncode
        == 0
    )
    v = vd.open()
    edit_rows(v, "sessions", "stepup_at = stepup_at - 1200", (), "1")  # the step-up is 20 minutes old
    v.close()
    stale = vd.cli("secret", "get", "acme", "n", env=env)
    _one_line(stale, 3, "step-up needed")
    assert "--totp" in stale.stderr
    good = vd.cli("secret", "get", "acme", "n", "--field", "text", "--totp", staff.bob.code(), env=env)
    assert good.returncode == 0 and good.stdout.strip() == "hello-value", good.stderr
    # the step-up is fresh now: no code needed
    again = vd.cli("secret", "get", "acme", "n", "--field", "text", env=env)
    assert again.returncode == 0 and again.stdout.strip() == "hello-value"


def test_refusals_exit_4_with_one_line(staff, tmp_path):
    vd = staff.vdir
    carl = vd.env(CVAULT_SESSION_FILE=str(staff.carl.session_file(tmp_path, vault=vd)))
    _one_line(
        vd.cli("secret", "get", "acme", "x", env=carl), 4, "access denied: carl is not assigned to acme"
    )
    amy = vd.env(CVAULT_SESSION_FILE=str(staff.amy.session_file(tmp_path, vault=vd)))
    _one_line(
        vd.cli("user", "list", env=amy),
        4,
        "access denied: amy has no role allowed to user.list (needs admin)",
    )
    _one_line(vd.cli("client", "assign", "acme", "nobody", env=amy), 5, "no user named 'nobody'")
    assert vd.cli("client", "assign", "acme", "carl", "--until", "+30d", env=amy).returncode == 0
    rita = vd.env(CVAULT_SESSION_FILE=str(staff.rita.session_file(tmp_path, vault=vd)))
    view = json.loads(vd.cli("client", "access", "acme", "--json", env=rita).stdout)
    assert {r["user"] for r in view["users"] if r["can_read"]} == {"bob", "carl"}
    uview = vd.cli("user", "access", "carl", env=rita)
    assert uview.returncode == 0 and "acme" in uview.stdout
    _one_line(vd.cli("client", "access", "acme", env=carl), 4, "access denied")


def test_admin_commands(staff, tmp_path):
    vd = staff.vdir
    admin = vd.env(CVAULT_SESSION_FILE=str(staff.alice.session_file(tmp_path, vault=vd)))
    for args in (
        ["user", "grant", "carl", "--role", "security_reviewer"],
        ["user", "revoke", "carl", "--role", "security_reviewer"],
        ["user", "train", "carl", "--until", "+30d"],
        ["user", "disable", "carl"],
        ["user", "enable", "carl"],
        ["user", "unlock", "carl"],
        ["user", "reset-totp", "carl"],
        ["user", "list"],
        ["user", "show", "carl"],
    ):
        proc = vd.cli(*args, env=admin)
        assert proc.returncode == 0, (args, proc.stderr)
    _one_line(vd.cli("user", "show", "nobody", env=admin), 5, "no user named 'nobody'")
    assert vd.cli("user", "disable", "ada", env=admin).returncode == 0
    _one_line(vd.cli("user", "disable", "alice", env=admin), 2, "last active admin")
    actions = [r for r in vd.open().ctx.db.all("SELECT action, outcome FROM audit_events")]
    for action in (
        "user.grant",
        "user.revoke",
        "user.train",
        "user.disable",
        "user.enable",
        "user.unlock",
        "user.reset_totp",
    ):
        assert (action, "ok") in actions


def test_session_file_of_another_vault_is_refused(staff, tmp_path):
    other = make_staff_vault(tmp_path / "other")
    foreign = other.bob.session_file(tmp_path, vault=other.vdir)
    proc = staff.vdir.cli("client", "list", env=staff.vdir.env(CVAULT_SESSION_FILE=str(foreign)))
    _one_line(proc, 3, "not logged in to this vault")


def test_init_with_admin_then_login(tmp_path):
    env = {
        "CVAULT_HOME": str(tmp_path / "v"),
        "CVAULT_SESSION_FILE": str(tmp_path / "s.json"),
        "CVAULT_KEY_FILE": str(tmp_path / "k"),
        "PYTHONPATH": str(ROOT),
        "PATH": "/usr/bin:/bin",
    }
    init = run_cli(
        "init",
        "--no-passphrase",
        "--key-file",
        str(tmp_path / "k"),
        "--admin",
        "ada",
        "--password-stdin",
        "--json",
        input="ada-password-123\n",
        env=env,
    )
    assert init.returncode == 0, init.stderr
    doc = json.loads(init.stdout)
    assert doc["admin"] == "ada" and len(doc["recovery_codes"]) == 10
    code = totp_code(secret_from_uri(doc["otpauth_uri"]))
    login = run_cli("login", "ada", "--password-stdin", "--totp", code, input="ada-password-123\n", env=env)
    assert login.returncode == 0, login.stderr
    # the same code again (replay): refused, one line
    again = run_cli("login", "ada", "--password-stdin", "--totp", code, input="ada-password-123\n", env=env)
    _one_line(again, 3, "authentication failed")
    # unknown user: the same message, exit 3 (--yes: ada's session is in this file, and without a
    # terminal login refuses to replace another user's session before it checks anything)
    _one_line(
        run_cli(
            "login",
            "nobody",
            "--password-stdin",
            "--totp",
            "123456",
            "--yes",
            input="whatever-pass\n",
            env=env,
        ),
        3,
        "authentication failed",
    )
    human = run_cli(
        "init",
        "--no-passphrase",
        "--key-file",
        str(tmp_path / "k2"),
        "--admin",
        "ada",
        "--password-stdin",
        input="ada-password-123\n",
        env=dict(env, CVAULT_HOME=str(tmp_path / "v2")),
    )
    assert human.returncode == 0 and "otpauth://" in human.stdout and "█" in human.stdout


def test_no_plaintext_credentials_in_the_vault_folder_or_output(tmp_path):
    env = {
        "CVAULT_HOME": str(tmp_path / "v"),
        "CVAULT_SESSION_FILE": str(tmp_path / "s.json"),
        "CVAULT_KEY_FILE": str(tmp_path / "k"),
        "PYTHONPATH": str(ROOT),
        "PATH": "/usr/bin:/bin",
    }
    password = "Plaintext-Canary-Password-42"
    init = run_cli(
        "init",
        "--no-passphrase",
        "--key-file",
        str(tmp_path / "k"),
        "--admin",
        "ada",
        "--password-stdin",
        "--json",
        input=password + "\n",
        env=env,
    )
    doc = json.loads(init.stdout)
    secret = secret_from_uri(doc["otpauth_uri"])
    outputs = []
    for attempt in (password + "x", password):  # a failure, then a success
        proc = run_cli(
            "login", "ada", "--password-stdin", "--totp", totp_code(secret), input=attempt + "\n", env=env
        )
        outputs.append(proc.stdout + proc.stderr)
    token = json.loads((tmp_path / "s.json").read_text())["token"]
    # one enrolled admin: adding a second admin is a bootstrap step, the code printed at once
    add = run_cli("user", "add", "dora", "--role", "admin", "--json", env=env)
    assert json.loads(add.stdout)["mode"] == "bootstrap"
    enroll_code = json.loads(add.stdout)["enrollment_code"]
    outputs.append(run_cli("doctor", env=env).stdout)
    home = tmp_path / "v"
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name.endswith("-wal") for p in files) or files
    import base64

    for needle in (
        password,
        secret,
        base64.b32decode(secret + "=" * (-len(secret) % 8)),
        token,
        enroll_code,
        doc["recovery_codes"][0],
        doc["recovery_codes"][0].replace("-", ""),
    ):
        raw = needle if isinstance(needle, bytes) else needle.encode()
        assert grep_tree(home, raw) == [], needle
        assert not any(raw.decode("latin-1") in o for o in outputs)
    assert all(password not in o for o in outputs)


def test_secret_get_imports_stay_light(staff, tmp_path):
    vd = staff.vdir
    env = vd.env(CVAULT_SESSION_FILE=str(staff.bob.session_file(tmp_path, vault=vd)))
    assert (
        vd.cli(
            "secret", "put", "acme", "n", "--type", "note", "--from-stdin", input="v\n", env=env
        ).returncode
        == 0
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cli.main", "secret", "get", "acme", "n"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    for heavy in ("pyotp", "segno", "platformdirs", "pydantic", "fastapi", "uvicorn", "uvloop", "httptools"):
        assert heavy not in imported, heavy


def test_demo_walks_through_onboarding_login_and_a_refusal():
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo"], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    out = proc.stdout
    for text in (
        "--admin alice",
        "user add bob --role engineer",
        "user enroll bob",
        "login bob",
        "client assign acme bob",
        "user train bob",
        "carl is not assigned to acme",
        "(exit 4, as expected)",
        "demo complete",
    ):
        assert text in out, text
