"""``audit report`` over a 1,000,000-entry log: seconds and peak memory (issue 20 item 6).

The log is built directly in a scratch SQLite database with the vault's schema (bench.audit_verify's
synthetic entries: 40 users, 200 clients, about 20 days), then the report runs exactly as
``AuditService.report`` runs it after authorizing: the service's own event cursor
(``AuditService._report_events``) into ``build_report``. Peak memory is Python's (tracemalloc) during
the report plus SQLite's page cache (bounded by its cache size). Floor: a bare iteration over the
same rows (``SELECT`` of the same columns), measured in the same run.

Targets: <= 5 s and <= 100 MiB for 1,000,000 events.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from bench.common import Result, emit, iqr


def run(entries: int = 1_000_000, runs: int = 3) -> list[Result]:
    from bench.audit_verify import build
    from vault import crypto
    from vault.audit.log import EVENT_COLUMNS
    from vault.audit.report import ReportSettings, build_report
    from vault.audit.service import AuditService
    from vault.store.db import Database

    vault_id = os.urandom(16)
    private, _public = crypto.ed25519_generate()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "vault.db", create=True)
        db.migrate()
        build(db, entries, vault_id, private)
        service = AuditService.__new__(AuditService)  # the query needs only the database
        service.ctx = SimpleNamespace(db=db)  # type: ignore[assignment]
        since = datetime(2025, 12, 31, tzinfo=UTC)
        until = since + timedelta(days=60)
        settings = ReportSettings.from_settings({})
        times, floors, peaks = [], [], []
        report: dict = {}
        for _ in range(runs):
            t = time.perf_counter()
            for _row in db.conn.execute(f"SELECT {EVENT_COLUMNS} FROM audit_events ORDER BY seq"):
                pass
            floors.append(time.perf_counter() - t)
            t = time.perf_counter()
            report = build_report(service._report_events(since, until), settings, since=since, until=until)
            times.append(time.perf_counter() - t)
        tracemalloc.start()  # once more, for the peak (tracemalloc slows Python down: not timed)
        build_report(service._report_events(since, until), settings, since=since, until=until)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        db.close()
    median, floor = statistics.median(times), statistics.median(floors)
    peak_mib = max(peaks) / 2**20
    events = report["window"]["events"]
    return [
        emit(
            Result(
                f"audit report over {events:,} events",
                "s",
                median,
                iqr(times),
                floor,
                "bare SELECT over the same rows",
                median / floor,
                "<= 5 s",
                median <= 5 and events == entries,
                f"peak Python memory {peak_mib:.1f} MiB (tracemalloc, in a separate untimed run)",
            )
        ),
        emit(
            Result(
                "audit report peak memory",
                "MiB",
                peak_mib,
                0.0,
                None,
                "",
                None,
                "<= 100 MiB",
                peak_mib <= 100,
                "tracemalloc peak during the report; SQLite's page cache is bounded by its cache_size",
            )
        ),
    ]


if __name__ == "__main__":
    run()
