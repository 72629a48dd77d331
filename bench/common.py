"""Timing helpers shared by the benchmarks: medians, spreads, floors measured in the same run."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The issue 2 floor for a CLI read: the imports no read can avoid (click, AES-GCM, sqlite3).
READ_FLOOR = [sys.executable, "-c", "import click, cryptography.hazmat.primitives.ciphers.aead, sqlite3"]
READ_FLOOR_DESC = "python -c 'import click, cryptography...aead, sqlite3'"


@dataclass
class Result:
    name: str
    unit: str
    median: float
    spread: float  # interquartile range
    floor: float | None
    floor_desc: str
    ratio: float | None
    target: str
    met: bool | None
    note: str = ""

    def line(self) -> str:
        return json.dumps(asdict(self))


def iqr(values: list[float]) -> float:
    if len(values) < 4:
        return max(values) - min(values)
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


def time_command(argv: list[str], env: dict | None = None, stdin: bytes | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed: {proc.stderr.decode()[-500:]}")
    return elapsed


def interleaved(runs: int, *commands: Callable[[], float]) -> list[list[float]]:
    """Run commands alternately so machine noise hits them alike; first round is warm-up."""
    samples: list[list[float]] = [[] for _ in commands]
    for i in range(runs + 1):
        for j, cmd in enumerate(commands):
            t = cmd()
            if i:
                samples[j].append(t)
    return samples


def cvault_argv() -> list[str]:
    script = Path(sys.executable).with_name("cvault")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_")}
    env.update(extra)
    return env


def emit(result: Result) -> Result:
    print(result.line(), flush=True)
    return result


def compile_bytecode() -> None:
    """Bring the ``cli`` and ``vault`` bytecode up to date before timing CLI processes.

    An installed cvault has compiled ``.pyc`` files. In a working tree edited by several people
    (and with ``PYTHONDONTWRITEBYTECODE=1``, as on the shared bench machine) a changed module is
    compiled from source on *every* run instead: measured 4.7 ms per ``cvault secret get`` for
    two stale modules (``cli/remote.py``, ``vault/server/spec.py``), which is neither the floor's
    cost nor the product's. Only ``__pycache__`` is written (git-ignored)."""
    import compileall

    for package in ("cli", "vault"):
        compileall.compile_dir(str(ROOT / package), quiet=2)


def regular_install(base: Path, *, with_deps: bool = True) -> Path:
    """The ``bin`` folder of a regular (non-editable) install of this tree in a fresh venv under
    ``base``: the console script and an interpreter with no editable-install import hook (which
    adds ~9-13 ms to every start and hid a miss of the secret get target), its dependencies
    installed beside it as a user's would be (``with_deps=False``: none, for the agent's client
    path, which imports none)."""
    venv, wheels = base / "regular-venv", base / "wheels"
    # without PYTHONPATH: ``python -m bench`` runs each module with the working tree on it, and
    # pip would then take the package for installed already and leave the venv without it
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    quiet = {"check": True, "capture_output": True, "env": env}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], **quiet)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], **quiet)
    wheel = next(wheels.glob("*.whl"))
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet", "install", str(wheel)]
    subprocess.run(install if with_deps else [*install, "--no-deps", "--no-index"], **quiet)
    subprocess.run([str(python), "-m", "compileall", "-q", str(venv / "lib")], capture_output=True, env=env)
    return venv / "bin"


def column_names(listed: str) -> list[str]:
    """The names of a comma-separated column list (``vault.audit.log.EVENT_COLUMNS`` ...)."""
    return [c.strip() for c in listed.split(",")]


def insert_statement(table: str, columns: str) -> str:
    """``INSERT INTO table (columns) VALUES (?, ...)`` with one placeholder per column, so a
    fixture follows the columns later migrations add (a fixed count broke audit_verify at 0035)."""
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(column_names(columns)))})"
