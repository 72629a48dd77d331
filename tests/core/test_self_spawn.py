"""cvault's own Python child processes never import from the current directory (review6 R6-3,
R6-4; docs/security.md guarantee 49).

``python -c`` and ``python -m`` put the current folder first on ``sys.path``. Every Python child
of cvault (the service's workers, the agent daemon, the clipboard clearers, the audit verifier's
second half, the shred scan, the demo's steps) is therefore started through the one helper,
:func:`vault.hardening.python_argv` (``python -I``, the folder holding the parent's ``vault``
package put on ``sys.path``), in :data:`vault.hardening.CHILD_CWD`.

* a scan of vault/ and cli/: no ``sys.executable`` outside the helper, no ``multiprocessing``,
  and every ``python_argv(...)`` is the argv of a subprocess call that passes ``cwd=CHILD_CWD``;
* in each of the three layouts cvault runs from (a regular ``pip install .``: the packages in a
  venv's site-packages; the editable install of this test environment; a source checkout on
  ``PYTHONPATH``), a child imports the parent's own ``vault`` and ``cli`` even when started in a
  folder holding planted ``vault/``, ``cli/`` and ``json.py``, and ``cvault agent start`` (a
  ``module=`` child) works from such a folder without running any of them.

The two attacks themselves: tests/server/test_r6_3_worker_imports_from_cwd.py and
tests/cli/test_r6_4_agent_imports_from_cwd.py."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import ROOT, make_vault
from vault.hardening import CHILD_CWD, python_argv

HELPER = ROOT / "vault" / "hardening.py"
SUBPROCESS_CALLS = {"Popen", "run", "call", "check_call", "check_output"}


def _sources():
    for package in ("vault", "cli"):
        yield from sorted((ROOT / package).rglob("*.py"))


def _spawn_problems(source: str, name: str) -> list[str]:
    """Each self-spawn in ``source`` (the file ``name``) that bypasses python_argv or CHILD_CWD."""
    tree = ast.parse(source, name)
    helper = name == str(HELPER.relative_to(ROOT))
    problems = []
    argv_calls = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("executable", "_base_executable")
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
            and not helper
        ):
            problems.append(f"{name}:{node.lineno}: sys.{node.attr} outside vault.hardening.python_argv")
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            imported = [a.name for a in node.names]
            if (
                any(m.split(".")[0] == "multiprocessing" for m in modules)
                or "ProcessPoolExecutor" in imported
            ):
                problems.append(f"{name}:{node.lineno}: multiprocessing starts Python children of its own")
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called not in SUBPROCESS_CALLS or not node.args:
                continue
            first = node.args[0]
            if isinstance(first, ast.Call) and getattr(first.func, "id", "") == "python_argv":
                argv_calls.add(id(first))
                cwd = [k.value for k in node.keywords if k.arg == "cwd"]
                if not (cwd and isinstance(cwd[0], ast.Name) and cwd[0].id == "CHILD_CWD"):
                    problems.append(f"{name}:{node.lineno}: a python_argv child without cwd=CHILD_CWD")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "python_argv"
            and id(node) not in argv_calls
            and not helper
        ):
            problems.append(f"{name}:{node.lineno}: python_argv(...) not the argv of a subprocess call")
    return sorted(problems, key=lambda p: int(p.split(":")[1]))


def test_every_python_child_of_cvault_goes_through_the_helper():
    problems = [
        p for path in _sources() for p in _spawn_problems(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert not problems, "\n".join(problems)
    # and the scan sees the spawns it vouches for (a scan finding nothing would pass too)
    spawners = {"vault/server/workers.py", "vault/audit/live.py", "vault/sla/shred.py"}
    spawners |= {"cli/commands/agent.py", "cli/clipboard.py", "cli/commands/demo.py"}
    for spawner in spawners:
        assert "python_argv(" in (ROOT / spawner).read_text(), spawner


def test_the_scan_finds_a_spawn_that_bypasses_the_helper():
    source = (
        "import subprocess, sys\n"
        "from vault.hardening import python_argv\n"
        'subprocess.Popen([sys.executable, "-m", "cli.agent_daemon"])\n'
        'subprocess.run(python_argv(code="pass"))\n'
        'argv = python_argv(code="pass")\n'
        "import multiprocessing\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
    )
    assert _spawn_problems(source, "vault/example.py") == [
        "vault/example.py:3: sys.executable outside vault.hardening.python_argv",
        "vault/example.py:4: a python_argv child without cwd=CHILD_CWD",
        "vault/example.py:5: python_argv(...) not the argv of a subprocess call",
        "vault/example.py:6: multiprocessing starts Python children of its own",
        "vault/example.py:7: multiprocessing starts Python children of its own",
    ]


def test_python_argv_is_this_interpreter_isolated():
    for argv in (python_argv(code="pass"), python_argv(module="cli.main", args=["--version"])):
        assert argv[:3] == [sys.executable, "-I", "-c"]
    assert python_argv(code="pass", project=False) == [sys.executable, "-I", "-c", "pass"]
    assert python_argv(module="cli.main", args=["--version"])[4:] == ["--version"]
    with pytest.raises(ValueError):
        python_argv()
    with pytest.raises(ValueError):
        python_argv(code="pass", module="cli.main")
    assert CHILD_CWD == "/"


# --- the three layouts ------------------------------------------------------------------------------

_CHILD = "import json, vault, cli; print(json.dumps([vault.__file__, cli.__file__]))"

#: the parent: imports cvault as its layout provides it, then starts a python_argv child in the
#: planted folder itself (not CHILD_CWD): -I alone must keep the planted modules out
_PROBE = f"""
import json, os, subprocess, sys
import vault, cli
from vault.hardening import python_argv
child = subprocess.run(python_argv(code={_CHILD!r}), cwd=os.getcwd(), capture_output=True, text=True)
print(json.dumps({{"parent": [vault.__file__, cli.__file__], "child": child.stdout, "err": child.stderr}}))
"""


def _plant(folder: Path, proof: Path) -> None:
    """``vault/``, ``cli/`` and ``json.py`` that only say they ran."""
    for name in ("vault/__init__.py", "cli/__init__.py", "json.py"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"open({str(proof)!r}, 'a').write('planted {name} ran\\n')\n")


def _venv(path: Path) -> Path:
    """A venv whose site-packages holds no cvault but reaches this environment's dependencies (a
    path line of a .pth file: the editable install's own .pth there is not run)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "cvault-test-dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    return site


def _layout(kind: str, tmp_path: Path) -> tuple[list[str], dict[str, str], Path]:
    """(how to run python for this layout, its environment, where its ``vault`` package is)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CVAULT_", "PYTHON"))}
    if kind == "regular":  # pip install . : the packages and the script copied into a venv
        site = _venv(tmp_path / "venv")
        for package in ("vault", "cli"):
            shutil.copytree(ROOT / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
        return [str(tmp_path / "venv" / "bin" / "python")], env, site / "vault"
    if kind == "editable":  # this test environment, as `pip install -e .` made it
        parent = subprocess.run(
            [sys.executable, "-c", "import vault; print(vault.__file__)"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=True,
        )
        return [sys.executable], env, Path(parent.stdout.strip()).parent
    # a source checkout: no cvault installed, the checkout on PYTHONPATH (as tests/helpers.py runs it)
    _venv(tmp_path / "venv")
    return [str(tmp_path / "venv" / "bin" / "python")], {**env, "PYTHONPATH": str(ROOT)}, ROOT / "vault"


@pytest.mark.parametrize("kind", ["regular", "editable", "source"])
def test_a_child_imports_the_parents_cvault_in_every_layout(tmp_path, kind):
    python, env, package = _layout(kind, tmp_path)
    proof = tmp_path / "planted-ran.txt"
    planted = tmp_path / "planted"
    _plant(planted, proof)
    probe = tmp_path / "probe" / "probe.py"  # its folder is sys.path[0]: nothing else in it
    probe.parent.mkdir()
    probe.write_text(_PROBE)
    done = subprocess.run(
        [*python, str(probe)], env=env, cwd=planted, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert not proof.exists(), proof.read_text()
    parent = [Path(p) for p in seen["parent"]]
    assert parent == [package / "__init__.py", package.parent / "cli" / "__init__.py"], seen
    assert seen["child"], seen["err"]
    assert [Path(p) for p in json.loads(seen["child"])] == parent


@pytest.mark.parametrize("kind", ["regular", "editable", "source"])
def test_the_agent_starts_from_a_planted_folder_in_every_layout(tmp_path, kind):
    python, env, _package = _layout(kind, tmp_path)
    script = ROOT / "bin" / "cvault"  # the console script's text; run by this layout's python
    vdir = make_vault(tmp_path / "v")
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = {
        **env,
        "CVAULT_HOME": str(vdir.home),
        "CVAULT_KEY_FILE": str(vdir.key_file),
        "CVAULT_AGENT_SOCK": str(run / "agent.sock"),
    }
    proof = tmp_path / "planted-ran.txt"
    planted = tmp_path / "planted"
    _plant(planted, proof)
    cvault = [*python, str(script)]
    try:
        started = subprocess.run(
            [*cvault, "agent", "start"], env=env, cwd=planted, capture_output=True, text=True, timeout=60
        )
        status = subprocess.run(
            [*cvault, "agent", "status", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True
        )
    finally:
        subprocess.run([*cvault, "agent", "stop"], env=env, cwd=tmp_path, capture_output=True, timeout=60)
    assert not proof.exists(), proof.read_text()
    assert started.returncode == 0, started.stderr
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "unlocked"
