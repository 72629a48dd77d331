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
        results.append(mac_cost(ctx))
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


def mac_cost(ctx, reads: int = 200) -> Result:
    """What the row MACs (issue 12) add to one ``secret get``: the same read in-process through
    the library (resume the session, authorize, open the record), counting the HMACs made and
    verified and the time spent in them."""
    import time

    from tests.helpers import VaultDir, operator
    from vault import crypto

    spent = [0.0, 0]
    plain = crypto.Mac.mac

    def timed(self, message):
        t = time.perf_counter()
        try:
            return plain(self, message)
        finally:
            spent[0] += time.perf_counter() - t
            spent[1] += 1

    v = VaultDir(ctx.home, ctx.key_file).open()
    try:
        crypto.Mac.mac = timed  # type: ignore[method-assign]
        start = time.perf_counter()
        for _ in range(reads):
            v.secrets.get(operator(), "acme", "rec/0")
        total = time.perf_counter() - start
    finally:
        crypto.Mac.mac = plain  # type: ignore[method-assign]
        v.close()
    per_mac = spent[0] / max(1, spent[1])
    per_get = spent[0] / reads
    return emit(
        Result(
            "secret get: row-MAC work per read (in-process)",
            "s",
            per_get,
            0.0,
            total / reads,
            "the whole in-process read (authorize, audit write, decrypt)",
            per_get / (total / reads),
            "microseconds",
            per_get < 0.001,
            f"{spent[1] / reads:.0f} HMACs per read, {per_mac * 1e6:.1f} us each: {per_get * 1e6:.0f} us of"
            f" {total / reads * 1e3:.2f} ms",
        )
    )


if __name__ == "__main__":
    run()
