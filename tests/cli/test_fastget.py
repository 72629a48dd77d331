"""``cvault secret get`` without click (cli.fastget, issue 20 item 3) prints what the click CLI
prints, byte for byte, and exits with the same code, for every command line.

Each command line below, good and bad, runs through both paths: the full click CLI
(:func:`cli.main.run`) and what the console script does (:func:`cli.fastget.try_fast`, the click
CLI when it declines), in two real processes on the same real vault (tests/cli/fastget_driver.py),
piped and on a terminal. Their exit codes, stdout and stderr must be equal; and enough of them
must really have been served without click that the comparison means something. A few run as whole
``cvault`` processes too, and one checks that the served read loads no click at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cli.fastget import parse
from tests.factories import insert_session, person, write_session_file
from tests.helpers import ROOT, add_client, cli_modules, make_vault, operator, run_cli, vault_id_of

ESC_TEXT = "line1 \x1b[31mred\x1b[0m\nline2\ttab \x1b]0;title\x07 end"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("fastget")
    vdir = make_vault(base)
    v = vdir.open()
    try:
        add_client(v, "acme")
        add_client(v, "globex")
        op = operator()
        fields = {"host": "10.0.0.1", "username": "admin", "password": "pw-1"}
        v.secrets.put(op, "acme", "office/fw", "access", fields)
        fields.update(
            password="pw-2", tags=["vpn", "edge"], custom={"pin": {"value": "1234", "secret": True}}
        )
        v.secrets.put(op, "acme", "office/fw", "access", fields, replace=True)
        v.secrets.put(op, "acme", "notes/esc", "note", {"text": ESC_TEXT})
        v.secrets.put(
            op,
            "acme",
            "acct/mfa",
            "account",
            {"username": "ops", "password": "p", "totp": "JBSWY3DPEHPK3PXP"},
        )
        v.secrets.put(op, "acme", "unicode/u", "access", {"password": "pässwörd ✓"})
        v.secrets.put(op, "acme", "files/cert", "note", {"text": "see the files"})
        v.secrets.attach(op, "acme", "files/cert", b"x" * 3000, name="cert.p12")
        v.secrets.attach(op, "acme", "files/cert", b"y" * 10, name="small.txt")
        eve = person(v, "eve", "engineer")  # trained, not assigned to acme
        carl = person(v, "carl", "engineer")
        from tests.factories import assign

        assign(v, carl, "acme")
        vault_id = vault_id_of(vdir.home)
        eve_file = write_session_file(base / "eve.json", vault_id, "eve", eve.token(v))
        carl_token = "cvs1_carl-token-without-step-up"
        from vault.clock import SystemClock, to_epoch

        insert_session(v, carl.user_id, carl_token, to_epoch(SystemClock().now()), stepup=False)
        carl_file = write_session_file(base / "carl.json", vault_id, "carl", carl_token)
    finally:
        v.close()
    env = vdir.env(CVAULT_NO_AGENT="1")
    return {"vdir": vdir, "env": env, "eve": str(eve_file), "carl": str(carl_file), "base": base}


def _cases(world) -> list[dict]:
    home = str(world["vdir"].home)
    get = ["secret", "get"]
    fw = [*get, "acme", "office/fw"]
    lines: list[list[str]] = [
        # served
        [*fw, "--field", "password"],
        [*fw, "--field=password"],
        [*get, "--field", "password", "acme", "office/fw"],
        [*get, "acme", "--field", "password", "office/fw"],
        ["--json", *fw],
        [*fw, "--json"],
        [*fw, "--json", "--field", "password"],
        ["--json", *fw, "--field", "host"],
        [*fw, "--field", "password", "--version", "1"],
        [*fw, "--version=2", "--json"],
        [*fw, "--version", "01", "--field", "password"],
        [*fw, "--field", "tags"],
        [*fw, "--field", "custom.pin"],
        [*fw, "--field", "pin"],
        [*fw, "--field", "port"],
        [*fw, "--field", "password", "--reveal", "--raw"],
        [*fw, "--field", "password", "--totp", "123456"],
        ["--home", home, *fw, "--field", "password"],
        [f"--home={home}", *fw, "--json"],
        ["--json", "--home", home, "--json", *fw],
        [*get, "acme", "notes/esc", "--field", "text"],
        [*get, "acme", "notes/esc", "--field", "text", "--raw"],
        [*get, "acme", "notes/esc", "--json"],
        [*get, "acme", "acct/mfa", "--json"],
        [*get, "acme", "acct/mfa", "--field", "totp"],
        [*get, "acme", "unicode/u", "--field", "password"],
        # the human view
        [*fw],
        [*fw, "--reveal"],
        [*fw, "--version", "1"],
        ["--home", home, *get, "acme", "notes/esc"],
        [*get, "acme", "notes/esc", "--reveal"],
        [*get, "acme", "acct/mfa"],
        [*get, "acme", "unicode/u", "--reveal"],
        [*get, "acme", "files/cert"],
        # served, and refused by the vault
        [*get, "acme", "missing"],
        [*fw, "--field", "nope"],
        [*fw, "--field", "custom.nope", "--json"],
        [*get, "acme", "missing", "--field", "password"],
        [*get, "nosuch", "office/fw", "--field", "password"],
        [*get, "globex", "office/fw", "--json"],
        [*fw, "--version", "9", "--field", "password"],
        [*get, "acme", "\x1b[31mred", "--field", "password"],
        [*get, "acme\n", "office/fw", "--field", "password"],
        [*get, "acme ", "office/fw", "--json"],
        [*get, "acme", "../../etc/passwd", "--json"],
        [*get, "acme", "a" * 5000, "--field", "password"],
        ["--profile", "work", *fw, "--field", "password"],
        ["--profile", "bad/name", *fw, "--field", "password"],
        ["--profile=x" * 3, *fw, "--field", "password"],
        ["--home", str(world["base"] / "nowhere"), *fw, "--field", "password"],
        ["--home", "/dev/null", *fw, "--json"],
        # declined: click's own parsing, help and output
        [*get, "acme"],
        [*get],
        [*fw, "extra", "--field", "password"],
        [*fw, "--field"],
        [*fw, "--field="],
        [*fw, "--field", "password", "--field", "host"],
        [*fw, "--field", "-x"],
        [*fw, "--json", "--json"],
        [*fw, "--nope"],
        [*fw, "--version", "0", "--json"],
        [*fw, "--version", "x", "--json"],
        [*fw, "--version", "-1", "--json"],
        [*fw, "--version", "١", "--json"],
        [*fw, "--field", "password", "--totp"],
        [*fw, "--json=1"],
        [*fw, "--otp", "--field", "password"],
        [*fw, "-h"],
        [*get, "--help"],
        [*get, "--", "acme", "office/fw", "--field", "password"],
        ["--", *fw, "--field", "password"],
        [*get, "acme", "-x", "--field", "password"],
        ["--debug", *get, "acme", "missing", "--field", "password"],
        ["--addr", "https://127.0.0.1:9", *fw, "--field", "password"],
        ["--home", *fw],
        ["--version"],
        ["secret", "--json", "get", "acme", "office/fw"],
        ["secret", "list", "acme"],
        ["secret"],
        [],
        ["--jsn", *fw, "--field", "password"],
    ]
    cases = [{"argv": argv, "tty": False, "env": {}} for argv in lines]
    # on a terminal: escaped values, one-line errors
    for argv in (
        [*get, "acme", "notes/esc", "--field", "text"],
        [*get, "acme", "notes/esc", "--field", "text", "--raw"],
        [*get, "acme", "notes/esc", "--json"],
        [*fw, "--field", "tags"],
        [*get, "acme", "\x1b[31mred", "--field", "password"],
        [*fw],
        [*fw, "--reveal"],
        [*get, "acme", "notes/esc"],
        [*get, "acme", "acct/mfa"],
        [*get, "acme", "files/cert"],
    ):
        cases.append({"argv": argv, "tty": True, "env": {}})
    # other people, other environments
    pw = [*fw, "--field", "password"]
    for env in (
        {"CVAULT_SESSION_FILE": world["eve"]},  # not assigned: access denied
        {"CVAULT_SESSION_FILE": world["carl"]},  # no step-up: exit 3, --totp asked for
        {"CVAULT_SESSION_FILE": str(world["base"] / "no-session.json")},
        {"CVAULT_KEY_FILE": None},  # sealed, no terminal to ask
        {"CVAULT_KEY_FILE": str(world["base"] / "missing.key")},
        {"CVAULT_HOME": None},
        {"CVAULT_HOME": ""},
        {"CVAULT_HOME": str(world["base"] / "nowhere")},
        {"CVAULT_PROFILE": "work"},
        {"CVAULT_PROFILE": ""},
        {"CVAULT_PROFILE": "bad name"},
        {"CVAULT_ADDR": "https://127.0.0.1:9"},
        {"CVAULT_ADDR": ""},
    ):
        cases.append({"argv": pw, "tty": False, "env": env})
    cases.append(
        {"argv": [*pw, "--totp", "000000"], "tty": False, "env": {"CVAULT_SESSION_FILE": world["carl"]}}
    )
    return cases


def _run_driver(path: str, cases: list[dict], env: dict) -> list[dict]:
    # one driver process per environment (a command's environment is its own)
    groups: dict[str, list[int]] = {}
    for i, case in enumerate(cases):
        groups.setdefault(json.dumps(case["env"], sort_keys=True), []).append(i)
    results: list[dict] = [{} for _ in cases]
    for key, indices in groups.items():
        proc = subprocess.run(
            [sys.executable, "-m", "tests.cli.fastget_driver", path],
            input=json.dumps([cases[i] for i in indices]),
            env=_environ(env, json.loads(key)),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        for i, result in zip(indices, json.loads(proc.stdout), strict=True):
            results[i] = result
    return results


def test_both_paths_print_the_same_bytes_and_exit_codes(world):
    cases = _cases(world)
    by_click = _run_driver("click", cases, world["env"])
    by_launcher = _run_driver("launcher", cases, world["env"])
    served = 0
    for case, want, got in zip(cases, by_click, by_launcher, strict=True):
        shown = (case["argv"], case["tty"], case["env"])
        assert not want["fast"]
        assert (got["code"], bytes.fromhex(got["stdout"]), bytes.fromhex(got["stderr"])) == (
            want["code"],
            bytes.fromhex(want["stdout"]),
            bytes.fromhex(want["stderr"]),
        ), shown
        # the path served what parse accepts, and parse accepts only what it should
        assert got["fast"] == (parse(case["argv"], _environ(world["env"], case["env"])) is not None), shown
        served += got["fast"]
        assert (
            "Traceback" not in bytes.fromhex(got["stderr"]).decode("utf-8", "replace")
            or "--debug" in case["argv"]
        )
    # the comparison covers both paths: most good reads and most vault refusals are served
    assert served >= 60, served
    assert len(cases) - served >= 30


def _environ(base: dict, changes: dict) -> dict:
    env = dict(base)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def test_whole_processes_agree_and_the_served_read_loads_no_click(world):
    env = world["env"]
    for argv in (
        ["secret", "get", "acme", "office/fw", "--field", "password"],
        ["--json", "secret", "get", "acme", "unicode/u"],
        ["secret", "get", "acme", "notes/esc", "--field", "text"],
        ["secret", "get", "acme", "notes/esc"],
        ["secret", "get", "acme", "missing", "--field", "password"],
        ["secret", "get", "acme", "\x1b[31mred", "--json"],
        ["secret", "get", "acme", "office/fw", "--version", "0", "--json"],
    ):
        want = run_cli(*argv, env=env, input=b"")
        got = run_cli(*argv, env=env, input=b"", module="cli.launcher")
        assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr), argv
    proc, loaded = cli_modules("secret", "get", "acme", "office/fw", "--field", "password", env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "pw-2\n", ""), proc.stderr[-2000:]
    assert "cli.fastget" in loaded and "vault.records.service" in loaded  # the read ran here
    assert not {m for m in loaded if m == "click" or m.startswith("click.")}, "the served read loaded click"
    assert "cli.main" not in loaded and "cli.commands.secret" not in loaded


def test_parse_reads_only_what_click_reads_the_same_way():
    env: dict[str, str] = {}
    request = parse(["--json", "secret", "get", "--field=a b", "acme", "p/q", "--version", "3"], env)
    assert request is not None
    assert (request.client, request.path, request.field, request.version, request.as_json) == (
        "acme",
        "p/q",
        "a b",
        3,
        True,
    )
    assert request.global_json and request.home is None and request.profile is None
    assert parse(
        ["secret", "get", "a", "b", "--field", "x"], {"CVAULT_HOME": "/h", "CVAULT_PROFILE": "w"}
    ) == (
        request._replace(
            client="a",
            path="b",
            field="x",
            version=None,
            as_json=False,
            global_json=False,
            home="/h",
            profile="w",
        )
    )
    for argv in (
        ["secret", "get", "a", "b", "--field", "x", "--copy"],
        ["secret", "get", "a", "b", "--otp", "--json"],
        ["secret", "get", "a", "b", "--attachment", "f", "--out", "-"],
        ["--debug", "secret", "get", "a", "b", "--json"],
        ["--addr", "https://h", "secret", "get", "a", "b", "--json"],
        ["secret", "get", "a", "b", "--json", "--"],
    ):
        assert parse(argv, env) is None, argv
    assert parse(["secret", "get", "a", "b", "--json"], {"CVAULT_ADDR": "https://h"}) is None
    assert parse(["secret", "get", "a", "b", "--json"], {"_CVAULT_COMPLETE": "bash_complete"}) is None
    assert os.environ.get("_CVAULT_COMPLETE") is None
