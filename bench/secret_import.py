"""``secret import`` of 10,000 records through the library (validation, encryption, one transaction).

Target (issue 2): at least 5,000 records/s. The floor measured in the same run is the bare cost of
what an import cannot avoid: AES-GCM-encrypting the same documents and inserting one row each into
an empty SQLite table in one transaction; the ratio says how much cvault adds on top.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Result, emit, iqr

RECORDS = 10_000


def _lines() -> list[str]:
    return [
        json.dumps(
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
        for i in range(RECORDS)
    ]


def _floor(lines: list[str], folder: Path) -> float:
    from vault import crypto

    conn = sqlite3.connect(folder / "floor.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    start = time.perf_counter()
    with conn:
        for line in lines:
            key = crypto.new_key()
            conn.execute("INSERT INTO t (data) VALUES (?)", (crypto.seal(key, line.encode(), b"floor"),))
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def run(runs: int = 3) -> list[Result]:
    from tests.helpers import add_client, make_vault, operator

    lines = _lines()
    samples, floors = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            base = Path(tmp) / f"run{i}"
            base.mkdir()
            floors.append(_floor(lines, base))
            vd = make_vault(base)
            v = vd.open()
            add_client(v, "acme")
            start = time.perf_counter()
            result = v.secrets.import_records(operator(), "acme", lines)
            samples.append(time.perf_counter() - start)
            assert result["imported"] == RECORDS
            v.close()
    median, floor = statistics.median(samples), statistics.median(floors)
    rate = RECORDS / median
    return [
        emit(
            Result(
                "secret import 10,000 records",
                "records/s",
                rate,
                iqr([RECORDS / s for s in samples]),
                RECORDS / floor,
                "AES-GCM + one SQLite insert per record, one transaction",
                floor / median,
                ">= 5,000 records/s",
                rate >= 5000,
                note=f"{median:.2f} s per import; ratio = floor time / import time",
            )
        )
    ]


if __name__ == "__main__":
    run()
