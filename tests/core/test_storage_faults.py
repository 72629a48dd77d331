"""Full and read-only storage (issue 13, items 3-4), and a damaged database file (item 6).

Disk full: injected at the storage layer (SQLite's own "database or disk is full" through
``PRAGMA max_page_count``, ENOSPC from the blob store's writes) and for real, on a small tmpfs
filled to the last byte (skipped in one line where the kernel refuses the mount). Read-only: the
vault opened from a read-only bind mount (and, injected, as read-only storage without a mount).
Must hold: exit 9 with one line saying "no space left" / "read-only", never "internal error" or
exit 6, no acknowledged write lost, and the vault opens cleanly once space is back.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest

from tests.helpers import add_client, copy_vault, make_vault, operator
from vault.errors import EXIT_BACKEND, StorageFull, StorageReadOnly


def _values(v, client="acme") -> dict[str, str]:
    p = operator()
    return {r["path"]: v.secrets.get(p, client, r["path"]).fields["text"] for r in v.secrets.list(p, client)}


# --- disk full, injected ------------------------------------------------------------------------------


def test_sqlite_full_refuses_with_exit_9_and_keeps_every_acknowledged_write(vdir):
    v = vdir.open()
    add_client(v, "acme")
    for i in range(5):
        v.secrets.put(operator(), "acme", f"k/{i}", "note", {"text": f"value-{i}"})
    v.ctx.db.conn.execute("VACUUM")  # no free pages left to fill
    pages = v.ctx.db.scalar("PRAGMA page_count")
    v.ctx.db.conn.execute(f"PRAGMA max_page_count = {pages}")  # the database cannot grow: full
    caught = None
    for i in range(5, 400):
        try:
            v.secrets.put(operator(), "acme", f"k/{i}", "note", {"text": f"value-{i}"})
        except StorageFull as exc:
            caught = exc
            break
    assert caught is not None, "the database never filled"
    assert caught.exit_code == EXIT_BACKEND == 9
    assert "no space left" in caught.message
    assert not v.ctx.db.conn.in_transaction  # rolled back, nothing half-written
    before = {f"k/{n}": f"value-{n}" for n in range(i)}
    v.ctx.db.conn.execute("PRAGMA max_page_count = 1073741823")
    assert _values(v) == before
    v.close()
    v = vdir.open()
    assert _values(v) == before
    assert v.maintenance.doctor(operator()).ok
    v.close()


def test_blob_store_enospc_refuses_and_leaves_no_temporary_file(vdir, monkeypatch):
    import vault.backends.local as local

    v = vdir.open()
    add_client(v, "acme")
    v.secrets.put(operator(), "acme", "k/0", "note", {"text": "kept"})
    real = local._write_all

    def full(fd, data):
        real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(local, "_write_all", full)
    with pytest.raises(StorageFull) as caught:
        v.secrets.put(operator(), "acme", "k/1", "note", {"text": "lost"})
    assert caught.value.exit_code == 9 and "no space left" in caught.value.message
    monkeypatch.setattr(local, "_write_all", real)
    assert not list(vdir.home.rglob(".tmp-*"))
    assert _values(v) == {"k/0": "kept"}
    report = v.maintenance.doctor(operator())
    assert report.ok, report.problems
    v.close()


# --- disk full, for real: a small tmpfs ---------------------------------------------------------------


def _mount(*argv: str) -> bool:
    return subprocess.run(["mount", *argv], capture_output=True).returncode == 0


@pytest.fixture
def small_fs(tmp_path):
    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(where)):
        pytest.skip("cannot mount a tmpfs here (needs root and a kernel that allows it)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder) -> None:
    with open(folder / "filler", "wb", buffering=0) as fh:
        chunk = b"\0" * 65536
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with open(folder / "filler2", "wb", buffering=0) as fh:  # the last partial block
        try:
            while True:
                fh.write(b"\0")
                fh.flush()
        except OSError:
            pass


def test_full_tmpfs_exit_9_no_lost_write_and_clean_reopen(small_fs, vault_template):
    vdir = copy_vault(vault_template, small_fs)
    v = vdir.open()
    add_client(v, "acme")
    for i in range(3):
        v.secrets.put(operator(), "acme", f"k/{i}", "note", {"text": f"value-{i}"})
    v.close()
    env = vdir.env()  # the session file exists before the disk fills
    _fill(small_fs)
    seen = []
    for argv in (
        ("secret", "put", "acme", "k/new", "--type", "note", "--from-stdin"),
        ("secret", "get", "acme", "k/0"),
        ("secret", "list", "acme"),
        ("sla", "expire", "acme", "--reason", "disk full test"),
        ("doctor",),
        ("audit", "verify"),
    ):
        got = vdir.cli(*argv, input="x" * 100_000 + "\n", env=env)
        seen.append((argv[:2], got.returncode, got.stderr.strip()))
        assert got.returncode in (0, 9), seen[-1]
        assert "internal error" not in got.stderr and "Traceback" not in got.stderr, seen[-1]
        if got.returncode == 9:
            assert "no space left" in got.stderr, seen[-1]
    assert seen[0][1] == 9, seen  # a 100 kB write cannot fit
    (small_fs / "filler").unlink()
    (small_fs / "filler2").unlink()
    v = vdir.open()
    values = _values(v)
    assert {k: values[k] for k in ("k/0", "k/1", "k/2")} == {f"k/{i}": f"value-{i}" for i in range(3)}
    assert "k/new" not in values
    report = v.maintenance.doctor(operator())
    assert report.ok, report.problems
    v.close()
    assert vdir.cli("secret", "get", "acme", "k/1", "--field", "text", env=env).stdout == "value-1\n"


# --- read-only storage --------------------------------------------------------------------------------


def _read_only_copy(vdir, tmp_path):
    """``vdir``'s folder bind-mounted read-only at tmp_path/ro (None where mounts are refused)."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() != 0 or not _mount("--bind", str(vdir.home), str(target)):
        return None
    if not _mount("-o", "remount,bind,ro", str(target)):
        subprocess.run(["umount", "-l", str(target)], check=False)
        return None
    return target


@pytest.mark.parametrize("cleanly_closed", [True, False])
def test_read_only_mount_refuses_clearly_and_never_says_integrity(tmp_path, vault_template, cleanly_closed):
    vdir = copy_vault(vault_template, tmp_path)
    v = vdir.open()
    add_client(v, "acme")
    v.secrets.put(operator(), "acme", "k/0", "note", {"text": "value"})
    if cleanly_closed:
        v.ctx.db.checkpoint_truncate()
    v.close()
    if cleanly_closed:
        for leftover in ("vault.db-wal", "vault.db-shm"):
            (vdir.home / leftover).unlink(missing_ok=True)
    ro = _read_only_copy(vdir, tmp_path)
    if ro is None:
        pytest.skip("cannot make a read-only bind mount here (needs root)")
    try:
        env = vdir.env(CVAULT_HOME=str(ro))
        for argv in (
            ("secret", "get", "acme", "k/0"),
            ("secret", "put", "acme", "k/1", "--type", "note", "--from-stdin"),
            ("secret", "list", "acme"),
            ("doctor",),
        ):
            got = vdir.cli(*argv, input="new\n", env=env)
            assert got.returncode == 9, (argv, got.returncode, got.stderr)
            assert "read-only" in got.stderr and "integrity" not in got.stderr, got.stderr
            assert len(got.stderr.strip().splitlines()) == 1, got.stderr
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)
    v = vdir.open()  # the writable original is untouched and fine
    assert _values(v) == {"k/0": "value"}
    v.close()


def test_read_only_storage_injected_opens_and_refuses_writes(tmp_path, vault_template, monkeypatch):
    import vault.store.db as db

    vdir = copy_vault(vault_template, tmp_path)
    v = vdir.open()
    add_client(v, "acme")
    v.secrets.put(operator(), "acme", "k/0", "note", {"text": "value"})
    v.close()
    monkeypatch.setattr(db, "on_read_only_storage", lambda path: True)
    v = vdir.open()
    try:
        assert v.ctx.db.read_only
        with pytest.raises(StorageReadOnly) as caught:
            v.secrets.get(operator(), "acme", "k/0")
        assert caught.value.exit_code == 9 and "read-only" in caught.value.message
        assert "audit event" in caught.value.message  # says why a read needs a write
    finally:
        v.close()


# --- a damaged database file --------------------------------------------------------------------------


def test_flipped_bytes_at_page_boundaries_exit_6_never_internal(tmp_path):
    template = make_vault(tmp_path / "t")
    v = template.open()
    add_client(v, "acme")
    for i in range(30):
        v.secrets.put(operator(), "acme", f"k/{i}", "note", {"text": f"value-{i}" * 50})
    v.ctx.db.checkpoint_truncate()
    v.close()
    size = (template.home / "vault.db").stat().st_size
    page = 4096
    codes = set()
    for n, offset in enumerate(sorted({page - 1, page, 2 * page, 3 * page + 100, size - page, size - 1})):
        vdir = copy_vault(template, tmp_path / f"c{n}")
        env = vdir.env()  # the session file, written while the database still reads
        path = vdir.home / "vault.db"
        data = bytearray(path.read_bytes())
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
        for argv in (("secret", "list", "acme"), ("doctor",)):
            got = vdir.cli(*argv, env=env)
            assert got.returncode in (0, 6), (offset, argv, got.returncode, got.stderr)
            assert "internal error" not in got.stderr, (offset, argv, got.stderr)
            codes.add(got.returncode)
        shutil.rmtree(vdir.home)
    assert 6 in codes
