"""Benchmarks of issue 14: a shred in a vault of 10,000 clients under custody, and backups.

* ``custody.shred_1_of_10k_clients``: the sweep that shreds one client (10 records) in a vault of
  10,000 clients whose custody secrets all live in the local custody file (~1 MB), so the custody
  step rewrites that whole file. Target < 2 s. Floor: one plain rewrite of a file of the same size
  (write, fsync, rename, fsync of the folder), measured in the same run.
* ``custody.backup_100k_records``: ``backups.create`` of a vault with 100,000 records (one blob
  each) into a file: MB/s of backup written. Floor: copying the same database and blob bytes into
  one file with plain reads and writes (no encryption, no snapshot), in the same run.

Fixtures use direct SQL for record rows and real custody for clients (the same rows ``client add``
writes, minus one audit event each), so building them takes seconds, not the hours of 10,000
``client add`` commands.

    python -m bench --only custody       # or: python bench/custody.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, emit, iqr
from vault import crypto
from vault.clock import UTC, FixedClock, to_epoch
from vault.facade import Vault
from vault.principal import Principal
from vault.store import rowmac

CLIENTS = 10_000
RECORDS_BIG = 100_000
BLOB_SIZE = 180
SYSTEM = Principal.system("sweep")


def _clients(vault: Vault, count: int, *, due: str | None = None) -> list[str]:
    """``count`` live clients under custody (one custody-file rewrite), plus ``due`` past grace."""
    now = to_epoch(vault.ctx.now())
    ids = [crypto.random_bytes(16).hex() for _ in range(count + (1 if due else 0))]
    custody = vault.ctx.custody.create_first_many(ids)
    rows, keys = [], []
    for i, cid in enumerate(ids):
        key = crypto.new_key()
        if due and i == count:
            rows.append((cid, due, now, now - 40 * 86400, 0))
        else:
            rows.append((cid, f"client-{i:05d}", now, now + 86400 * (365 + i % 700), 30))
        wrapped = vault.ctx.keyring.wrap_client_key(key, cid, 1, custody=custody[cid][0])
        keys.append((cid, wrapped, crypto.key_fingerprint(key), now))
    with vault.ctx.db.write() as conn:
        conn.executemany(
            "INSERT INTO clients (id, name, created_at, created_by, sla_end, grace_days,"
            " current_key_version) VALUES (?, ?, ?, 'bench', ?, ?, 1)",
            rows,
        )
        conn.executemany(
            "INSERT INTO client_keys (client_id, version, wrapped, fingerprint, created_at) VALUES"
            " (?, 1, ?, ?, ?)",
            keys,
        )
        for cid in ids:
            vault.ctx.custody.record_first(conn, cid, custody[cid][1], now)
        rowmac.stamp(conn, "clients", "mac IS NULL")  # synthesized rows: MACed as the backfill would
    return ids


def _records(vault: Vault, client_id: str, count: int) -> None:
    """``count`` records of one version and one blob each (random bytes where ciphertext goes)."""
    now = to_epoch(vault.ctx.now())
    blobs = vault.ctx.blobs
    with vault.ctx.db.write() as conn:
        for _ in range(count):
            rid = conn.execute(
                "INSERT INTO records (client_id, path_tag, meta_sealed, current_version, created_at,"
                " updated_at) VALUES (?, ?, ?, 1, ?, ?)",
                (client_id, os.urandom(32), os.urandom(60), now, now),
            ).lastrowid
            name = vault.ctx.keyring.blob_name(client_id, rid, 1)
            conn.execute(
                "INSERT INTO record_versions (record_id, version, key_version, wrapped_dek, blob_name, size,"
                " created_at, created_by) VALUES (?, 1, 1, ?, ?, ?, ?, 'bench')",
                (rid, os.urandom(60), name, BLOB_SIZE, now),
            )
            blobs.put(name, os.urandom(BLOB_SIZE), durable=False)
        for table in ("records", "record_versions"):  # synthesized rows: MACed as the backfill would
            rowmac.stamp(conn, table, "mac IS NULL")
    blobs.sync()


def _fresh(work: Path, tag: str, clock) -> Vault:
    base = work / tag
    vault, _ = Vault.init(base / "vault", key_file=base / "vault.key", clock=clock)
    return vault


def _rewrite_floor(path: Path, size: int) -> float:
    data = os.urandom(size)
    start = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)
    return time.perf_counter() - start


def _copy_floor(vault: Vault, out: Path) -> tuple[float, int]:
    """Plain copy of vault.db and every blob into one file (what any backup must at least read
    and write)."""
    names = sorted(vault.ctx.blobs.list())
    start = time.perf_counter()
    total = 0
    with open(out, "wb") as fh:
        with open(vault.ctx.home.db_path, "rb") as db:
            while chunk := db.read(1 << 20):
                fh.write(chunk)
                total += len(chunk)
        for name in names:
            data = vault.ctx.blobs.get(name)
            fh.write(data)
            total += len(data)
        fh.flush()
        os.fsync(fh.fileno())
    return time.perf_counter() - start, total


def run(runs: int = 3, quick: bool = False) -> list[Result]:
    work = Path(tempfile.mkdtemp(prefix="cvault-bench-custody-"))
    clock = FixedClock()
    clock.set(clock.now().replace(tzinfo=UTC))
    results = []
    try:
        # --- shred of one client among 10,000 under custody -------------------------------------
        clients = 1_000 if quick else CLIENTS
        times, floors = [], []
        for n in range(1 if quick else runs):
            vault = _fresh(work, f"shred-{n}", clock)
            ids = _clients(vault, clients, due="doomed")
            _records(vault, ids[-1], 10)
            custody_file = vault.ctx.custody.custodian(vault.ctx.custody.current_id()).path
            size = custody_file.stat().st_size
            start = time.perf_counter()
            result = vault.sla.sweep(SYSTEM)
            times.append(time.perf_counter() - start)
            assert result["shredded"] == ["doomed"], result
            vault.close()
            floors.append(_rewrite_floor(work / f"floor-{n}.bin", size))
        median = statistics.median(times)
        results.append(
            emit(
                Result(
                    f"custody.shred_1_of_{clients // 1000}k_clients",
                    "s",
                    median,
                    iqr(times),
                    statistics.median(floors),
                    f"one plain rewrite (write, fsync, rename) of a {size // 1024} KiB file",
                    median / statistics.median(floors),
                    "< 2 s",
                    median < 2.0,
                    note=f"custody file of {clients:,} clients: {size:,} bytes",
                )
            )
        )
        # --- backup of 100,000 records ----------------------------------------------------------
        records = 10_000 if quick else RECORDS_BIG
        vault = _fresh(work, "backup", clock)
        ids = _clients(vault, 100)
        per = records // len(ids)
        for cid in ids:
            _records(vault, cid, per)
        rates, floor_rates = [], []
        for n in range(1 if quick else max(1, runs - 1)):
            made = vault.backups.create(SYSTEM, out=work / f"b-{n}.cvbk")
            rates.append(made["mb_per_s"])
            seconds, total = _copy_floor(vault, work / f"floor-{n}.bin")
            floor_rates.append(total / 1e6 / seconds)
            (work / f"b-{n}.cvbk").unlink()
            (work / f"floor-{n}.bin").unlink()
        vault.close()
        median = statistics.median(rates)
        floor = statistics.median(floor_rates)
        results.append(
            emit(
                Result(
                    f"custody.backup_{records // 1000}k_records",
                    "MB/s",
                    median,
                    iqr(rates),
                    floor,
                    "plain copy of the same database and blob bytes into one file",
                    floor / median if median else None,
                    "reports MB/s",
                    median > 0,
                    note=f"{made['bytes']:,} bytes, {made['blobs']:,} blobs",
                )
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
