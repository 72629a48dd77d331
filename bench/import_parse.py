"""Parse (no vault write) of a 10,000-entry KeePass database and a 10,000-entry Bitwarden export.

Issue 18 item 1, parsing half: ``vault.importers`` readers only. Each result is records/s of a
whole pass (open, decrypt where the format is encrypted, map, validate, allocate paths) against a
floor measured in the same run on the same file: what any reader of the format cannot avoid.

- KeePass: the floor is ``PyKeePass(file)`` alone (key derivation with pykeepass's default Argon2,
  64 MiB x 14 passes, decryption, decompression, XML parse); the ratio shows what mapping 10,000
  entries adds to it.
- Bitwarden: the floor is ``json.load`` of the file (the C parser of the standard library, which
  holds the whole file in memory; the reader streams it, twice).

Targets: at least 5,000 records/s for Bitwarden (the issue 2 floor of ``secret import`` itself, so
parsing never dominates an import); for KeePass at least 1,000 records/s including the Argon2
derivation, which alone takes seconds by design.

    python -m bench.import_parse [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Result, emit, iqr

RECORDS = 10_000
PASSWORD = "bench-database-password"


def _keepass_file(folder: Path) -> Path:
    from tests.importers.builders import KpEntry, write_kdbx

    entries = [
        KpEntry(
            f"device-{n}",
            username="admin",
            password=f"pw-{n}-Sekr1t!",
            url=f"https://10.{n // 256 % 256}.{n % 256}.1",
            notes="rack 2" if n % 3 else None,
            group=("Clients", f"client-{n % 100}"),
            custom={"enable secret": (f"en-{n}", True)} if n % 5 == 0 else {},
        )
        for n in range(RECORDS)
    ]
    return write_kdbx(folder / "bench.kdbx", entries, password=PASSWORD, fast_kdf=False)


def _bitwarden_file(folder: Path) -> Path:
    from tests.importers.builders import bitwarden_login, write_json

    folders = [{"id": f"f{c}", "name": f"client-{c}"} for c in range(100)]
    items = [
        bitwarden_login(
            n,
            f"device-{n}",
            "admin",
            f"pw-{n}-Sekr1t!",
            folderId=f"f{n % 100}",
            uris=[{"match": None, "uri": f"https://10.{n // 256 % 256}.{n % 256}.1"}],
            fields=[{"name": "enable secret", "value": f"en-{n}", "type": 1}] if n % 5 == 0 else [],
        )
        for n in range(RECORDS)
    ]
    return write_json(folder / "bench.json", {"encrypted": False, "folders": folders, "items": items})


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _result(name: str, samples: list[float], floors: list[float], floor_desc: str, target: float) -> Result:
    median, floor = statistics.median(samples), statistics.median(floors)
    rate = RECORDS / median
    return emit(
        Result(
            name,
            "records/s",
            rate,
            iqr([RECORDS / s for s in samples]),
            RECORDS / floor,
            floor_desc,
            floor / median,
            f">= {target:,.0f} records/s",
            rate >= target,
            note=f"{median:.2f} s per pass; ratio = floor time / parse time",
        )
    )


def run(runs: int = 3) -> list[Result]:
    from pykeepass import PyKeePass

    from vault.importers import open_source

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        kdbx, bw = _keepass_file(folder), _bitwarden_file(folder)

        def parse(fmt: str, path: Path, **options: object) -> None:
            source = open_source(fmt, path, **options)  # type: ignore[arg-type]
            count = sum(1 for _ in source.records())
            assert count == RECORDS and source.report.mapped == RECORDS

        samples, floors = [], []
        for _ in range(runs):
            floors.append(_time(lambda: PyKeePass(str(kdbx), password=PASSWORD)))
            samples.append(_time(lambda: parse("keepass", kdbx, password=PASSWORD)))
        results.append(
            _result(
                "import parse, KeePass KDBX 4, 10,000 entries",
                samples,
                floors,
                "PyKeePass open of the same file (default Argon2, decrypt, XML parse)",
                1_000,
            )
        )
        samples, floors = [], []
        for _ in range(runs):
            floors.append(_time(lambda: json.loads(bw.read_bytes())))
            samples.append(_time(lambda: parse("bitwarden", bw)))
        results.append(
            _result(
                "import parse, Bitwarden JSON, 10,000 items",
                samples,
                floors,
                "json.loads of the same file",
                5_000,
            )
        )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    run(parser.parse_args().runs)
