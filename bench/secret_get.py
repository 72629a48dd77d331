"""``cvault secret get`` latency (key-file unseal) against the import floor, in the same run.

Target (issue 2): median at most 1.3 x the floor
``python -c "import click, cryptography.hazmat.primitives.ciphers.aead, sqlite3"``.
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
    time_command,
)


def prepare(base: Path, records: int = 10):
    from bench.fixtures import ready_vault

    return ready_vault(base, records=records)


def run(runs: int = 30, records: int = 10) -> list[Result]:
    compile_bytecode()  # as an installed package has it (see bench.common.compile_bytecode)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = prepare(Path(tmp), records)
        get = cvault_argv() + ["secret", "get", "acme", "rec/0", "--field", "password"]
        env = clean_env(**ctx.env)
        floor, got = interleaved(
            runs, lambda: time_command(READ_FLOOR, clean_env()), lambda: time_command(get, env)
        )
    f, g = statistics.median(floor), statistics.median(got)
    ratio = g / f
    return [
        emit(
            Result(
                f"secret get ({records} records)",
                "s",
                g,
                iqr(got),
                f,
                "python -c 'import click, cryptography...aead, sqlite3'",
                ratio,
                "<= 1.3 x floor",
                ratio <= 1.3,
            )
        )
    ]


if __name__ == "__main__":
    run()
