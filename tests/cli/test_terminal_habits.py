"""Terminal habits (issue 16 item 7): one session per profile, ``login`` never silently replaces
another user's session, and ``--copy`` over SSH (no clipboard tool) through OSC 52, cleared by a
detached child, wrapped for tmux and screen. Real subprocesses; the terminal is a real pty."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import pytest

from cli.clipboard import osc52
from tests.helpers import ROOT


def _login(vd, person, env, *extra):
    return vd.cli(
        "login",
        person.name,
        "--password-stdin",
        "--totp",
        person.code(),
        *extra,
        input=person.password + "\n",
        env=env,
    )


def test_one_session_per_profile_and_no_silent_replacement(staff, tmp_path):
    vd = staff.vdir
    env = vd.env(CVAULT_SESSION_FILE=str(tmp_path / "session.json"))
    env.pop("CVAULT_PROFILE", None)
    first = _login(vd, staff.bob, env)
    assert first.returncode == 0, first.stderr
    # another user, same session file, no terminal: refused, one line, bob's session untouched
    refused = _login(vd, staff.carl, env)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "would replace bob's session" in refused.stderr and "--profile" in refused.stderr
    who = json.loads(vd.cli("whoami", "--json", env=env).stdout)
    assert who["user"] == "bob"
    # a profile keeps its own session next to the default one
    carl = _login(vd, staff.carl, env, "--json")
    assert carl.returncode == 2  # (same refusal: the code is not spent by a refusal)
    profiled = vd.cli(
        "--profile",
        "second",
        "login",
        staff.carl.name,
        "--password-stdin",
        "--totp",
        staff.carl.code(),
        input=staff.carl.password + "\n",
        env=env,
    )
    assert profiled.returncode == 0, profiled.stderr
    assert (tmp_path / "session-second.json").exists()
    assert (tmp_path / "session-second.json").stat().st_mode & 0o077 == 0
    assert json.loads(vd.cli("whoami", "--json", env=env).stdout)["user"] == "bob"
    assert json.loads(vd.cli("--profile", "second", "whoami", "--json", env=env).stdout)["user"] == "carl"
    assert (
        json.loads(vd.cli("whoami", "--json", env={**env, "CVAULT_PROFILE": "second"}).stdout)["user"]
        == "carl"
    )
    # --yes replaces on purpose
    replaced = _login(vd, staff.rita, env, "--yes")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads(vd.cli("whoami", "--json", env=env).stdout)["user"] == "rita"
    assert json.loads(vd.cli("--profile", "second", "whoami", "--json", env=env).stdout)["user"] == "carl"
    # logout ends only that profile's session
    assert vd.cli("--profile", "second", "logout", env=env).returncode == 0
    assert not (tmp_path / "session-second.json").exists()
    assert json.loads(vd.cli("whoami", "--json", env=env).stdout)["user"] == "rita"
    for bad in ("../x", "", ".hidden", "a" * 65, "sp ace"):
        proc = (
            vd.cli("--profile", bad, "whoami", env=env)
            if bad
            else vd.cli("whoami", env={**env, "CVAULT_PROFILE": "a/b"})
        )
        assert proc.returncode == 2 and "profile name" in proc.stderr, (bad, proc.stderr)


def _run_in_pty(args: list[str], env: dict, until: list[bytes]) -> bytes:
    """Run ``cvault ARGS`` with a pty as its terminal (stdout and stderr); read what reaches the
    terminal until every marker in ``until`` has been seen (the detached clearer writes last)."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=ROOT,
        close_fds=True,
    )
    # the test keeps the terminal open, as a user's stays open after the command (the detached
    # clearer opens it by name later)
    seen = b""
    try:
        while not all(m in seen for m in until):
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break  # the assertion below names what is missing
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        proc.wait(timeout=30)
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0, seen
    return seen


@pytest.mark.parametrize(
    ("extra_env", "label"),
    [
        ({}, "plain"),
        ({"TMUX": "/tmp/tmux-1000/default,1,0"}, "tmux"),
        ({"STY": "123.pts-0", "TERM": "screen"}, "screen"),
    ],
)
def test_copy_without_a_clipboard_tool_uses_osc52_and_clears(vdir, tmp_path, extra_env, label):
    assert vdir.cli("client", "add", "acme", "--sla-end", "+30d").returncode == 0
    put = vdir.cli(
        "secret", "put", "acme", "ssh/box", "--type", "access", "--from-stdin", input="osc-secret-1\n"
    )
    assert put.returncode == 0, put.stderr
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = vdir.env(PATH=str(empty_bin), CVAULT_CLIPBOARD_CLEAR_SECONDS="0")
    env.update({"TERM": "xterm", **extra_env})
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "TMUX", "STY"):
        if name not in extra_env:
            env.pop(name, None)
    wanted = osc52(b"osc-secret-1", env)
    cleared = osc52(b"", env)
    seen = _run_in_pty(["secret", "get", "acme", "ssh/box", "--copy"], env, [wanted, cleared])
    assert wanted in seen and cleared in seen, (label, seen)
    assert seen.index(wanted) < seen.rindex(cleared)
    assert b"osc-secret-1" not in seen.replace(wanted, b"")  # only inside the (base64) sequence
    if label == "tmux":
        assert seen.count(b"\x1bPtmux;") == 2
    # without a terminal and without a tool: the one documented line, exit 1
    proc = vdir.cli("secret", "get", "acme", "ssh/box", "--copy", env=env)
    assert proc.returncode == 1 and "no clipboard available" in proc.stderr


def _login_on_a_terminal(vd, person, env, *extra: str, answer: bytes | None = None) -> tuple[int, bytes]:
    """``cvault login PERSON`` with a real pty as its controlling terminal (stdin, stdout,
    stderr and /dev/tty, where the hidden password prompt reads): waits for the prompt, then
    types ``answer`` (default: the password and Enter); returns the exit code and everything the
    terminal showed."""
    import pty

    master, slave = pty.openpty()

    # the child makes the pty its controlling terminal itself, then execs the CLI: a preexec_fn
    # would run between fork and exec in a test process that may have threads (other tests in
    # the same xdist worker start some), where it can deadlock; and Ctrl-C is the default
    # SIGINT of a user's terminal, whatever disposition the test process inherited (an ignored
    # SIGINT is inherited across exec, and then Ctrl-C never reaches the prompt)
    take_terminal = (
        "import fcntl, os, signal, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0);"
        " signal.signal(signal.SIGINT, signal.SIG_DFL);"
        " os.execv(sys.executable, [sys.executable, '-m', 'cli.main', *sys.argv[1:]])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", take_terminal, "login", person.name, "--totp", person.code(), *extra],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=ROOT,
        close_fds=True,
        start_new_session=True,
    )
    os.close(slave)
    seen, typed = b"", False
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break  # the assertions name what is missing
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side of the terminal
                break
            if not chunk:
                break
            seen += chunk
            if not typed and b"Password:" in seen:
                os.write(master, answer if answer is not None else person.password.encode() + b"\r")
                typed = True
    finally:
        proc.wait(timeout=60)
        os.close(master)
    return proc.returncode, seen


def test_login_on_a_terminal_warns_before_replacing_another_users_session(staff, tmp_path):
    """Issue 16 item 7 (docs/cli.md): on a terminal, logging in as carl over bob's session says
    so before the password prompt; Ctrl-C there keeps bob's session; --yes replaces without the
    warning; without a terminal the same login is refused unless --yes."""
    vd = staff.vdir
    env = vd.env(CVAULT_SESSION_FILE=str(tmp_path / "session.json"), TERM="xterm")
    env.pop("CVAULT_PROFILE", None)
    assert _login(vd, staff.bob, env).returncode == 0

    def whoami() -> str:
        return json.loads(vd.cli("whoami", "--json", env=env).stdout)["user"]

    warning = b"cvault: warning: this replaces bob's session (use --profile NAME to keep both)"
    # Ctrl-C at the prompt (the terminal's interrupt character): nothing replaced
    code, seen = _login_on_a_terminal(vd, staff.carl, env, answer=b"\x03")
    assert code != 0 and warning in seen, seen
    assert seen.index(warning) < seen.index(b"Password:")  # told before anything is asked
    assert whoami() == "bob"
    # the warning, then the password typed at the hidden prompt: carl's session replaces bob's
    code, seen = _login_on_a_terminal(vd, staff.carl, env)
    assert code == 0, seen
    assert warning in seen and seen.index(warning) < seen.index(b"Password:")
    assert b"logged in as carl" in seen
    assert staff.carl.password.encode() not in seen  # the prompt does not echo
    assert whoami() == "carl"
    # --yes: replaced on purpose, no warning
    code, seen = _login_on_a_terminal(vd, staff.rita, env, "--yes")
    assert code == 0, seen
    assert b"warning" not in seen and b"logged in as rita" in seen
    assert whoami() == "rita"
    # no terminal (a pipe): refused with exit 2 and one line unless --yes
    refused = _login(vd, staff.alice, env)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "would replace rita's session" in refused.stderr
    assert whoami() == "rita"
    assert _login(vd, staff.alice, env, "--yes").returncode == 0  # (bob's code was spent above)
    assert whoami() == "alice"
