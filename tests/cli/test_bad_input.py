"""Bad input is exit 2 with one line, never "internal error" (issue 13, item 6): the replays."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli.inproc import cvault
from tests.helpers import ROOT, add_client


@pytest.fixture
def env(vdir):
    v = vdir.open()
    add_client(v, "acme")
    v.close()
    return vdir.env()


def _one_line_exit_2(got) -> None:
    assert got.code == 2, (got.code, got.stderr)
    assert "internal error" not in got.stderr and "Traceback" not in got.stderr, got.stderr
    # one line from cvault ("cvault: ..."), or click's usage block ending in its one "Error:" line
    lines = [line for line in got.stderr.strip().splitlines() if line]
    assert len(lines) == 1 or lines[-1].startswith("Error: "), got.stderr


def test_fields_json_and_import_lines_1000_levels_deep(env, tmp_path):
    deep = "[" * 1000 + "]" * 1000
    src = tmp_path / "deep.json"
    src.write_text('{"text": ' + deep + "}")
    _one_line_exit_2(cvault(env, "secret", "put", "acme", "d/1", "--type", "note", "--fields-json", str(src)))
    src.write_text("[" * 100_000)
    _one_line_exit_2(cvault(env, "secret", "put", "acme", "d/1", "--type", "note", "--fields-json", str(src)))
    src.write_text('{"text": ' + "9" * 100_000 + "}")  # more digits than int() takes
    _one_line_exit_2(cvault(env, "secret", "put", "acme", "d/1", "--type", "note", "--fields-json", str(src)))
    lines = tmp_path / "deep.jsonl"
    lines.write_text('{"path": "a", "kind": "note", "fields": {"text": ' + deep + "}}\n")
    _one_line_exit_2(cvault(env, "secret", "import", "acme", str(lines)))
    lines.write_text("[" * 100_000 + "\n")
    _one_line_exit_2(cvault(env, "secret", "import", "acme", str(lines)))


def test_integers_past_sqlite(env, vdir):
    for big in ("9223372036854775808", "9223372036854775807", "99999999999999999999999"):
        _one_line_exit_2(cvault(env, "audit", "log", "--limit", big))
        _one_line_exit_2(cvault(env, "secret", "get", "acme", "x", "--version", big))
    # and through a real process
    got = vdir.cli("audit", "log", "--limit", "9223372036854775808")
    assert got.returncode == 2 and "internal error" not in got.stderr


def test_passwords_on_standard_input_that_are_not_utf8(env):
    """Found by tests/cli/test_fuzz.py: "internal error: UnicodeDecodeError"."""
    login = ("login", "operator", "--password-stdin", "--totp", "000000")
    for argv in (("passwd", "--password-stdin"), login):
        got = cvault(env, *argv, input=b"\xff\xfe secret\n")
        assert got.code == 2 and "not UTF-8" in got.stderr, (argv, got.code, got.stderr)
        _one_line_exit_2(got)


def test_an_enrollment_code_on_standard_input_that_is_not_utf8(env):
    """Found by tests/cli/test_fuzz.py in the final CI run: "internal error: UnicodeDecodeError"."""
    for argv in (
        ("user", "enroll", "nope", "--code-stdin"),
        ("user", "enroll", "nope", "--code-stdin", "--password-stdin"),
    ):
        got = cvault(env, *argv, input=b"\xa1\x80")
        assert got.code == 2 and "not UTF-8" in got.stderr, (argv, got.code, got.stderr)
        _one_line_exit_2(got)


def test_paths_the_system_refuses(env, tmp_path):
    """Found by tests/cli/test_fuzz.py: a file name over the system's limit was "internal error:
    OSError"; any path the system refuses is one line naming it, exit 2."""
    export = tmp_path / "export.jsonl"
    export.write_text("")
    for argv in (
        ("audit", "verify", "--file", str(export), "--pubkey", "x" * 300),
        ("secret", "put", "acme", "p/1", "--type", "note", "--file", str(tmp_path / ("y" * 300))),
        ("secret", "put", "acme", "p/1", "--type", "note", "--file", str(tmp_path)),
    ):
        got = cvault(env, *argv)
        _one_line_exit_2(got)


def test_no_error_line_carries_a_terminal_escape(tmp_path):
    """Review R6: every line cli.errors prints has its C0/C1 controls escaped, on the click path
    and on the fast path of ``secret get``. The message here names a folder the user gave."""
    import os

    from tests.helpers import run_cli

    folder = tmp_path / "v\x1b]52;c;Y3VybA==\x07\x9b31m\nforged line"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_")}
    env.update({"CVAULT_HOME": str(folder), "PYTHONIOENCODING": "utf-8"})
    for args in (("secret", "list", "acme"), ("secret", "get", "acme", "x/y")):
        got = run_cli(*args, env=env)
        assert got.returncode != 0, got
        assert got.stderr.startswith("cvault: no vault at "), got.stderr
        assert not any(ch in got.stderr for ch in "\x1b\x07\x9b"), repr(got.stderr)
        assert got.stderr.count("\n") == 1 and "\\x1b]52" in got.stderr, repr(got.stderr)


def test_the_error_report_escapes_c0_and_c1_controls():
    from cli.errors import report
    from vault.errors import NotFound

    lines: list[str] = []
    try:
        raise NotFound("no user named 'a\x1b[2J\x9b\u2028b'")
    except NotFound as exc:
        assert report(exc, False, lines.append) == 5
    assert lines == ["cvault: no user named 'a\\x1b[2J\\x9b\\u2028b'"], lines


#: a BrokenPipeError from a pipe of the process's own (not stdout), reported by cli.errors with
#: stdout a pipe whose reader is there ("open") or gone ("closed")
_OTHER_PIPE = r"""
import os, sys
from cli.errors import report
read_end, write_end = os.pipe()
os.close(read_end)
try:
    os.write(write_end, b"x")
except BrokenPipeError as exc:
    code = report(exc, False, lambda line: print(line, file=sys.stderr))
sys.stderr.write(f"exit {code}\n")
"""


@pytest.mark.parametrize("stdout", ["open", "closed"])
def test_a_broken_pipe_is_a_closed_stdout_only_when_it_is(tmp_path, stdout):
    """review9 R9-2: every BrokenPipeError was taken for a closed stdout (exit 1, no line), so an
    encrypt worker's pipe ended ``secret import`` without a word. Only a stdout (or stderr) whose
    reader is gone is silent now; another pipe's is a line."""
    read_end, write_end = os.pipe()
    if stdout == "closed":
        os.close(read_end)
    try:
        got = subprocess.run(
            [sys.executable, "-c", _OTHER_PIPE],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=60,
        )
    finally:
        os.close(write_end)
        if stdout == "open":
            os.close(read_end)
    expected = {
        "open": ["cvault: internal error: BrokenPipeError (run with --debug for details)", "exit 1"],
        "closed": ["exit 1"],
    }
    assert got.stderr.splitlines() == expected[stdout], got.stderr
