"""``audit report`` over a 1,000,000-event window: CPU seconds and peak memory (issue 20 item 6),
and the first page of ``audit log`` over the same log.

The log is built once in a scratch SQLite database with the vault's schema (every migration;
bench.audit_verify's synthetic entries: 40 users, 200 clients, about 20 days) and cached in the
temp folder, keyed by the newest migration number and the size (``CVAULT_BENCH_CACHE`` names
another folder). The report runs exactly as ``AuditService.report`` runs it after authorizing:
``vault.audit.report.report_from_db`` over one read snapshot.

Measured in CPU time (``time.process_time``: the shared machine's load does not move it much),
wall time alongside; floor, interleaved in the same rounds: a bare Python iteration over the
window's rows (the seven columns a one-pass report would read). Peak memory: the maximum
resident set of a fresh process that opens the database and runs the report once (SQLite's
page cache and sorter included), minus that of the same process before the report.

Targets: <= 5 s and <= 100 MiB for 1,000,000 events; ``audit log`` first page <= 200 ms.

The CLI commands that stream the whole log (``audit log --limit 0`` and ``audit export``) and the
first page of ``audit log`` run as users run them, as whole ``cvault`` processes, on a real vault
whose audit log holds 1,000,000 events written through the vault's own append path
(``AuditLog.append_batch``: chained, checkpointed and signed every 100, a third of them
``secret.get`` with a sealed record path; built once, about 90 s, and cached like the log above).
Their peak memory is the process's own VmHWM, read by the process as it ends (``cli.main.run``,
then /proc/self/status, then ``os._exit`` as ``cli.main.main`` does): ``ru_maxrss`` of a child
would start at this benchmark's own resident set, which holds the fixture it built; stdout goes
to /dev/null. The first page also in CPU and wall time (``os.wait4``: that child only).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, Result, emit, iqr

SINCE, UNTIL = "2025-12-31T00:00:00+00:00", "2026-03-01T00:00:00+00:00"


def fixture(entries: int) -> Path:
    from bench.audit_verify import build
    from vault import crypto
    from vault.store.db import Database, migration_numbers

    folder = Path(os.environ.get("CVAULT_BENCH_CACHE") or tempfile.gettempdir())
    path = folder / f"cvault-bench-audit-m{max(migration_numbers())}-{entries}.db"
    if path.exists():
        return path
    partial = path.with_suffix(f".{os.getpid()}.partial")
    db = Database(partial, create=True)
    db.migrate()
    build(db, entries, os.urandom(16), crypto.ed25519_generate()[0])
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    os.replace(partial, path)
    return path


# the peak resident set from /proc (VmHWM): a forked child's ru_maxrss starts at its parent's
_CHILD = """
import json, sys
from datetime import datetime
from vault.audit.report import ReportSettings, report_from_db
from vault.store.db import Database
db = Database(sys.argv[1])
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
before = hwm()
with db.read() as conn:
    r = report_from_db(conn, ReportSettings.from_settings({}), since=datetime.fromisoformat(sys.argv[2]),
                       until=datetime.fromisoformat(sys.argv[3]))
after = hwm()
print(json.dumps({"before_kib": before, "after_kib": after, "events": r["window"]["events"]}))
"""


def run(entries: int = 1_000_000, runs: int = 3) -> list[Result]:
    from datetime import datetime
    from types import SimpleNamespace

    from vault.audit.report import ReportSettings, report_from_db, window_bounds
    from vault.audit.service import AuditService
    from vault.store.db import Database

    path = fixture(entries)
    since, until = datetime.fromisoformat(SINCE), datetime.fromisoformat(UNTIL)
    db = Database(path)
    settings = ReportSettings.from_settings({})
    bounds = window_bounds(since, until)
    cpu, wall, floor_cpu, floor_wall = [], [], [], []
    report: dict = {}
    for i in range(runs + 1):  # the first round warms the page cache and is not kept
        c, w = time.process_time(), time.perf_counter()
        for _row in db.conn.execute(
            "SELECT seq, at, actor, action, client, outcome, reason FROM audit_events"
            " WHERE at >= ? AND at <= ?",
            bounds,
        ):
            pass
        fc, fw = time.process_time() - c, time.perf_counter() - w
        c, w = time.process_time(), time.perf_counter()
        with db.read() as conn:
            report = report_from_db(conn, settings, since=since, until=until)
        rc, rw = time.process_time() - c, time.perf_counter() - w
        if i:
            floor_cpu.append(fc)
            floor_wall.append(fw)
            cpu.append(rc)
            wall.append(rw)
    # audit log's first page (the newest 100), unfiltered and with each filter a reviewer uses
    service = AuditService.__new__(AuditService)  # the query needs only the database
    service.ctx = SimpleNamespace(db=db)  # type: ignore[assignment]
    pages = {}
    for name, filters in (
        ("no filter", {}),
        ("--since", {"since": since}),
        ("--user", {"user": "user7"}),
        ("--client", {"client": "client-42"}),
        ("--action", {"action": "secret.get"}),
    ):
        samples = []
        for _ in range(runs + 1):
            c = time.process_time()
            got = list(service._query(limit=100, **filters))
            samples.append(time.process_time() - c)
        pages[name] = (statistics.median(samples[1:]), len(got))
    db.close()
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), SINCE, UNTIL],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    mem = json.loads(child.stdout)
    peak_mib = mem["after_kib"] / 1024
    grown_mib = (mem["after_kib"] - mem["before_kib"]) / 1024
    m, f = statistics.median(cpu), statistics.median(floor_cpu)
    events = report["window"]["events"]
    out = [
        emit(
            Result(
                f"audit report over {events:,} events (CPU time)",
                "s",
                m,
                iqr(cpu),
                f,
                "bare Python iteration over the window's rows (7 columns), CPU time, same rounds",
                m / f,
                "<= 5 s",
                m <= 5 and events == entries,
                f"wall {statistics.median(wall):.2f} s against a floor of"
                f" {statistics.median(floor_wall):.2f} s; load average {os.getloadavg()[0]:.1f}",
            )
        ),
        emit(
            Result(
                "audit report peak memory (whole process)",
                "MiB",
                peak_mib,
                0.0,
                None,
                "",
                None,
                "<= 100 MiB",
                peak_mib <= 100,
                f"maximum resident set (VmHWM) of a fresh process running the report once; the report added"
                f" {grown_mib:.1f} MiB to the process's peak",
            )
        ),
    ]
    out += cli_runs(entries)
    for name, (seconds, n) in pages.items():
        out.append(
            emit(
                Result(
                    f"audit log first page, {name} ({n} events)",
                    "s",
                    seconds,
                    0.0,
                    None,
                    "",
                    None,
                    "<= 0.200 s",
                    seconds <= 0.2,
                    f"CPU time of the query over {entries:,} events (AuditService._query, limit 100)",
                )
            )
        )
    return out


def vault_fixture(entries: int) -> dict:
    """A vault (home, key file, operator session) whose audit log holds ``entries`` events written
    through the vault's append path; cached like :func:`fixture`. Returns the CLI environment."""
    import shutil

    from bench.fixtures import ready_vault
    from tests.helpers import VaultDir, add_client
    from vault.store.db import migration_numbers

    folder = Path(os.environ.get("CVAULT_BENCH_CACHE") or tempfile.gettempdir())
    path = folder / f"cvault-bench-auditvault-m{max(migration_numbers())}-{entries}"
    env_file = path / "env.json"
    if not env_file.exists():
        partial = path.with_name(path.name + f".{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        ctx = ready_vault(partial, records=0)
        v = VaultDir(ctx.home, ctx.key_file).open()
        try:
            for i in range(1, 10):
                add_client(v, f"client-{i}")
            clients = [v.ctx.client("acme" if i == 0 else f"client-{i}") for i in range(10)]
            batch: list[tuple] = []
            for seq in range(entries):
                c, actor = clients[seq % 10], f"user{seq % 40}"
                if seq % 3 == 0:
                    sealed, key = v.ctx.seal_detail(c, f"site/{seq % 1000}/dev/{seq}")
                    batch.append(
                        (actor, "secret.get", "allow", c.name, "need-to-know: assigned", "cli", sealed, key)
                    )
                elif seq % 17 == 0:
                    batch.append(
                        (actor, "secret.list", "deny", c.name, "user is not assigned", "cli", None, None)
                    )
                else:
                    batch.append((actor, "auth.login", "allow", None, "ok", "cli", None, None))
                if len(batch) >= 20_000:
                    v.ctx.audit.append_batch(batch)
                    batch = []
            if batch:
                v.ctx.audit.append_batch(batch)
        finally:
            v.close()
        relative = {k: str(Path(val).relative_to(partial)) for k, val in ctx.env.items()}
        (partial / "env.json").write_text(json.dumps(relative))
        shutil.rmtree(path, ignore_errors=True)
        os.replace(partial, path)
    relative = json.loads(env_file.read_text())
    return {k: str(path / val) for k, val in relative.items()}


#: the CLI as ``cvault`` runs it (cli.main.main: run, flush, os._exit), telling its own peak
#: resident set (VmHWM) on stderr last
_CLI = """
import os, sys
from cli.main import run
code = run(sys.argv[1:])
sys.stdout.flush()
sys.stderr.flush()
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        os.write(2, ("\\nVmHWM " + line.split()[1] + "\\n").encode())
os._exit(code)
"""


def _child_run(argv: list[str], env: dict) -> tuple[float | None, float, float]:
    """(peak resident MiB or None, CPU seconds, wall seconds) of one process, stdout to
    /dev/null; the peak is the one a process started from :data:`_CLI` reports."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    err = proc.stderr.read().decode() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed ({proc.returncode}): {err[-500:]}")
    peak = [line.split()[1] for line in err.splitlines() if line.startswith("VmHWM ")]
    return (int(peak[-1]) / 1024 if peak else None), usage.ru_utime + usage.ru_stime, wall


def cli_runs(entries: int, runs: int = 3) -> list[Result]:
    """``audit log --limit 0`` and ``audit export`` as whole CLI processes: peak memory; the
    first page of ``audit log``: CPU and wall time of the process, against the import floor."""
    from bench.common import READ_FLOOR, READ_FLOOR_DESC, clean_env, cvault_argv

    env = clean_env(**vault_fixture(entries), CVAULT_NO_AGENT="1", PYTHONPATH=str(ROOT))
    cvault, measured = cvault_argv(), [sys.executable, "-c", _CLI]
    out = []
    for name, args in (
        ("audit log --limit 0", ["audit", "log", "--limit", "0"]),
        ("audit export (jsonl, stdout)", ["audit", "export"]),
    ):
        mib, cpu, wall = _child_run(measured + args, env)
        assert mib is not None
        out.append(
            emit(
                Result(
                    f"{name} of {entries:,} events: peak memory (whole process)",
                    "MiB",
                    mib,
                    0.0,
                    None,
                    "",
                    None,
                    "<= 100 MiB",
                    mib <= 100,
                    f"peak resident set (VmHWM) of the CLI process; it took {cpu:.1f} s CPU,"
                    f" {wall:.1f} s wall; load average {os.getloadavg()[0]:.1f}",
                )
            )
        )
    floor, page_cpu, page_wall = [], [], []
    for _ in range(runs):
        floor.append(_child_run(READ_FLOOR, clean_env())[1])
        _, cpu, wall = _child_run(cvault + ["audit", "log"], env)  # as users run it
        page_cpu.append(cpu)
        page_wall.append(wall)
    m, f = statistics.median(page_cpu), statistics.median(floor)
    out.append(
        emit(
            Result(
                f"audit log first page of {entries:,} events (whole CLI process, CPU time)",
                "s",
                m,
                iqr(page_cpu),
                f,
                READ_FLOOR_DESC + " (CPU time)",
                m / f,
                "<= 0.200 s",
                m <= 0.2,
                f"wall {statistics.median(page_wall):.3f} s; load average {os.getloadavg()[0]:.1f}",
            )
        )
    )
    return out


if __name__ == "__main__":
    run()
