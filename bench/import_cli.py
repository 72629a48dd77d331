"""``cvault import`` of a 10,000-entry KeePass database and a 10,000-item Bitwarden export, written
into a real vault (issue 18, Performance): records/s of the whole import (read, map, validate,
plan, encrypt, one transaction per client), against the *same records* through ``secret import``
in the same run, the floor: the bulk write path an import cannot avoid.

The files are those of ``bench.import_parse`` (100 groups/folders, so 100 clients). The floor
takes each client's records as the import mapped them (``vault.records.importing.record_fields``)
and sends them as JSON lines through ``secret import`` into a fresh vault with the same clients,
one call per client, timed alone (the lines are built before the clock starts). The ratio
(floor time / import time) says what the import adds on top: parsing (for KeePass, the Argon2
derivation pykeepass runs by default: seconds by design), client mapping, path allocation and the
idempotence plan (one lookup per record). Target: at least half the ``secret import`` rate for
Bitwarden, a third for KeePass (its key derivation alone takes seconds).

    python -m bench.import_cli [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Result, emit, iqr
from bench.import_parse import PASSWORD, RECORDS, _bitwarden_file, _keepass_file

CLIENTS = 100


def _vault(folder: Path):
    from tests.helpers import add_client, make_vault

    v = make_vault(folder).open()
    for c in range(CLIENTS):
        add_client(v, f"c{c}")
    return v


def _lines_per_client(
    fmt: str, path: Path, mapping: dict[str, str], **options: object
) -> dict[str, list[str]]:
    """The records the import writes, as ``secret import`` lines per client (same paths, kinds and
    fields)."""
    from vault.importers import open_source
    from vault.importers.paths import PathAllocator
    from vault.records.importing import client_for, record_fields

    records, _ = open_source(fmt, path, **options).read_all()  # type: ignore[arg-type]
    out: dict[str, list[str]] = {}
    allocators: dict[str, PathAllocator] = {}
    for record in records:
        client = client_for(record.client_hint, mapping, None)
        assert client is not None
        where, _ = allocators.setdefault(client, PathAllocator()).allocate(record.path)
        fields = record_fields(record)
        out.setdefault(client, []).append(json.dumps({"path": where, "kind": record.kind, "fields": fields}))
    return out


def _measure(name: str, fmt: str, path: Path, mapping: dict[str, str], runs: int, target: float, **options):
    from tests.helpers import operator

    samples, floors, cpu, cpu_floors = [], [], [], []
    lines = _lines_per_client(fmt, path, mapping, **options)
    assert sum(len(v) for v in lines.values()) == RECORDS
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            v = _vault(Path(tmp) / "floor")
            start, start_cpu = time.perf_counter(), time.process_time()
            for client, client_lines in lines.items():
                v.secrets.import_records(operator(), client, client_lines)
            floors.append(time.perf_counter() - start)
            cpu_floors.append(time.process_time() - start_cpu)
            v.close()
            v = _vault(Path(tmp) / "import")
            start, start_cpu = time.perf_counter(), time.process_time()
            result = v.secrets.import_file(operator(), fmt, path, clients=mapping, **options)
            samples.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            assert sum(len(c["new"]) for c in result["clients"]) == RECORDS, i
            v.close()
    median, floor = statistics.median(samples), statistics.median(floors)
    rate, floor_rate = RECORDS / median, RECORDS / floor
    return emit(
        Result(
            name,
            "records/s",
            rate,
            iqr([RECORDS / s for s in samples]),
            floor_rate,
            "secret import of the same records, one call per client, same run",
            floor / median,
            f">= {target:.2f} x the secret import rate",
            floor / median >= target,
            note=f"{median:.2f} s per import, {floor:.2f} s through secret import (wall clock);"
            f" CPU time (process_time, all threads) {statistics.median(cpu):.2f} s vs"
            f" {statistics.median(cpu_floors):.2f} s: CPU ratio"
            f" {statistics.median(cpu_floors) / statistics.median(cpu):.2f};"
            " ratio = floor time / import time",
        )
    )


def run(runs: int = 1) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        kdbx, bw = _keepass_file(folder), _bitwarden_file(folder)
        return [
            _measure(
                "cvault import, KeePass KDBX 4, 10,000 entries into 100 clients",
                "keepass",
                kdbx,
                {f"Clients/client-{c}": f"c{c}" for c in range(CLIENTS)},
                runs,
                1 / 3,
                password=PASSWORD,
            ),
            _measure(
                "cvault import, Bitwarden JSON, 10,000 items into 100 clients",
                "bitwarden",
                bw,
                {f"client-{c}": f"c{c}" for c in range(CLIENTS)},
                runs,
                0.5,
            ),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    run(parser.parse_args().runs)


if __name__ == "__main__":
    main()
