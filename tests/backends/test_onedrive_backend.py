"""OneDriveBackend over the fake Graph: sizes around the 4 MiB switch, fragment rules, layout,
and the chaos run (30% of requests throttled, unavailable or reset)."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from vault.backends.graph import FRAGMENT_UNIT, GraphClient
from vault.backends.onedrive import OneDriveBackend
from vault.backends.quickxor import quickxorhash

MiB = 1024 * 1024


@pytest.mark.parametrize("size", [0, 1, 4 * MiB - 1, 4 * MiB, 4 * MiB + 1, 25 * MiB])
def test_sizes_round_trip_with_fragment_rules(onedrive_backend, fake_graph, size):
    data = random.Random(size).randbytes(size)
    onedrive_backend.put("ab" + "0" * 10, data)
    assert fake_graph.files()["cvault/blobs/ab/ab0000000000"] == data
    assert onedrive_backend.get("ab" + "0" * 10) == data
    fragments = [r for r in fake_graph.log if r.port == "content" and r.method == "PUT"]
    if size <= 4 * MiB:
        assert fragments == []
        return
    assert sum(r.body_length for r in fragments) == size
    for r in fragments[:-1]:
        assert r.body_length % FRAGMENT_UNIT == 0
    ranges = [r.content_range for r in fragments]
    assert ranges[0].startswith("bytes 0-") and ranges[-1].endswith(f"-{size - 1}/{size}")
    assert not any(r.has_authorization for r in fake_graph.log if r.port == "content")


def test_layout_is_sharded_like_the_local_store(onedrive_backend, fake_graph):
    onedrive_backend.put("f00d", b"1")
    onedrive_backend.put("beef", b"2")
    assert set(fake_graph.files()) == {"cvault/blobs/f0/f00d", "cvault/blobs/be/beef"}


def test_list_skips_foreign_items_and_reports_hashes(onedrive_backend, fake_graph):
    onedrive_backend.put("aa11", b"blob")
    fake_graph.put_file("cvault/blobs/aa/Notes.TXT", b"not a blob")
    fake_graph.put_file("cvault/blobs/aa/bb22", b"wrong shard")
    fake_graph.put_file("cvault/blobs/stray", b"file at shard level")
    fake_graph.put_file("cvault/blobs/toolong/aa33", b"not a shard")
    assert list(onedrive_backend.list()) == ["aa11"]
    assert list(onedrive_backend.list_with_hashes()) == [("aa11", quickxorhash(b"blob"), 4)]
    assert onedrive_backend.remote_hash("aa11") == quickxorhash(b"blob")
    assert onedrive_backend.remote_hash("zz99") is None


def test_list_pages_through_large_folders(onedrive_backend, fake_graph):
    fake_graph.page_size = 7
    names = {f"ab{i:03d}" for i in range(30)} | {f"c{i}" for i in range(10)}
    for n in names:
        fake_graph.put_file(f"cvault/blobs/{n[:2]}/{n}", b"x")
    assert set(onedrive_backend.list()) == names
    assert sum(1 for r in fake_graph.log if r.path.endswith("/children")) >= 30 // 7 + 1 + 1


def test_delete_is_permanent(onedrive_backend, fake_graph):
    onedrive_backend.put("cc01", b"x")
    onedrive_backend.delete("cc01")
    assert fake_graph.files() == {} and fake_graph.recycle_bin == []
    assert [r.path.rsplit("/", 1)[-1] for r in fake_graph.log if r.method == "POST"] == ["permanentDelete"]


def test_location_and_repr(onedrive_backend, fake_graph, graph_tokens):
    assert onedrive_backend.location == "onedrive:" + fake_graph.drive_id[:12]
    assert graph_tokens.current not in repr(onedrive_backend) + repr(onedrive_backend.client)


def test_chaos_500_blobs_with_30_percent_faults(fake_graph, graph_tokens, recording_sleep, test_ca):
    """30% of requests answer 429 (Retry-After 1.5), 503 (Retry-After 0.5) or drop the
    connection before or after acting; 500 blobs pushed from 8 threads all arrive intact, once."""
    client = GraphClient(
        graph_tokens,
        base_url=fake_graph.base_url,
        verify=str(test_ca.ca_path),
        sleep=recording_sleep,
        rng=random.Random(5),
        max_attempts=12,
    )
    backend = OneDriveBackend(client, fake_graph.drive_id, "vault")
    rng = random.Random(42)
    blobs = {f"{i:04x}{rng.getrandbits(32):08x}": rng.randbytes(rng.randrange(0, 3000)) for i in range(497)}
    for i in range(3):  # a few upload sessions in the mix
        blobs[f"ff{i:02d}session"] = rng.randbytes(4 * MiB + 1 + i * FRAGMENT_UNIT)
    fake_graph.random_faults(
        0.30, kinds=("429", "503", "reset", "reset_after"), seed=7, retry_after={"429": "1.5", "503": "0.5"}
    )
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda kv: backend.put(*kv), blobs.items()))
        got = dict(zip(blobs, pool.map(backend.get, blobs), strict=True))
        listed = list(backend.list())
    elapsed = time.monotonic() - started
    fake_graph.clear_faults()

    assert got == blobs
    assert sorted(listed) == sorted(blobs)
    stored = fake_graph.files()
    assert len(stored) == len(blobs)  # no partial or duplicate file
    for name, data in blobs.items():
        assert stored[f"vault/{name[:2]}/{name}"] == data
    for name, h, size in backend.list_with_hashes():
        assert h == quickxorhash(blobs[name]) and size == len(blobs[name])
    # faults really happened, and every 429/503 was followed by a wait of exactly its Retry-After
    counts = fake_graph.fault_counts
    assert counts["429"] > 50 and counts["503"] > 50 and counts["reset"] > 50 and counts["reset_after"] > 50
    assert recording_sleep.calls.count(1.5) == counts["429"]
    assert recording_sleep.calls.count(0.5) == counts["503"]
    assert not any(r.has_authorization for r in fake_graph.log if r.port == "content")
    assert elapsed < 20
