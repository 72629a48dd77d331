"""``cvault doctor`` on 100,000 records and 1,000,000 audit entries, and what its row-MAC check
costs (issue 12, "Performance": doctor reports its rate).

The vault is built through the library's own write paths, so everything doctor checks is
authentic: the records by the bulk import (``secret import``: record and version rows MACed,
blobs encrypted), the audit log by ``AuditLog.append_many`` in batches (the real hash chain).
Then, in one run:

* ``doctor`` (library call, as ``cvault doctor`` runs after authorizing): seconds, and its rate in
  records and audit entries per second;
* the row-MAC check alone (``vault.store.rowmac.verify_table`` over every MACed row) against a
  floor measured in the same run: the same ``SELECT`` of the same rows without the HMACs.

Usage: python -m bench.doctor [--records N] [--events N] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Result, emit, iqr


def build(base: Path, records: int, events: int):
    from tests.helpers import add_client, make_vault, operator

    vd = make_vault(base)
    v = vd.open()
    try:
        add_client(v, "acme")
        step = 10_000
        for start in range(0, records, step):
            lines = [
                json.dumps(
                    {
                        "path": f"rec/{i}",
                        "kind": "access",
                        "fields": {
                            "host": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                            "password": f"pw-{i}",
                        },
                    }
                )
                for i in range(start, min(records, start + step))
            ]
            v.secrets.import_records(operator(), "acme", lines)
        batch = [
            {
                "actor": f"user{i % 40}",
                "action": "secret.get",
                "outcome": "allow" if i % 17 else "deny",
                "client": "acme",
                "reason": "need-to-know: assigned, trained, SLA active",
                "origin": "cli",
            }
            for i in range(10_000)
        ]
        have = v.ctx.db.scalar("SELECT count(*) FROM audit_events")
        while have < events:
            chunk = batch[: min(len(batch), events - have)]
            v.ctx.audit.append_many(chunk)
            have += len(chunk)
    finally:
        v.close()
    return vd


def _macs_floor(conn) -> float:
    from vault.store import rowmac

    t = time.perf_counter()
    for table, spec in rowmac.TABLES.items():
        for _ in conn.execute(f"SELECT {spec.select}, mac FROM {table}"):
            pass
    return time.perf_counter() - t


def _macs(conn) -> tuple[float, int]:
    from vault.store import rowmac

    t = time.perf_counter()
    bad = sum(1 for table in rowmac.TABLES for _ in rowmac.verify_table(conn, table))
    elapsed = time.perf_counter() - t
    if bad:
        raise SystemExit(f"benchmark vault has {bad} rows failing their MAC")
    return elapsed, rowmac.count_rows(conn)


def run(records: int = 100_000, events: int = 1_000_000, runs: int = 1) -> list[Result]:
    from vault.principal import Principal

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        vd = build(Path(tmp), records, events)
        build_s = time.perf_counter() - t
        v = vd.open()
        try:
            doctor_s, floor_s, macs_s = [], [], []
            rows = 0
            report = None
            for _ in range(runs):
                with v.ctx.db.read() as conn:
                    floor_s.append(_macs_floor(conn))
                    elapsed, rows = _macs(conn)
                    macs_s.append(elapsed)
                t = time.perf_counter()
                report = v.maintenance.doctor(Principal.system("bench"))
                doctor_s.append(time.perf_counter() - t)
                if not report.ok:
                    raise SystemExit(f"benchmark vault failed doctor: {report.problems[:3]}")
            entries = report.audit_entries if report else events
        finally:
            v.close()
    d = statistics.median(doctor_s)
    m, f = statistics.median(macs_s), statistics.median(floor_s)
    return [
        emit(
            Result(
                f"doctor ({records:,} records, {entries:,} audit entries)",
                "s",
                d,
                iqr(doctor_s),
                None,
                "",
                None,
                "reports its rate",
                None,
                f"{records / d:,.0f} records/s and {entries / d:,.0f} audit entries/s checked in one pass "
                f"(every blob opened, the chain verified, {rows:,} row MACs); vault built in {build_s:.0f} s",
            )
        ),
        emit(
            Result(
                f"doctor's row-MAC check ({rows:,} rows)",
                "rows/s",
                rows / m,
                iqr([rows / x for x in macs_s]),
                rows / f,
                "the same SELECT of the same rows, no HMAC",
                (rows / f) / (rows / m),
                "microseconds per row",
                None,
                f"{m / rows * 1e6:.1f} us per row (HMAC-SHA256, constant-time compare);"
                f" {m:.2f} s of doctor's {d:.1f} s",
            )
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    run(args.records, args.events, args.runs)


if __name__ == "__main__":
    main()
