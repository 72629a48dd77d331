"""Service mode (vault/server): scheduled backups, a fresh backup after every shred or purge
(P2: every surviving client stays restorable from the newest backup), and the bounded key cache
that a shred empties for its client."""

from __future__ import annotations

from tests.helpers import add_client, operator
from vault.principal import Principal
from vault.server.app import ServiceSettings, VaultPool
from vault.server.jobs import BackgroundJobs


def _pool(vdir, **settings):
    pool = VaultPool(vdir.home, cache_seconds=settings.pop("cache_seconds", 900.0))
    pool.unseal("key_file", str(vdir.key_file))
    return pool, BackgroundJobs(pool, ServiceSettings(background=False, **settings))


def test_a_backup_on_schedule_and_after_every_shred_or_purge(vdir, tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    pool, jobs = _pool(vdir, backup_dir=str(folder), backup_keep=10)
    try:
        with pool.lease() as v:
            add_client(v, "acme", days=10, grace_days=0)
            add_client(v, "globex", days=3650)
            v.secrets.put(operator(), "acme", "a", "note", {"text": "a1"})
            v.secrets.put(operator(), "acme", "b", "note", {"text": "b1"})
        assert jobs.run_once("backup") and len(list(folder.iterdir())) == 1  # the first one
        assert jobs.run_once("backup") and len(list(folder.iterdir())) == 1  # not due again
        with pool.lease() as v:
            v.secrets.rm(operator(), "acme", "a", purge=True)
        assert jobs.run_once("backup") and len(list(folder.iterdir())) == 2  # after the purge
        with pool.lease() as v:
            v.sla.expire(operator(), "acme", reason="ended")
            v.sla.sweep(Principal.system("sweep"))
        assert jobs.run_once("backup") and len(list(folder.iterdir())) == 3  # after the shred
        assert jobs.state["backup"]["failures"] == 0
    finally:
        pool.close()


def test_the_key_cache_is_shared_bounded_and_emptied_by_a_shred(vdir):
    pool, _ = _pool(vdir)
    try:
        with pool.lease() as v:
            add_client(v, "acme", days=10, grace_days=0)
            v.secrets.put(operator(), "acme", "a", "note", {"text": "a1"})
            acme = v.ctx.client("acme").id
            assert v.secrets.get(operator(), "acme", "a").fields["text"] == "a1"
        assert len(pool.custody_cache) >= 1 and len(pool.key_cache) >= 1
        with pool.lease() as v:
            v.sla.expire(operator(), "acme", reason="ended")
            v.sla.sweep(Principal.system("sweep"))
        assert pool.custody_cache.forget_client(acme) == 0 and pool.key_cache.forget_client(acme) == 0
    finally:
        pool.close()


def test_a_zero_cache_keeps_nothing(vdir):
    pool, _ = _pool(vdir, cache_seconds=0)
    try:
        with pool.lease() as v:
            add_client(v, "acme")
            v.secrets.put(operator(), "acme", "a", "note", {"text": "a1"})
            assert v.secrets.get(operator(), "acme", "a").fields["text"] == "a1"
        assert len(pool.custody_cache) == 0 and len(pool.key_cache) == 0
    finally:
        pool.close()


def test_remote_backups_use_upload_sessions_and_keep_the_newest(vdir, fake_graph, onedrive_backend):
    """``--remote``: the backup goes to ``<root folder>-backups/`` on the replica, through an upload
    session above 4 MiB, and only the newest ``keep`` stay (older ones permanently deleted)."""
    from vault.facade import Vault

    v = Vault.open(vdir.home, service_options={"sync": {"remote": onedrive_backend}})
    v.unseal_key_file(vdir.key_file)
    try:
        add_client(v, "acme")
        big = "x" * 900_000  # five records of ~0.9 MB: a backup above 4 MiB
        for i in range(5):
            v.secrets.put(operator(), "acme", f"big/{i}", "note", {"text": big + str(i)})
        made = [v.backups.create(operator(), remote=True, keep=2) for _ in range(3)]
    finally:
        v.close()
    assert all(m["bytes"] > 4 * 1024 * 1024 for m in made)
    assert made[0]["file"].startswith("onedrive:cvault/blobs-backups/")
    stored = sorted(p for p in fake_graph.files() if "blobs-backups/" in p)
    assert len(stored) == 2 and made[0]["file"].split("/")[-1] not in " ".join(stored)
    assert any(r.path.endswith(":/createUploadSession") for r in fake_graph.log)
    assert made[2]["pruned"] == [made[0]["file"].split("/")[-1]]


def test_a_shred_elsewhere_stops_the_cached_audit_detail_key_at_once(vdir):
    """The service keeps each client's unwrapped audit-detail key in the shared key cache
    (vault/audit/details.py). A shred run by another process cannot empty that cache, so the
    fresh client row of every request decides: once the shred has started, no detail is sealed
    with the cached key and the read is refused."""
    import sqlite3

    import pytest

    from vault.audit.details import CACHE_TAG
    from vault.errors import ClientUnavailable

    pool, _ = _pool(vdir)
    try:
        with pool.lease() as v:
            add_client(v, "acme", days=10, grace_days=0)
            v.secrets.put(operator(), "acme", "a", "note", {"text": "a1"})
            acme = v.ctx.client("acme").id
            assert v.secrets.get(operator(), "acme", "a").fields["text"] == "a1"
        assert pool.key_cache.get((acme, CACHE_TAG)) is not None  # the read sealed its path with it
        other = vdir.open()  # another process's vault: the service's cache is not its to empty
        try:
            other.sla.expire(operator(), "acme", reason="ended")
            other.sla.sweep(Principal.system("sweep"))
        finally:
            other.close()
        assert pool.key_cache.get((acme, CACHE_TAG)) is not None
        with pool.lease() as v:
            before = v.ctx.audit.head()[0]
            with pytest.raises(ClientUnavailable):
                v.secrets.get(operator(), "acme", "a")
        with sqlite3.connect(vdir.home / "vault.db") as db:
            rows = db.execute(
                "SELECT outcome, detail_sealed FROM audit_events WHERE seq > ? AND action = 'secret.get'",
                (before,),
            ).fetchall()
        assert rows == [("deny", None)]
    finally:
        pool.close()
