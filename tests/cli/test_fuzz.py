"""A fuzz test of the CLI (issue 13, "Must hold"): at least 2,000 generated command lines and
standard inputs, every one answered with a documented exit code (0-9), never "internal error",
never a traceback.

The command lines come from the CLI's own command tree (``cli.main.cli``, walked like
``cvault --help`` does): a command, then a shuffled mix of its options and arguments with values
drawn by the parameter's click type (choices and junk, integers around and past 64 bits, files
from a set of hostile ones, text with shell-hostile and undecodable characters: a byte that is not
UTF-8 reaches Python's argv as a lone surrogate), plus stray tokens; standard input is arbitrary
bytes. They run in-process through the real entry point (``cli.main.run``, tests/cli/inproc.py)
for speed, against one real vault that accumulates whatever the earlier cases did; a sample runs
again as real subprocesses and must exit the same way.

Left out: commands that reach the network or start servers and daemons (``serve``, ``agent``,
``operator``, ``remote``, ``sync``, ``custody``), ``demo`` (a scripted walk through the other
commands, in subprocesses), ``--copy`` (the clipboard) and ``--debug`` (prints tracebacks on
purpose). The cases are split in two halves (two seeds), so ``pytest -n 2`` runs them side by side.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.cli.inproc import cvault
from tests.helpers import add_client

CASES = int(os.environ.get("CVAULT_FUZZ_CASES", "2000"))
SKIP_GROUPS = {"serve", "agent", "operator", "remote", "sync", "custody", "demo"}
#: ``logout`` and ``slot remove`` would end the operator's session or the key-file slot for every
#: later case (the session file is also put back after any case that removed it)
SKIP_COMMANDS = {("logout",), ("slot", "remove")}
SKIP_OPTIONS = {"copy", "debug"}
VALID_EXITS = set(range(10))


def command_tree() -> list[tuple[tuple[str, ...], click.Command]]:
    from cli.main import cli

    found: list[tuple[tuple[str, ...], click.Command]] = []
    ctx = click.Context(cli)

    def walk(path: tuple[str, ...], group: click.Group) -> None:
        for name in group.list_commands(ctx):
            if not path and name in SKIP_GROUPS:
                continue
            command = group.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            if isinstance(command, click.Group):
                walk((*path, name), command)
            elif (*path, name) not in SKIP_COMMANDS:
                found.append(((*path, name), command))

    walk((), cli)
    return found


TREE = command_tree()

#: text that argv can carry (no NUL), with lone surrogates for undecodable bytes
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(exclude_characters="\x00", exclude_categories=["Cs"]),
        st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),
        st.sampled_from(list("/.-=,;:'\"\\ \t\r\n*?[]{}$`|&<>~%é\u202e\ufeff")),
    ),
    max_size=40,
)
NAMES = st.sampled_from(["acme", "globex", "nope", "a/b", "../x", "x" * 300, "ACME", "acme ", "", "-"])
PATHS = st.sampled_from(["office/fw", "rec/1", "a", "a/b/c", "../../etc/passwd", "/abs", "x/", "", "é/✓"])
INTS = st.one_of(
    st.integers(-5, 40),
    st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**40]),
    st.integers(),
).map(str)
WHEN = st.sampled_from(
    [
        "tomorrow",
        "+1d",
        "+999999w",
        "-1d",
        "2026-02-30",
        "9999-12-31",
        "0001-01-01",
        "2026-06-01T00:00:00Z",
        "now",
    ]
)
STRAY = st.sampled_from(["--", "-", "--nope", "-x", "--json", "--help", "=", "--version", "-h"])


def _file_samples(folder) -> list[str]:
    folder.mkdir()
    files = {
        "empty": b"",
        "fields.json": json.dumps({"text": "v", "password": "p", "username": "u"}).encode(),
        "deep.json": b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        "array.json": b"[1, 2, 3]",
        "bad-utf8": b"\xff\xfe\x00bad",
        "crlf.txt": b"line\r\nline\r",
        "import.jsonl": b'{"path": "imp/1", "kind": "note", "fields": {"text": "x"}}\n{"path": 5}\n',
        "import.csv": b"name,url,username,password\nx,https://x,u,p\n",
        "nan.json": b'{"text": NaN, "port": 1e400}',
        "big.txt": b"y" * 300_000,
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "a-dir").mkdir()
    paths = [str(folder / name) for name in files] + [
        str(folder / "a-dir"),
        str(folder / "missing"),
        "/dev/null",
    ]
    return paths + [str(folder / "out-1"), str(folder / "out-2")]


def _value(param: click.Parameter, files: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    kind = param.type
    name = (param.name or "").lower()
    if isinstance(kind, click.Choice):
        return st.one_of(st.sampled_from([str(c) for c in kind.choices]), TEXT)
    if isinstance(kind, click.types.IntParamType | click.IntRange):
        return st.one_of(INTS, TEXT)
    if isinstance(kind, click.types.FloatParamType):
        return st.one_of(st.sampled_from(["nan", "inf", "-inf", "1e400", "0.5", "-3"]), INTS)
    if isinstance(kind, click.Path | click.File):
        return st.one_of(files, files, TEXT)
    if any(word in name for word in ("file", "out", "json", "dir", "source", "path_to")):
        return st.one_of(files, TEXT)
    if any(word in name for word in ("client", "name", "user")):
        return st.one_of(NAMES, TEXT)
    if "path" in name:
        return st.one_of(PATHS, TEXT)
    if any(word in name for word in ("until", "when", "end", "since", "within", "before", "after")):
        return st.one_of(WHEN, TEXT)
    if "=" in (param.metavar or "") or name in ("custom", "secret_file"):
        return st.one_of(st.tuples(TEXT, files).map("=".join), TEXT)
    return st.one_of(TEXT, NAMES, INTS)


@st.composite
def command_lines(draw, files: st.SearchStrategy[str]) -> tuple[tuple[str, ...], list[str]]:
    path, command = draw(st.sampled_from(TREE))
    tokens: list[list[str]] = []
    for param in command.params:
        if isinstance(param, click.Option):
            if param.name in SKIP_OPTIONS or param.hidden or not draw(st.integers(0, 3)):
                continue
            flag = draw(st.sampled_from(param.opts + param.secondary_opts))
            if param.is_flag or param.count:
                tokens.append([flag])
            else:
                for _ in range(draw(st.integers(1, 2)) if param.multiple else 1):
                    tokens.append([flag, draw(_value(param, files))])
        elif isinstance(param, click.Argument) and draw(st.integers(0, 7)):  # mostly given
            count = draw(st.integers(0, 3)) if param.nargs == -1 else 1
            tokens.extend([draw(_value(param, files))] for _ in range(count))
    if draw(st.integers(0, 9)) == 0:
        tokens.append([draw(STRAY)])
    order = draw(st.permutations(range(len(tokens)))) if draw(st.booleans()) else range(len(tokens))
    prefix = ["--json"] if draw(st.booleans()) else []
    return path, [*prefix, *path, *(word for i in order for word in tokens[i])]


def _problem(code: int, stdout: bytes, stderr: str) -> str | None:
    """What is wrong with one run's outcome (None: nothing)."""
    out = stdout.decode("utf-8", "replace")
    if code not in VALID_EXITS:
        return f"exit {code}: {stderr[-300:]}"
    for text in (out, stderr):
        if "internal error" in text or "Traceback" in text:
            return f"exit {code}: {text[-600:]}"
    return None


@pytest.fixture(scope="module")
def world(tmp_path_factory, request):
    from tests.helpers import make_vault

    # on tmpfs where there is one: a commit's fsync costs nothing there, and thousands of runs
    # each write an audit event (durability is tested elsewhere, tests/core/test_robustness.py)
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else None
    base = base or tmp_path_factory.mktemp("fuzz")
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    vdir = make_vault(base)
    v = vdir.open()
    add_client(v, "acme")
    add_client(v, "globex")
    from tests.helpers import operator

    v.secrets.put(
        operator(), "acme", "office/fw", "access", {"password": "pw", "host": "fw", "username": "u"}
    )
    v.secrets.put(operator(), "acme", "rec/1", "note", {"text": "note"})
    v.close()
    return vdir, vdir.env(), _file_samples(base / "files")


@pytest.mark.slow
@pytest.mark.parametrize("half", [0, 1])
def test_generated_command_lines_exit_0_to_9_without_internal_errors(world, half, monkeypatch):
    vdir, env, files = world
    cwd = Path(files[0]).parent / f"cwd-{half}"  # relative output paths land here, not in the tree
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    seen: list[list[str]] = []
    reached: set[tuple[str, ...]] = set()
    slowest: list[tuple[float, list[str]]] = []
    failures: list[tuple[list[str], bytes, str]] = []

    @seed(1300 + half)
    @settings(
        max_examples=CASES // 2,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        line=command_lines(st.sampled_from(files)),
        stdin=st.one_of(st.binary(max_size=120), TEXT.map(str.encode)),
    )
    def case(line, stdin):
        path, argv = line
        started = time.perf_counter()
        got = cvault(env, *argv, input=stdin)
        slowest.append((time.perf_counter() - started, argv))
        slowest.sort(key=lambda pair: -pair[0])
        del slowest[5:]
        reached.add(path)
        vdir.operator_session_file()  # back if the case removed it (login failures, passwd...)
        problem = _problem(got.code, got.stdout, got.stderr)
        if problem:
            failures.append((argv, stdin[:60], problem))
        seen.append(argv)

    case()
    # every distinct failure, one line each (by the command and the first line of the error)
    distinct = {
        (tuple(w for w in a if not w.startswith("-"))[:2], p.splitlines()[0]): (a, i, p)
        for a, i, p in failures
    }
    assert not failures, "\n".join(repr(v) for v in list(distinct.values())[:15])
    assert len(seen) >= CASES // 2
    assert len(reached) >= len(TREE) * 3 // 4, sorted(reached)  # the generator reaches most commands
    print("slowest cases:", [(round(t, 2), a[:6]) for t, a in slowest])
    # a sample again as real processes (the console script's entry point, a fresh interpreter)
    rng = random.Random(13 + half)
    plain = [a for a in seen if not any("\udc80" <= ch <= "\udcff" for word in a for ch in word)]
    for argv in rng.sample(plain, 6):
        proc = subprocess.run(
            [sys.executable, "-m", "cli.main", *argv],
            input=b"",
            env=env,
            cwd=cwd,
            capture_output=True,
            timeout=120,
        )
        assert _problem(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace")) is None, argv
