"""Scaling curves: how ``secret get`` and the SLA sweep grow with the number of records and clients.

Vaults of 10, 1,000 and 100,000 records (in one client) and of 10, 1,000 and 100,000 clients are
built first, then every measurement runs interleaved round by round across all sizes and the floor,
so the machine's noise hits every point of a curve alike:

* ``cvault secret get`` (CLI, key-file unseal, the fixture's operator session) in each vault,
  against the Python import floor of issue 2;
* ``cvault sla sweep`` (CLI, nothing due) in each client vault, against the same floor;
* the sweep in process (``vault.sla.sweep(principal)``, what the service's timer runs), against
  the same call on the 10-client vault (so the ratio is the growth factor).

Records are written through the library's import path (``secrets.import_records``: validation,
per-record keys, blobs, one transaction), so the import rate at each size is a by-product. Client
rows are inserted with SQL in one transaction, each with a real client key wrapped by
``keyring.wrap_client_key`` (the rows ``clients.add`` writes, without one audit event each).

The plot (``docs/performance-scaling.png`` when run by ``python -m bench``) is drawn here.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    READ_FLOOR,
    READ_FLOOR_DESC,
    Result,
    clean_env,
    cvault_argv,
    emit,
    interleaved,
    iqr,
    time_command,
)

DAY = 86400


def _records_vault(base: Path, records: int) -> tuple[dict, float]:
    """A vault whose client acme holds ``records`` records; returns the CLI env and import seconds."""
    from tests.helpers import add_client, make_vault, operator

    vd = make_vault(base)
    v = vd.open()
    add_client(v, "acme")
    lines = (
        json.dumps(
            {
                "path": f"rec/{i}",
                "kind": "access",
                "fields": {"host": f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}", "password": f"pw-{i}"},
            }
        )
        for i in range(records)
    )
    start = time.perf_counter()
    v.secrets.import_records(operator(), "acme", lines)
    elapsed = time.perf_counter() - start
    v.close()
    env = vd.env()
    return {k: env[k] for k in env if k.startswith("CVAULT_")}, elapsed


def _add_clients(vd, count: int) -> float:
    """Insert ``count`` active clients (nothing due for a year or more) in one transaction."""
    from vault import crypto
    from vault.clock import to_epoch
    from vault.store import rowmac

    v = vd.open()
    start = time.perf_counter()
    now = to_epoch(v.ctx.now())
    rows, keys = [], []
    ids = [crypto.random_bytes(16).hex() for _ in range(count)]
    custody = v.ctx.custody.create_first_many(ids)  # one custody-file rewrite for all
    for i, cid in enumerate(ids):
        key = crypto.new_key()
        rows.append((cid, f"bulk-{i:06d}", now, now + DAY * (365 + i % 700), 30))
        wrapped = v.ctx.keyring.wrap_client_key(key, cid, 1, custody=custody[cid][0])
        keys.append((cid, wrapped, crypto.key_fingerprint(key), now))
    with v.ctx.db.write() as conn:
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
        for cid in ids:
            v.ctx.custody.record_first(conn, cid, custody[cid][1], now)
        rowmac.stamp(conn, "clients", "mac IS NULL")  # synthesized rows: MACed as the backfill would
    elapsed = time.perf_counter() - start
    v.close()
    return elapsed


def _clients_vault(base: Path, clients: int):
    """acme (10 records, the operator assigned) plus ``clients - 1`` bulk clients."""
    from bench.fixtures import ready_vault
    from tests.helpers import VaultDir

    ctx = ready_vault(base, records=10)
    vd = VaultDir(ctx.home, ctx.key_file)
    build = _add_clients(vd, clients - 1)
    return ctx.env, vd, build


def _plot(
    path: Path, sizes: list[int], curves: dict[str, tuple[list[float], list[float]]], floor: float
) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install -e '.[bench]'): no plot"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, ax_key in (
        ("secret get, N records in the client", "get_records"),
        ("secret get, N clients in the vault", "get_clients"),
        ("sla sweep (CLI), N clients", "sweep_cli"),
    ):
        med, spread = curves[ax_key]
        left.errorbar(
            sizes, [m * 1000 for m in med], yerr=[s * 500 for s in spread], marker="o", capsize=3, label=label
        )
    left.axhline(floor * 1000, color="grey", linestyle="--", label="floor (python imports)")
    left.axhline(floor * 1300, color="grey", linestyle=":", label="1.3 x floor (issue 2 target)")
    left.set_xscale("log")
    left.set_xlabel("N (log scale)")
    left.set_ylabel("CLI process wall time, median (ms)")
    left.set_title("CLI latency: whole process, interleaved with the floor")
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)
    med, spread = curves["sweep_lib"]
    right.errorbar(
        sizes,
        [m * 1000 for m in med],
        yerr=[s * 500 for s in spread],
        marker="o",
        capsize=3,
        color="tab:red",
        label="sla.sweep() in process, nothing due",
    )
    right.axhline(500, color="grey", linestyle=":", label="0.5 s (issue 5 target, 10,000 clients)")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("clients in the vault (log scale)")
    right.set_ylabel("median (ms, log scale)")
    right.set_title("Sweep with nothing due (library call)")
    right.legend(fontsize=8)
    fig.suptitle("cvault scaling (error bars: +- half the interquartile range)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot written to {path}"


def run(quick: bool = False, plot: str | None = None) -> list[Result]:
    from tests.helpers import operator

    sizes = [10, 1_000] if quick else [10, 1_000, 100_000]
    runs, lib_runs = (5, 5) if quick else (15, 15)
    results: list[Result] = []
    tmp = Path(tempfile.mkdtemp(prefix="cvault-bench-scaling-"))
    opened = []
    try:
        rec_env, import_s, cli_env, client_build, vaults = {}, {}, {}, {}, {}
        for n in sizes:
            (tmp / f"r{n}").mkdir()
            rec_env[n], import_s[n] = _records_vault(tmp / f"r{n}", n)
            (tmp / f"c{n}").mkdir()
            cli_env[n], vaults[n], client_build[n] = _clients_vault(tmp / f"c{n}", n)
        get = cvault_argv() + ["secret", "get", "acme", "rec/0", "--field", "password"]
        sweep = cvault_argv() + ["sla", "sweep"]
        commands = [lambda: time_command(READ_FLOOR, clean_env())]
        for n in sizes:
            commands.append(lambda n=n: time_command(get, clean_env(**rec_env[n])))
            commands.append(lambda n=n: time_command(get, clean_env(**cli_env[n])))
            commands.append(lambda n=n: time_command(sweep, clean_env(**cli_env[n])))
        samples = interleaved(runs, *commands)
        floor = statistics.median(samples[0])

        # the sweep in process: one open vault per size, called round-robin
        principal = operator()
        opened = [vaults[n].open() for n in sizes]

        def lib_sweep(v) -> float:
            start = time.perf_counter()
            out = v.sla.sweep(principal)
            elapsed = time.perf_counter() - start
            if out["due"] or out["skipped"]:
                raise RuntimeError(f"benchmark vault unexpectedly had work: {out}")
            return elapsed

        lib = interleaved(lib_runs, *[lambda v=v: lib_sweep(v) for v in opened])
        lib_floor = statistics.median(lib[0])

        curves: dict[str, tuple[list[float], list[float]]] = {
            k: ([], []) for k in ("get_records", "get_clients", "sweep_cli", "sweep_lib")
        }
        for i, n in enumerate(sizes):
            for key, label, s, extra in (
                (
                    "get_records",
                    f"secret get, {n:,} records in the client",
                    samples[1 + 3 * i],
                    f"vault built by secrets.import_records in {import_s[n]:.1f} s "
                    f"({n / import_s[n]:,.0f} records/s)",
                ),
                (
                    "get_clients",
                    f"secret get, {n:,} clients in the vault",
                    samples[2 + 3 * i],
                    f"{n - 1:,} bulk clients inserted in {client_build[n]:.1f} s",
                ),
                (
                    "sweep_cli",
                    f"cvault sla sweep (CLI, nothing due), {n:,} clients",
                    samples[3 + 3 * i],
                    "whole CLI process, operator session",
                ),
            ):
                m = statistics.median(s)
                curves[key][0].append(m)
                curves[key][1].append(iqr(s))
                results.append(
                    emit(
                        Result(
                            f"scaling: {label}",
                            "s",
                            m,
                            iqr(s),
                            floor,
                            READ_FLOOR_DESC,
                            m / floor,
                            "(curve)",
                            None,
                            note=extra,
                        )
                    )
                )
            m = statistics.median(lib[i])
            curves["sweep_lib"][0].append(m)
            curves["sweep_lib"][1].append(iqr(lib[i]))
            results.append(
                emit(
                    Result(
                        f"scaling: sla.sweep() in process, nothing due, {n:,} clients",
                        "s",
                        m,
                        iqr(lib[i]),
                        lib_floor,
                        f"the same call on the {sizes[0]}-client vault",
                        m / lib_floor,
                        "(curve)",
                        None,
                        note="authorize + lock + due query + audit event",
                    )
                )
            )
        if plot:
            print(_plot(Path(plot), sizes, curves, floor), file=sys.stderr)
    finally:
        for v in opened:
            v.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


if __name__ == "__main__":
    run(quick="--quick" in sys.argv, plot="/tmp/cvault-scaling.png")
