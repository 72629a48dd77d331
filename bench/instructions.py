"""``cvault secret get`` (no agent) in instructions executed, against the import floor (issue 20 item 3).

Wall-clock ratios on the shared 2-core machine move with the load (at a load average of 20 the
floor alone took 0.5 s instead of 46 ms). Instructions executed do not: ``valgrind --tool=callgrind``
counts them for one whole process (interpreter start, imports, the read, exit), the same from run
to run to a fraction of a percent. Measured as users run it: a regular install
(``bench.common.regular_install``) and a vault with a working history
(``bench.fixtures.realistic_vault``: 10 staff, 100 records, 1,000 audit events); the floor
``python -c "import click, cryptography...aead, sqlite3"`` is run by the same interpreter.

Target: the same 1.3 x as the wall-clock one (instructions are a proxy: they leave out waiting for
the disk, which the fsync of the audit event adds to the wall clock). Skipped without valgrind
(``apt-get install valgrind``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import READ_FLOOR, Result, clean_env, emit

_REFS = re.compile(r"refs:\s+([\d,]+)")


def instructions(argv: list[str], env: dict, out: Path) -> int:
    """Instructions one whole process executes (callgrind's ``I refs``)."""
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    found = _REFS.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"{argv[0]} under valgrind failed: {proc.stderr[-500:]}")
    return int(found.group(1).replace(",", ""))


def run(runs: int = 2) -> list[Result]:
    if shutil.which("valgrind") is None:
        print("valgrind not installed: skipped (apt-get install valgrind)")
        return []
    from bench.common import regular_install
    from bench.fixtures import realistic_vault

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        vault = realistic_vault(base)
        bin_dir = regular_install(base)
        # the installed package, not the working tree that ``python -m bench`` puts on PYTHONPATH
        env = {k: v for k, v in clean_env(**vault.env, CVAULT_NO_AGENT="1").items() if k != "PYTHONPATH"}
        get = [str(bin_dir / "cvault"), "secret", "get", "acme", "rec/0", "--field", "password"]
        check = subprocess.run(get, env=env, capture_output=True, text=True, check=False)
        if check.returncode != 0 or check.stdout != "pw-0\n":
            raise RuntimeError(f"secret get failed: {check.stderr[-500:]}")
        floor_argv = [str(bin_dir / "python"), *READ_FLOOR[1:]]
        out = base / "callgrind.out"
        bare = {k: v for k, v in clean_env().items() if k != "PYTHONPATH"}
        floors = [instructions(floor_argv, bare, out) for _ in range(runs)]
        gets = [instructions(get, env, out) for _ in range(runs)]
    floor, got = min(floors), min(gets)
    ratio = got / floor
    return [
        emit(
            Result(
                "secret get in instructions (10 staff, 100 records, 1,000 events; regular install)",
                "instructions",
                got,
                max(gets) - min(gets),
                floor,
                "python -c 'import click, cryptography...aead, sqlite3' (same interpreter), instructions",
                ratio,
                "<= 1.3 x floor",
                ratio <= 1.3,
                note=f"valgrind callgrind, {runs} runs each, the smallest count",
            )
        )
    ]


if __name__ == "__main__":
    run()
