"""Benchmark: crypto-shredding a 10,000-record client, and a sweep with nothing due (docs/spec.md §7, §12).

    /tmp/venv/bin/python bench/shred.py [--repeat N]

Prints one JSON line per measurement: ``{"name", "median", "floor", "ratio", "target"}`` (seconds).
Targets: shred of a client with 10,000 records on the local store <= 2 s; sweep over 10,000
clients with nothing due <= 0.5 s. Floors, measured in the same run on the same disk:

* shred: a bare ``DELETE`` of the same 10,000 record rows and 10,000 version rows in an SQLite
  database of the same shape, plus unlinking 10,000 files of the same size (what any deletion has
  to do), without secure_delete, VACUUM, verification or signing;
* sweep: a no-op sweep (authorize + audit + lock + due query) of an empty vault.

Fixtures are built with direct SQL and raw file writes (the same rows and files a real import
writes, minus the per-record encryption the benchmark does not measure). Runs in well under 2 min.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vault import crypto
from vault.clock import UTC, FixedClock, to_epoch
from vault.facade import Vault
from vault.principal import Principal
from vault.store import rowmac

RECORDS = 10_000
CLIENTS = 10_000
BLOB_SIZE = 180
SYSTEM = Principal.system("sweep")


def _client_rows(vault: Vault, name: str, sla_end: int, grace: int) -> str:
    client_id = crypto.random_bytes(16).hex()
    key = crypto.new_key()
    now = to_epoch(vault.ctx.now())
    custody, made = vault.ctx.custody.create_first(client_id)
    with vault.ctx.db.write() as conn:
        conn.execute(
            "INSERT INTO clients (id, name, created_at, created_by, sla_end, grace_days,"
            " current_key_version) VALUES (?, ?, ?, 'bench', ?, ?, 1)",
            (client_id, name, now, sla_end, grace),
        )
        conn.execute(
            "INSERT INTO client_keys (client_id, version, wrapped, fingerprint, created_at)"
            " VALUES (?, 1, ?, ?, ?)",
            (
                client_id,
                vault.ctx.keyring.wrap_client_key(key, client_id, 1, custody=custody),
                crypto.key_fingerprint(key),
                now,
            ),
        )
        vault.ctx.custody.record_first(conn, client_id, made, now)
        rowmac.stamp(conn, "clients", "id = ?", (client_id,))  # synthesized: MACed as the backfill would
    return client_id


def build_big_client(vault: Vault, records: int) -> None:
    """One client past its grace period with ``records`` records, one version and one blob each."""
    now = to_epoch(vault.ctx.now())
    client_id = _client_rows(vault, "big", now - 40 * 86400, 30)
    blobs = vault.ctx.blobs
    with vault.ctx.db.write() as conn:
        for _i in range(1, records + 1):
            rid = conn.execute(
                "INSERT INTO records (client_id, path_tag, meta_sealed, current_version,"
                " created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?)",
                (client_id, os.urandom(32), os.urandom(60), now, now),
            ).lastrowid
            name = vault.ctx.keyring.blob_name(client_id, rid, 1)
            conn.execute(
                "INSERT INTO record_versions (record_id, version, key_version, wrapped_dek,"
                " blob_name, size, created_at, created_by) VALUES (?, 1, 1, ?, ?, ?, ?, 'bench')",
                (rid, os.urandom(60), name, BLOB_SIZE, now),
            )
            conn.execute("INSERT INTO outbox (op, blob_name, queued_at) VALUES ('put', ?, ?)", (name, now))
            blobs.put(name, os.urandom(BLOB_SIZE), durable=False)
        for table in ("records", "record_versions"):  # synthesized rows: MACed as the backfill would
            rowmac.stamp(conn, table, "mac IS NULL")
        blobs.sync()


def build_many_clients(vault: Vault, count: int) -> None:
    """``count`` active clients (nothing due) in one transaction."""
    now = to_epoch(vault.ctx.now())
    key = crypto.new_key()
    rows, keys = [], []
    for i in range(count):
        cid = crypto.random_bytes(16).hex()
        rows.append((cid, f"client-{i:05d}", now, now + 86400 * (1 + i % 700), 30))
        keys.append((cid, os.urandom(60), crypto.key_fingerprint(key), now))
    with vault.ctx.db.write() as conn:
        conn.executemany(
            "INSERT INTO clients (id, name, created_at, created_by, sla_end, grace_days,"
            " current_key_version) VALUES (?, ?, ?, 'bench', ?, ?, 1)",
            rows,
        )
        conn.executemany(
            "INSERT INTO client_keys (client_id, version, wrapped, fingerprint, created_at)"
            " VALUES (?, 1, ?, ?, ?)",
            keys,
        )
        rowmac.stamp(conn, "clients", "mac IS NULL")  # synthesized rows: MACed as the backfill would


def floor_delete(base: Path, records: int) -> float:
    """A bare DELETE of the same rows and unlink of the same number of files."""
    db = sqlite3.connect(base / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    schema = (Path(__file__).resolve().parent.parent / "vault/store/migrations/0001_core.sql").read_text()
    db.executescript(schema)
    db.execute("BEGIN")
    for i in range(1, records + 1):
        db.execute(
            "INSERT INTO records (id, client_id, path_tag, meta_sealed, current_version, created_at,"
            " updated_at) VALUES (?, 'c', ?, ?, 1, 0, 0)",
            (i, os.urandom(32), os.urandom(60)),
        )
        db.execute(
            "INSERT INTO record_versions (record_id, version, key_version, wrapped_dek, blob_name,"
            " size, created_at, created_by) VALUES (?, 1, 1, ?, ?, 1, 0, 'x')",
            (i, os.urandom(60), f"b{i}"),
        )
    db.execute("COMMIT")
    folder = base / "floor-blobs"
    folder.mkdir()
    for i in range(records):
        (folder / f"f{i}").write_bytes(os.urandom(BLOB_SIZE))
    start = time.perf_counter()
    db.execute("BEGIN")
    db.execute(
        "DELETE FROM record_versions WHERE record_id IN (SELECT id FROM records WHERE client_id = 'c')"
    )
    db.execute("DELETE FROM records WHERE client_id = 'c'")
    db.execute("COMMIT")
    for i in range(records):
        os.unlink(folder / f"f{i}")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def line(name: str, samples: list[float], floor: float, target: float) -> None:
    median = statistics.median(samples)
    print(
        json.dumps(
            {
                "name": name,
                "median": round(median, 4),
                "floor": round(floor, 4),
                "ratio": round(median / floor, 2) if floor else None,
                "target": target,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cvault-bench-shred-"))
    try:
        clock = FixedClock()
        clock.set(clock.now().replace(tzinfo=UTC))
        template = work / "template"
        v, _ = Vault.init(template / "vault", key_file=template / "vault.key", clock=clock)
        v.close()

        def fresh(tag: str) -> Vault:
            home = work / tag
            shutil.copytree(template, home)
            vault = Vault.open(home / "vault", clock=clock)
            vault.unseal_key_file(home / "vault.key")
            return vault

        # --- shred of one 10,000-record client ---------------------------------------------
        shred_times, floors = [], []
        for n in range(args.repeat):
            vault = fresh(f"shred-{n}")
            build_big_client(vault, RECORDS)
            start = time.perf_counter()
            result = vault.sla.sweep(SYSTEM)
            shred_times.append(time.perf_counter() - start)
            assert result["shredded"] == ["big"], result
            vault.close()
            shutil.rmtree(work / f"shred-{n}")
            floor_dir = work / f"floor-{n}"
            floor_dir.mkdir()
            floors.append(floor_delete(floor_dir, RECORDS))
            shutil.rmtree(floor_dir)
        line("sla.shred_10k_records", shred_times, statistics.median(floors), 2.0)

        # --- sweep over 10,000 clients with nothing due ---------------------------------------
        empty = fresh("empty")
        many = fresh("many")
        build_many_clients(many, CLIENTS)
        empty_times, many_times = [], []
        for _ in range(max(args.repeat, 5)):
            start = time.perf_counter()
            assert not empty.sla.sweep(SYSTEM)["due"]
            empty_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            assert not many.sla.sweep(SYSTEM)["due"]
            many_times.append(time.perf_counter() - start)
        line("sla.sweep_10k_clients_nothing_due", many_times, statistics.median(empty_times), 0.5)
        empty.close()
        many.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
