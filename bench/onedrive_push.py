"""``sync push`` of 1,000 small blobs to the fake Graph with 50 ms added to every request.

Target (issue 6): at most 1.5 x (1,000 x 50 ms / 8) with 8 workers, one request per blob up to
4 MiB. The floor is that ideal: every request's latency perfectly overlapped 8 ways.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Result, emit, iqr

BLOBS, LATENCY, WORKERS = 1000, 0.050, 8


def run(runs: int = 3) -> list[Result]:
    from tests.fakes.fixtures import RegistryTokenProvider
    from tests.fakes.graph_server import FakeGraph, TokenRegistry
    from tests.fakes.https import make_test_ca
    from tests.helpers import add_client, make_vault, operator
    from vault.backends.graph import GraphClient
    from vault.backends.onedrive import OneDriveBackend

    samples, requests_per_blob = [], []
    with tempfile.TemporaryDirectory() as tmp:
        ca = make_test_ca(Path(tmp) / "ca")
        tokens = TokenRegistry()
        for i in range(runs):
            fake = FakeGraph(ca.server_context(), tokens).start()
            try:
                client = GraphClient(
                    RegistryTokenProvider(tokens),
                    base_url=fake.base_url,
                    verify=str(ca.ca_path),
                    pool_size=WORKERS * 2,
                )
                remote = OneDriveBackend(client, fake.drive_id, "cvault")
                vd = make_vault(Path(tmp) / f"v{i}")
                v = vd.open(service_options={"sync": {"remote": remote}})
                add_client(v, "acme", days=30)
                # one blob file each: 1,000 separate writes (a bulk import packs its records
                # into one file, docs/format.md section 9, which would leave two uploads)
                for n in range(BLOBS):
                    v.secrets.put(operator(), "acme", f"r/{n}", "note", {"text": f"t{n}"})
                client.upload(fake.drive_id, "cvault/warmup/x", b"x")  # connection + folders warm
                fake.latency = LATENCY
                before = len(fake.log)
                start = time.perf_counter()
                result = v.sync.push(operator(), workers=WORKERS)
                samples.append(time.perf_counter() - start)
                # the 1,000 blobs and the audit checkpoint copies their writes signed
                assert BLOBS <= result["uploaded"] <= BLOBS + 20 and result["failed"] == 0, result
                requests_per_blob.append((len(fake.log) - before) / BLOBS)
                client.close()
                v.close()
            finally:
                fake.stop()
    floor = BLOBS * LATENCY / WORKERS
    median = statistics.median(samples)
    return [
        emit(
            Result(
                "sync push 1,000 blobs, 50 ms latency, 8 workers",
                "s",
                median,
                iqr(samples),
                floor,
                "1,000 x 50 ms / 8 (ideal overlap)",
                median / floor,
                "<= 1.5 x floor",
                median / floor <= 1.5,
                note=f"{statistics.median(requests_per_blob):.2f} requests per blob",
            )
        )
    ]


if __name__ == "__main__":
    run()
