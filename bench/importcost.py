"""Where ``cvault secret get`` spends its time beyond the floor: imports (``python -X importtime``)
and the work after them, measured in the same run as the floor, interleaved.

* import time of the modules that ``cvault secret get`` loads and the floor
  (``python -c "import click, cryptography...aead, sqlite3"``) does not, split into cvault's own
  modules and the others, with the heaviest named;
* the in-process phases after the imports: ``Vault.open``, key-file unseal, session resume,
  ``secrets.get`` (authorization, audit event write, decrypt), close.

Diagnostics only (no target): they say what would have to shrink for the issue 2 target.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, Result, clean_env, emit, iqr

FLOOR = [
    sys.executable,
    "-X",
    "importtime",
    "-c",
    "import click, cryptography.hazmat.primitives.ciphers.aead, sqlite3",
]
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")

PHASES = r"""
import os, sys, time, json
t = [time.perf_counter()]
import click, cryptography.hazmat.primitives.ciphers.aead, sqlite3
t.append(time.perf_counter())
import cli.main
from vault.facade import Vault
from cli.session_file import load_token
t.append(time.perf_counter())
v = Vault.open(os.environ["CVAULT_HOME"]); t.append(time.perf_counter())
v.unseal_key_file(os.environ["CVAULT_KEY_FILE"]); t.append(time.perf_counter())
p = v.users.resume(load_token(v.ctx.vault_id.hex())[0]); t.append(time.perf_counter())
v.secrets.get(p, "acme", "rec/0"); t.append(time.perf_counter())
v.close(); t.append(time.perf_counter())
print(json.dumps([b - a for a, b in zip(t, t[1:])]))
"""
PHASE_NAMES = [
    "floor imports",
    "cvault imports (cli.main, vault.facade)",
    "Vault.open",
    "key-file unseal",
    "session resume",
    "secrets.get (authorize, audit write, decrypt)",
    "close (WAL checkpoint)",
]


def _imports(argv: list[str], env: dict) -> dict[str, int]:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {proc.stderr[-300:]}")
    return {m.group(4): int(m.group(1)) for m in map(LINE.match, proc.stderr.splitlines()) if m}


def run(runs: int = 9, quick: bool = False) -> list[Result]:
    from bench.fixtures import ready_vault

    runs = 3 if quick else runs
    with tempfile.TemporaryDirectory() as tmp:
        ctx = ready_vault(Path(tmp), records=10)
        env = clean_env(**ctx.env, PYTHONPATH=str(ROOT))
        get = [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "cli.main",
            "secret",
            "get",
            "acme",
            "rec/0",
            "--field",
            "password",
        ]
        floor_t, own_t, other_t, per_module, phases = [], [], [], {}, []
        for i in range(runs + 1):
            f = _imports(FLOOR, clean_env())
            g = _imports(get, env)
            out = subprocess.run(
                [sys.executable, "-c", PHASES], env=env, capture_output=True, text=True, cwd=ROOT
            )
            if out.returncode != 0:
                raise RuntimeError(out.stderr[-300:])
            if not i:
                continue  # warm-up round
            phases.append(json.loads(out.stdout))
            extra = {k: v for k, v in g.items() if k not in f}
            own = {k: v for k, v in extra.items() if k.split(".")[0] in ("vault", "cli")}
            floor_t.append(sum(f.values()) / 1e6)
            own_t.append(sum(own.values()) / 1e6)
            other_t.append(sum(v for k, v in extra.items() if k not in own) / 1e6)
            for k, v in extra.items():
                per_module.setdefault(k, []).append(v / 1e6)
        n_own = sum(1 for k in per_module if k.split(".")[0] in ("vault", "cli"))
        n_other = len(per_module) - n_own
    heavy = sorted(((statistics.median(v), k) for k, v in per_module.items()), reverse=True)[:8]
    heavy_text = ", ".join(f"{k} {t * 1000:.1f} ms" for t, k in heavy)
    floor = statistics.median(floor_t)
    results = [
        emit(
            Result(
                f"diagnostic: secret get, import of {n_own} cvault modules (self time)",
                "s",
                statistics.median(own_t),
                iqr(own_t),
                floor,
                "import time of the floor's modules",
                None,
                "(diagnostic)",
                None,
                note=f"heaviest extra modules: {heavy_text}",
            )
        ),
        emit(
            Result(
                f"diagnostic: secret get, import of {n_other} other modules the floor does not load",
                "s",
                statistics.median(other_t),
                iqr(other_t),
                floor,
                "import time of the floor's modules",
                None,
                "(diagnostic)",
                None,
                note="stdlib and cryptography modules pulled in by the vault core",
            )
        ),
    ]
    for j, name in enumerate(PHASE_NAMES):
        values = [p[j] for p in phases]
        results.append(
            emit(
                Result(
                    f"diagnostic: secret get in process, {name}",
                    "s",
                    statistics.median(values),
                    iqr(values),
                    None,
                    "",
                    None,
                    "(diagnostic)",
                    None,
                    note=f"{runs} runs, wall clock",
                )
            )
        )
    return results


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
