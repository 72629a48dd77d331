"""``cvault secret import`` of 100,000 records through the CLI, as a user runs it (issue 20 item 5).

Target: at least 30,000 records/s for 100,000 records, peak memory at most 100 MiB. What is
measured is exactly the user's command: a JSON Lines file of ``records`` access records written
before the clock starts, then one ``cvault secret import acme FILE`` process (console script:
interpreter start, imports, unseal by key file, session, authorization, audit, streaming parse,
validation, encryption, blob files, SQLite, one commit; on two cores, the two encrypt workers
it forks, vault/records/parallel.py). The process is started by a minimal ``python -I -S``
launcher through ``posix_spawn`` and reaped with ``wait4``, so its peak RSS (``ru_maxrss``) is
its own, not the benchmark's (a child forked from this ~100 MiB process would inherit that
high-water mark); ``wait4`` counts the workers it reaped in, CPU summed and peak RSS the largest
of the tree's processes. ``CVAULT_IMPORT_WORKERS=0`` in the environment measures the streamed
path alone.

Reported, same run: records/s by wall clock (meaningful on a quiet machine only), records/s by
the process's CPU time (user + system, all threads: the blob writer thread included) and the
peak RSS. The floor, measured interleaved: AES-GCM-encrypting the same documents under a fresh
key each and inserting one row each into an empty SQLite table, one transaction, in CPU time;
the ratio says how much cvault adds on top.

    python -m bench --only secret_import      (or: python -m bench.secret_import [--records N])
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result, clean_env, cvault_argv, emit, iqr

RECORDS = 100_000
TARGET_RATE = 30_000
TARGET_MIB = 100

#: posix_spawn the command, reap it with wait4: its own CPU time and peak RSS, on stderr
LAUNCHER = r"""
import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, ru = os.wait4(pid, 0)
sys.stderr.write(f"\nRUSAGE {os.waitstatus_to_exitcode(status)} {ru.ru_utime} {ru.ru_stime} {ru.ru_maxrss}\n")
"""


def _line(i: int) -> str:
    return json.dumps(
        {
            "path": f"site/{i // 100}/device-{i}",
            "kind": "access",
            "fields": {
                "host": f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}",
                "port": 22,
                "protocol": "ssh",
                "username": "admin",
                "password": f"pw-{i}-{os.urandom(6).hex()}",
            },
        }
    )


def _floor(path: Path, folder: Path) -> float:
    """CPU seconds of the bare floor over the same lines."""
    from vault import crypto

    conn = sqlite3.connect(folder / "floor.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    start = time.process_time()
    with conn, open(path, "rb") as fh:
        for line in fh:
            conn.execute("INSERT INTO t (data) VALUES (?)", (crypto.seal(crypto.new_key(), line, b"floor"),))
    elapsed = time.process_time() - start
    conn.close()
    return elapsed


def _cli_import(env: dict, path: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in KiB) of one ``cvault secret import``."""
    argv = cvault_argv()
    if not os.path.isabs(argv[0]):  # pragma: no cover - the console script is absolute
        argv[0] = os.path.abspath(argv[0])
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LAUNCHER, *argv, "secret", "import", "acme", str(path)],
        env=env,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    tail = err[-1].split() if err else []
    if len(tail) != 5 or tail[0] != "RUSAGE" or tail[1] != "0":
        raise RuntimeError(f"secret import failed: {' '.join(err[-3:])}")
    return wall, float(tail[2]) + float(tail[3]), int(tail[4])


def run(runs: int = 1, records: int = RECORDS) -> list[Result]:
    from bench.fixtures import ready_vault

    walls, cpus, peaks, floors = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        src = base / "in.jsonl"
        with open(src, "w") as fh:
            for i in range(records):
                fh.write(_line(i) + "\n")
        for i in range(runs):
            ctx = ready_vault(base / f"run{i}", records=0)
            env = clean_env(**ctx.env, CVAULT_NO_AGENT="1")
            floors.append(_floor(src, base / f"run{i}"))
            wall, cpu, peak = _cli_import(env, src)
            walls.append(wall)
            cpus.append(cpu)
            peaks.append(peak)
    wall, cpu, floor = statistics.median(walls), statistics.median(cpus), statistics.median(floors)
    peak_mib = max(peaks) / 1024
    rate, cpu_rate = records / wall, records / cpu
    load = os.getloadavg()[0]
    return [
        emit(
            Result(
                f"cvault secret import of {records:,} records through the CLI",
                "records/s",
                rate,
                iqr([records / w for w in walls]),
                records / floor,
                "AES-GCM + one SQLite insert per record, one transaction (CPU time)",
                floor / cpu,
                f">= {TARGET_RATE:,} records/s (wall, quiet machine)",
                rate >= TARGET_RATE,
                note=f"{wall:.2f} s wall, {cpu:.2f} s CPU (user + system, all threads and workers)"
                f" = {cpu_rate:,.0f} records/s of CPU; load average {load:.1f};"
                " ratio = floor CPU / import CPU",
            )
        ),
        emit(
            Result(
                f"cvault secret import of {records:,} records: peak RSS",
                "MiB",
                peak_mib,
                (max(peaks) - min(peaks)) / 1024,
                None,
                "",
                None,
                f"<= {TARGET_MIB} MiB",
                peak_mib <= TARGET_MIB,
                note="ru_maxrss of the cvault process and its workers, the largest"
                " (posix_spawn from a minimal launcher)",
            )
        ),
    ]


if __name__ == "__main__":
    args = sys.argv[1:]
    run(records=int(args[args.index("--records") + 1]) if "--records" in args else RECORDS)
