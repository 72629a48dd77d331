"""``cvault secret get`` latency (key-file unseal) against the import floor, in the same run.

Target (issue 2, issue 20 item 3): median at most 1.3 x the floor
``python -c "import click, cryptography.hazmat.primitives.ciphers.aead, sqlite3"``, measured

* on a small vault with the editable install of the working tree (the floor and cvault both pay
  the editable import hook), and
* as users run it (issue 20): a regular install (``bench.common.regular_install``: no editable
  hook, so a smaller floor) on a vault with a working history (``bench.fixtures.realistic_vault``:
  10 staff, 100 records, 1,000 audit events), the floor run by the same interpreter.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from bench.common import (
    READ_FLOOR,
    Result,
    clean_env,
    compile_bytecode,
    cvault_argv,
    emit,
    interleaved,
    iqr,
    regular_install,
    time_command,
)


def realistic_vault(base: Path):
    from bench.fixtures import realistic_vault as make

    return make(base)


def prepare(base: Path, records: int = 10):
    from bench.fixtures import ready_vault

    return ready_vault(base, records=records)


def run(runs: int = 30, records: int = 10) -> list[Result]:
    compile_bytecode()  # as an installed package has it (see bench.common.compile_bytecode)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = prepare(Path(tmp), records)
        get = cvault_argv() + ["secret", "get", "acme", "rec/0", "--field", "password"]
        env = clean_env(**ctx.env, CVAULT_NO_AGENT="1")
        floor, got = interleaved(
            runs, lambda: time_command(READ_FLOOR, clean_env()), lambda: time_command(get, env)
        )
        results = [_result(f"secret get ({records} records, editable install)", floor, got)]
        base = Path(tmp) / "realistic"
        base.mkdir()
        real = realistic_vault(base)
        bin_dir = regular_install(base)
        real_env = clean_env(**real.env, CVAULT_NO_AGENT="1")
        real_get = [str(bin_dir / "cvault"), "secret", "get", "acme", "rec/0", "--field", "password"]
        real_floor = [str(bin_dir / "python"), *READ_FLOOR[1:]]
        floor, got = interleaved(
            runs, lambda: time_command(real_floor, clean_env()), lambda: time_command(real_get, real_env)
        )
        results.append(
            _result("secret get (10 staff, 100 records, 1,000 events; regular install)", floor, got)
        )
    return results


def _result(name: str, floor: list[float], got: list[float]) -> Result:
    f, g = statistics.median(floor), statistics.median(got)
    ratio = g / f
    return emit(
        Result(
            name,
            "s",
            g,
            iqr(got),
            f,
            "python -c 'import click, cryptography...aead, sqlite3' (same interpreter)",
            ratio,
            "<= 1.3 x floor",
            ratio <= 1.3,
        )
    )


if __name__ == "__main__":
    run()
