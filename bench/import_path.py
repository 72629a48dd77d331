"""What ``cvault secret get`` imports, locally and in service mode (``python -X importtime``).

Issue 15: the import path of ``secret get`` must stay unchanged or lighter, and the remote CLI must
not import the services. This benchmark measures, in one run and interleaved:

* the floor: ``python -c "import click, cryptography...aead, sqlite3"``;
* a local ``cvault secret get`` on a real vault: the modules it loads beyond the floor, cvault's own
  import time (self time, summed) and every other module's;
* the service-mode ``cvault --addr https://127.0.0.1:<closed port> secret get``: it stops at the
  refused connection (exit 9), after every import the command makes;
* with ``--compare DIR``: the local ``secret get`` of another source tree (e.g. ``git archive``
  of an older commit), on a vault that tree made, for a before/after ratio: of the whole command's
  CPU time (interleaved runs), and of the import time ``-X importtime`` reports.

``-X importtime`` does not time modules loaded through ``importlib.import_module`` (the command
modules and the facade's services, which load lazily that way; their own imports are timed), so
the CPU-time ratio is the one that decides "unchanged or lighter".

Checks (the run fails when one does not hold): neither path loads a heavy module (pydantic,
FastAPI, Starlette, uvicorn, uvloop, httptools, msal, requests, jinja2, segno, platformdirs), the
local path loads no write-path or service-side module, and the remote path loads no module at or above
``vault.context`` in the import rule (docs/architecture.md): no service, no facade, no store.

    python -m bench.import_path [--quick] [--compare /tmp/base]
"""

from __future__ import annotations

import json
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, Result, clean_env, emit, iqr
from bench.importcost import FLOOR, LINE

HEAVY = (
    "pydantic",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "msal",
    "requests",
    "jinja2",
    "segno",
    "platformdirs",
)
#: never on the local read path: validation (pydantic), the server, the replica, the reviewer's tools
LOCAL_FORBIDDEN = (
    "vault.records.validate",
    "vault.server",
    "vault.sync",
    "vault.audit.service",
    "vault.importers",
)
#: never in the service client: the layers from vault.context up (docs/architecture.md)
REMOTE_FORBIDDEN = (
    "vault.context",
    "vault.facade",
    "vault.store",
    "vault.backends",
    "vault.keys",
    "vault.crypto",
    "vault.identity",
    "vault.records.service",
    "vault.clients",
    "vault.audit.service",
    "vault.sla",
    "vault.sync",
    "vault.custody",
    "vault.server",
)

MAKE_VAULT = r"""
import json, sys
from pathlib import Path
from bench.fixtures import ready_vault
ctx = ready_vault(Path(sys.argv[1]), records=10)
print(json.dumps(ctx.env))
"""


def _imports(argv: list[str], env: dict, cwd: Path, ok=(0,)) -> dict[str, int]:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=cwd)
    if proc.returncode not in ok:
        raise RuntimeError(f"{argv[3:8]} exited {proc.returncode}: {proc.stderr[-400:]}")
    return {m.group(4): int(m.group(1)) for m in map(LINE.match, proc.stderr.splitlines()) if m}


def _get(*extra: str) -> list[str]:
    return [sys.executable, "-X", "importtime", "-m", "cli.main", *extra, "secret", "get", "acme", "rec/0"]


def _vault(tree: Path, folder: Path) -> dict:
    """A ready vault made by ``tree``'s own code (its schema), as CVAULT_* variables."""
    out = subprocess.run(
        [sys.executable, "-c", MAKE_VAULT, str(folder)],
        env=clean_env(PYTHONPATH=str(tree)),
        capture_output=True,
        text=True,
        cwd=tree,
        check=True,
    ).stdout
    return json.loads(out.splitlines()[-1])


def _cpu(env: dict, cwd: Path) -> float:
    """CPU seconds (user + system) of one ``cvault secret get`` of the tree in ``cwd`` (``-m``
    imports from there). CPU time, not wall clock: on a shared machine the wall clock measures
    the other tenants as much as the command."""
    argv = [sys.executable, "-m", "cli.main", "secret", "get", "acme", "rec/0"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-400:])
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _own(mods: dict[str, int]) -> float:
    return sum(v for k, v in mods.items() if k.split(".")[0] in ("vault", "cli")) / 1e6


def _matches(mods, prefixes) -> list[str]:
    return sorted(m for m in mods if any(m == p or m.startswith(p + ".") for p in prefixes))


def run(runs: int = 9, quick: bool = False, compare: Path | None = None) -> list[Result]:
    import compileall

    runs = 3 if quick else runs
    for tree in (ROOT, compare):  # time imports, not the compilation of stale bytecode
        if tree is not None:
            for package in ("cli", "vault"):
                compileall.compile_dir(str(Path(tree) / package), quiet=2)
    samples: dict[str, list[float]] = {
        "floor": [],
        "local": [],
        "remote": [],
        "before": [],
        "wall_now": [],
        "wall_before": [],
    }
    seen: dict[str, set[str]] = {"local": set(), "remote": set(), "before": set()}
    with tempfile.TemporaryDirectory() as tmp:
        env = clean_env(**_vault(ROOT, Path(tmp) / "now"), PYTHONPATH=str(ROOT))
        remote_env = clean_env(PYTHONPATH=str(ROOT), CVAULT_SESSION_FILE=str(Path(tmp) / "none.json"))
        addr = f"https://127.0.0.1:{_closed_port()}"
        before_env = None
        if compare is not None:
            before_env = clean_env(**_vault(compare, Path(tmp) / "before"), PYTHONPATH=str(compare))
        for i in range(runs + 1):
            floor = _imports(FLOOR, clean_env(), ROOT)
            local = _imports(_get(), env, ROOT)
            remote = _imports(_get("--addr", addr), remote_env, ROOT, ok=(3, 9))
            before = _imports(_get(), before_env, compare) if before_env and compare else None
            if before_env and compare:
                wall_now = _cpu(env, ROOT)
                wall_before = _cpu(before_env, compare)
            if not i:
                continue  # warm-up round (bytecode, page cache)
            if before_env and compare:
                samples["wall_now"].append(wall_now)
                samples["wall_before"].append(wall_before)
            samples["floor"].append(sum(floor.values()) / 1e6)
            for name, mods in (("local", local), ("remote", remote), ("before", before)):
                if mods is None:
                    continue
                samples[name].append(_own(mods))
                seen[name] |= {m for m in mods if m not in floor}
    problems = []
    for name in ("local", "remote"):
        if heavy := _matches(seen[name], HEAVY):
            problems.append(f"{name} secret get imports {', '.join(heavy[:5])}")
    if bad := _matches(seen["local"], LOCAL_FORBIDDEN):
        problems.append(f"local secret get imports {', '.join(bad[:5])}")
    if bad := _matches(seen["remote"], REMOTE_FORBIDDEN):
        problems.append(f"the service client imports {', '.join(bad[:5])}")
    floor = statistics.median(samples["floor"])
    own_modules = sum(1 for m in seen["local"] if m.split(".")[0] in ("vault", "cli"))
    results = [
        emit(
            Result(
                f"secret get (local): import of cvault's {own_modules} modules",
                "s",
                statistics.median(samples["local"]),
                iqr(samples["local"]),
                floor,
                "import time of the floor's modules",
                None,
                "(diagnostic)",
                None,
                note=f"{len(seen['local'])} modules beyond the floor",
            )
        ),
        emit(
            Result(
                "secret get (service mode): import of the service client",
                "s",
                statistics.median(samples["remote"]),
                iqr(samples["remote"]),
                floor,
                "import time of the floor's modules",
                None,
                "no service, facade, store or crypto module" if not problems else "; ".join(problems),
                not problems,
                note=", ".join(sorted(m for m in seen["remote"] if m.startswith("vault"))),
            )
        ),
    ]
    if samples["before"]:
        # the fastest of the interleaved runs: on a shared machine the slower ones measure the
        # other tenants (medians are in the note)
        wall_now, wall_before = min(samples["wall_now"]), min(samples["wall_before"])
        medians = statistics.median(samples["wall_now"]), statistics.median(samples["wall_before"])
        results.append(
            emit(
                Result(
                    f"secret get (local): CPU time against {compare}",
                    "x",
                    wall_now / wall_before,
                    0.0,
                    wall_before,
                    "the other tree's secret get, same run, interleaved",
                    1.0,
                    "<= 1.0 (unchanged or lighter)",
                    wall_now <= wall_before * 1.05,  # 5 %: run-to-run noise on a shared machine
                    note=f"fastest run: now {wall_now * 1000:.1f} ms, before {wall_before * 1000:.1f} ms;"
                    f" medians {medians[0] * 1000:.1f} and {medians[1] * 1000:.1f} ms",
                )
            )
        )
        before = statistics.median(samples["before"])
        now = statistics.median(samples["local"])
        results.append(
            emit(
                Result(
                    f"secret get (local): cvault's import time against {compare}",
                    "x",
                    now / before,
                    0.0,
                    before,
                    "the other tree's cvault import time, same run",
                    1.0,
                    "(diagnostic: importlib-loaded modules are not timed)",
                    None,
                    note=f"now {now * 1000:.2f} ms, before {before * 1000:.2f} ms; "
                    f"modules now {len(seen['local'])}, before {len(seen['before'])}",
                )
            )
        )
    if problems:
        raise SystemExit("import path check failed: " + "; ".join(problems))
    return results


if __name__ == "__main__":
    args = sys.argv[1:]
    other = Path(args[args.index("--compare") + 1]) if "--compare" in args else None
    run(quick="--quick" in args, compare=other)
