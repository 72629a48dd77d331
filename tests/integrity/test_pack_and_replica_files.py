"""A file writer on the blob files, locally or on the replica (OneDrive, the fake Graph over
HTTPS): bytes appended to a pack, a gap opened inside one, a poisoned replica copy of a lost blob.
Each is replayed on the real files and checked through the real CLI (subprocess): a pack whose
framing does not account for every byte is not authentic (``sync pull`` refuses it, exit 9, like
a tampered blob), and the read path's fallback never stores an unverified replica copy locally
(docs/security.md, "Packs and replica copies")."""

from __future__ import annotations

import json

import pytest

from tests.helpers import add_client, operator
from vault import blob as blobfmt

LINES = [
    json.dumps({"path": f"bulk/{i}", "kind": "access", "fields": {"password": f"pw-{i}"}}) for i in range(4)
]


@pytest.fixture
def replicated(vdir, remote_config, fake_graph, test_ca):
    """acme holds bulk/0..3 in one pack and solo as a blob of its own, all pushed."""
    v = vdir.open()
    try:
        v.sync.configure(operator(), {**remote_config, "max_attempts": 2})
        add_client(v, "acme")
        v.secrets.import_records(operator(), "acme", LINES)
        v.secrets.put(operator(), "acme", "solo", "access", {"password": "solo-pw"})
        [(pack,)] = v.ctx.db.all(
            "SELECT DISTINCT blob_name FROM record_versions WHERE pack_offset IS NOT NULL"
        )
        [(solo,)] = v.ctx.db.all("SELECT blob_name FROM record_versions WHERE pack_offset IS NULL")
        assert v.sync.push(operator())["failed"] == 0
    finally:
        v.close()
    env = vdir.env(REQUESTS_CA_BUNDLE=str(test_ca.ca_path))
    return vdir, env, pack, solo


def _local(vdir, name: str):
    return vdir.home / "blobs" / name[:2] / name


def _remote_path(fake_graph, name: str) -> str:
    return next(p for p in fake_graph.files() if p.endswith(name))


def _places(vdir) -> list[tuple[int, int]]:
    import sqlite3

    conn = sqlite3.connect(vdir.home / "vault.db")
    try:
        return conn.execute(
            "SELECT pack_offset, size FROM record_versions WHERE pack_offset IS NOT NULL ORDER BY pack_offset"
        ).fetchall()
    finally:
        conn.close()


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "pw-" not in proc.stderr


def test_a_replica_pack_with_trailing_bytes_is_never_pulled(replicated, fake_graph):
    """The replica's pack with bytes after its last version (the versions themselves intact, so
    each one would still open from its slice): pull refuses it (exit 9, one line naming it) and
    writes nothing locally; the untouched copy is pulled."""
    vdir, env, pack, _ = replicated
    path = _remote_path(fake_graph, pack)
    good = fake_graph.files()[path]
    fake_graph.put_file(path, good + b"planted by a file writer")
    _local(vdir, pack).unlink()
    proc = vdir.cli("sync", "pull", env=env)
    assert proc.returncode == 9, (proc.stdout, proc.stderr)
    assert f"{pack}: remote copy failed verification" in proc.stdout
    _no_traceback(proc)
    assert not _local(vdir, pack).exists()
    fake_graph.put_file(path, good)
    proc = vdir.cli("sync", "pull", env=env)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert _local(vdir, pack).read_bytes() == good


@pytest.mark.parametrize("where", ["gap", "header"])
def test_a_replica_pack_with_an_unframed_gap_or_an_edited_header_is_never_pulled(
    replicated, fake_graph, test_ca, where
):
    """bulk/1 is purged (its row goes; its bytes stay in the pack, framed by its own header);
    the replica's copy has those bytes replaced by as many others (every kept version still at
    its place and intact), or the pack's own header edited: neither is authentic, pull refuses
    it (exit 9) and stores nothing."""
    vdir, env, pack, _ = replicated
    v = vdir.open()
    try:
        places = [(r[0], r[1]) for r in _places(vdir)]
        assert v.secrets.rm(operator(), "acme", "bulk/1", purge=True)["versions_destroyed"] == 1
        assert v.sync.push(operator())["failed"] == 0
    finally:
        v.close()
    path = _remote_path(fake_graph, pack)
    good = fake_graph.files()[path]
    (start, size) = places[1]
    if where == "gap":
        forged = good[:start] + bytes(size) + good[start + size :]
    else:
        forged = good[:5] + bytes(16) + good[21:]  # the vault id of the pack header
    assert len(forged) == len(good)
    fake_graph.put_file(path, forged)
    _local(vdir, pack).unlink()
    proc = vdir.cli("sync", "pull", env=env)
    assert proc.returncode == 9 and f"{pack}: remote copy failed verification" in proc.stdout, proc.stdout
    _no_traceback(proc)
    assert not _local(vdir, pack).exists()
    fake_graph.put_file(path, good)  # the purged version's own bytes: the pack is framed
    proc = vdir.cli("sync", "pull", env=env)
    assert proc.returncode == 0 and _local(vdir, pack).read_bytes() == good, (proc.stdout, proc.stderr)


def test_a_local_pack_with_trailing_bytes_is_replaced_by_the_replicas(replicated):
    """The local pack with bytes appended: no longer taken as a good local copy, so pull puts
    the replica's authentic one back."""
    vdir, env, pack, _ = replicated
    good = _local(vdir, pack).read_bytes()
    _local(vdir, pack).write_bytes(good + bytes(blobfmt.MIN_BLOB))
    proc = vdir.cli("sync", "pull", env=env)
    assert proc.returncode == 0 and "restored 1" in proc.stdout, (proc.stdout, proc.stderr)
    assert _local(vdir, pack).read_bytes() == good


def test_a_poisoned_replica_copy_of_a_lost_blob_is_never_stored(replicated, fake_graph):
    """A blob lost locally is fetched by the read path: a forged replica copy fails the read
    (exit 6) and is not written to the local blob store (before, it was stored first)."""
    vdir, env, _, solo = replicated
    path = _remote_path(fake_graph, solo)
    good = bytearray(fake_graph.files()[path])
    forged = bytes(good[:-1]) + bytes([good[-1] ^ 1])
    fake_graph.put_file(path, forged)
    _local(vdir, solo).unlink()
    proc = vdir.cli("secret", "get", "acme", "solo", "--field", "password", env=env)
    assert proc.returncode == 6 and "integrity failure" in proc.stderr, (proc.stdout, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and "solo-pw" not in proc.stdout
    _no_traceback(proc)
    assert not _local(vdir, solo).exists()
    fake_graph.put_file(path, bytes(good))
    proc = vdir.cli("secret", "get", "acme", "solo", "--field", "password", env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "solo-pw"
    assert _local(vdir, solo).read_bytes() == bytes(good)


def test_a_poisoned_replica_pack_is_read_from_but_never_stored(replicated, fake_graph):
    """The lost pack's replica copy with trailing bytes: a version in it still opens under its
    own AEAD (exit 0), but the copy is not authentic, so it is not stored locally."""
    vdir, env, pack, _ = replicated
    path = _remote_path(fake_graph, pack)
    good = fake_graph.files()[path]
    fake_graph.put_file(path, good + b"x" * 100)
    _local(vdir, pack).unlink()
    proc = vdir.cli("secret", "get", "acme", "bulk/1", "--field", "password", env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "pw-1", (proc.stdout, proc.stderr)
    assert not _local(vdir, pack).exists()


@pytest.mark.parametrize("where", ["appended", "header"])
def test_doctor_reports_a_local_pack_with_bytes_its_framing_does_not_account_for(vdir, where):
    """Bytes appended to the local pack (every version still opens from its place) or its own
    header edited: ``cvault doctor`` names the pack, exit 6; the untouched pack is clean."""
    v = vdir.open()
    try:
        add_client(v, "acme")
        v.secrets.import_records(operator(), "acme", LINES)
        [(pack,)] = v.ctx.db.all(
            "SELECT DISTINCT blob_name FROM record_versions WHERE pack_offset IS NOT NULL"
        )
    finally:
        v.close()
    clean = vdir.cli("doctor")
    assert clean.returncode == 0, clean.stdout
    good = _local(vdir, pack).read_bytes()
    forged = good + b"planted" if where == "appended" else good[:4] + b"\x02" + good[5:]
    _local(vdir, pack).write_bytes(forged)
    proc = vdir.cli("doctor")
    assert proc.returncode == 6, (proc.stdout, proc.stderr)
    assert f"pack {pack} holds bytes its framing does not account for" in proc.stdout
    assert "failed verification" not in proc.stdout  # every version still opens
    _no_traceback(proc)
