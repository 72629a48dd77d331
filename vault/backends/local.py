"""Local filesystem backend: the primary copy of every blob in the embedded vault.

Layout: ``<root>/<first two chars>/<name>``, files 0600, folders 0700.
Atomic write: write a temporary file in the same folder, fsync it, rename it over the target,
fsync the folder (so the rename itself survives a crash). A crash leaves either the old blob or
the new one, plus at worst a ``.tmp-*`` file that :meth:`LocalBackend.list` ignores and
``cvault doctor`` reports.

Bulk operations (``secret import``, a shred) skip the per-file fsync and make everything durable
with one :meth:`LocalBackend.sync` before the database commit that refers to it:

* **written files**: on Linux one ``syncfs(2)`` of the filesystem holding the blob folder (through
  ctypes). It writes back and waits for every dirty page and inode of *that* filesystem only --
  unlike ``os.sync()``, which flushes every filesystem of the machine -- and costs one journal
  commit, where an ``fsync`` per written file would cost one commit per file (10,000 for a large
  import). Where ``syncfs`` is not available (other systems, or a libc without it), each file
  written since the last sync is fsynced: slower, and still durable.
* **directory entries** (new names, unlinks): every shard folder touched since the last sync is
  fsynced, and the root folder when a shard folder was created.

Paths in the hot loops are plain strings (``os.path`` joins) and bulk loops open each shard folder
once and work relative to its descriptor (``dir_fd``), so the kernel resolves one name per file.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from vault.backends.base import BLOB_NAME, validate_blob_name
from vault.errors import (
    BlobNotFound,
    PermanentBackendError,
    StorageFull,
    StorageReadOnly,
    TransientBackendError,
)

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

_TRANSIENT = {errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ETIMEDOUT}
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
#: blobs handed to one background write task (bulk import)
_BULK_CHUNK = 256
#: chunks queued at most before the importer waits for the writer (bounds the import's memory)
_BULK_PENDING = 16
#: background threads that create bulk-imported blob files (file creation is kernel time that
#: overlaps the encryption and SQL of the import; more threads only contend for the 2 cores)
_WRITE_WORKERS = 2
#: threads that unlink a shred's blobs (unlink is kernel time; the GIL is released)
_DELETE_WORKERS = 4


def _fail(exc: OSError, what: str):
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"no space left on the blob store's storage ({what}); nothing was written")
    if exc.errno == errno.EROFS:
        return StorageReadOnly(f"the blob store's storage is read-only ({what}); nothing was written")
    cls = TransientBackendError if exc.errno in _TRANSIENT else PermanentBackendError
    return cls(f"local blob store: {what} failed: {exc.strerror or exc}")


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_syncfs_fn: tuple[Any, Callable[[], int]] | bool | None = None  # None: not looked up; False: none


def _syncfs():
    """``syncfs(2)`` from the C library on Linux, else None."""
    global _syncfs_fn
    if _syncfs_fn is None:
        _syncfs_fn = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes  # only bulk writes need it; kept off the read path's imports

                fn = ctypes.CDLL(None, use_errno=True).syncfs
                fn.argtypes = [ctypes.c_int]
                fn.restype = ctypes.c_int
                _syncfs_fn = (fn, ctypes.get_errno)
            except (OSError, AttributeError):
                pass
    return _syncfs_fn or None


def _valid(name: str) -> str:
    if type(name) is not str or not BLOB_NAME.match(name):
        validate_blob_name(name)  # raises the usual error
    return name


def _by_shard(names: Iterable[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name in names:
        _valid(name)
        groups.setdefault(name[:2], []).append(name)
    return groups


class LocalBackend:
    location = "local"

    def __init__(self, root: Path | str):
        self._root_str = os.fspath(root)
        # non-durable changes since the last sync(): shard folders, files written, new folders
        self._dirty_dirs: set[str] = set()
        self._dirty_files: list[str] = []
        self._root_dirty = False

    @property
    def root(self) -> Path:
        from pathlib import Path  # off the read path (``secret get`` never loads pathlib)

        return Path(self._root_str)

    def _file(self, name: str) -> str:
        _valid(name)
        return os.path.join(self._root_str, name[:2], name)

    def _folder(self, shard: str) -> str:
        return os.path.join(self._root_str, shard)

    def _make_folder(self, folder: str) -> None:
        if not os.path.isdir(self._root_str):
            os.makedirs(self._root_str, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
        self._root_dirty = True

    def put(self, name: str, data: bytes, *, durable: bool = True) -> None:
        """Atomic replace. ``durable=False`` (bulk import of names no committed row refers to yet)
        writes in place without fsync; the caller must :meth:`sync` before committing."""
        path = self._file(name)
        folder = os.path.dirname(path)
        try:
            # A non-durable put (bulk import of new names inside an uncommitted transaction) writes
            # in place: until the commit no row refers to the name, so a torn file is an orphan.
            tmp = os.path.join(folder, f".tmp-{name}-{os.getpid()}") if durable else path
            try:
                fd = os.open(tmp, _WRITE_FLAGS, 0o600)
            except FileNotFoundError:  # first blob of this shard folder (or the folder was lost)
                self._make_folder(folder)
                fd = os.open(tmp, _WRITE_FLAGS, 0o600)
            try:
                _write_all(fd, data)
                if durable:
                    os.fsync(fd)
            except OSError:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)  # nothing half-written is left (a full disk gets its space back)
                raise
            else:
                os.close(fd)
            if durable:
                os.replace(tmp, path)
                fsync_dir(folder)
                if self._root_dirty:
                    fsync_dir(self._root_str)
                    self._root_dirty = False
            else:
                self._dirty_dirs.add(folder)
                self._dirty_files.append(path)
        except OSError as exc:
            raise _fail(exc, "write") from None

    def bulk_writer(self) -> BulkWriter:
        """Non-durable in-place writes of many new blobs on a background thread (bulk import);
        see :class:`BulkWriter`. The caller must :meth:`sync` after ``finish()``."""
        return BulkWriter(self)

    def sync(self) -> None:
        """Make every earlier non-durable put and delete of this backend durable: one
        ``syncfs(2)`` of the blob filesystem (or an fsync per written file where syncfs is not
        available), then an fsync of every folder whose entries changed."""
        try:
            if self._dirty_files:
                syncfs = _syncfs()
                if syncfs is not None:
                    fd = os.open(self._root_str, _DIR_FLAGS)
                    try:
                        if syncfs[0](fd) != 0:
                            code = syncfs[1]()
                            raise OSError(code, os.strerror(code))
                    finally:
                        os.close(fd)
                else:
                    for path in self._dirty_files:
                        try:
                            fd = os.open(path, os.O_RDONLY)
                        except FileNotFoundError:
                            continue  # deleted since: nothing to make durable
                        try:
                            os.fsync(fd)
                        finally:
                            os.close(fd)
            for folder in sorted(self._dirty_dirs):
                try:
                    fsync_dir(folder)
                except FileNotFoundError:
                    continue
            if self._root_dirty:
                fsync_dir(self._root_str)
        except OSError as exc:
            raise _fail(exc, "sync") from None
        self._dirty_files = []
        self._dirty_dirs = set()
        self._root_dirty = False

    def get(self, name: str) -> bytes:
        path = self._file(name)
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {name} not found in {self.location}") from None
        except OSError as exc:
            raise _fail(exc, "read") from None

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """``length`` bytes of the blob from ``offset`` (a packed record version): fewer if the
        file is shorter (the caller's decryption then fails closed)."""
        path = self._file(name)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise BlobNotFound(f"blob {name} not found in {self.location}") from None
        except OSError as exc:
            raise _fail(exc, "read") from None
        try:
            chunks = []
            while length > 0:
                data = os.pread(fd, length, offset)
                if not data:
                    break
                chunks.append(data)
                offset += len(data)
                length -= len(data)
            return b"".join(chunks)
        except OSError as exc:
            raise _fail(exc, "read") from None
        finally:
            os.close(fd)

    def delete(self, name: str, *, durable: bool = True) -> None:
        """Permanent, idempotent. ``durable=False`` skips the folder fsync; the caller must
        :meth:`sync` later (a shred deletes thousands of blobs, then syncs once)."""
        path = self._file(name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _fail(exc, "delete") from None
        folder = os.path.dirname(path)
        if not durable:
            self._dirty_dirs.add(folder)
            return
        try:
            fsync_dir(folder)
        except OSError as exc:
            raise _fail(exc, "delete") from None

    def delete_many(self, names: Iterable[str], *, durable: bool = True) -> tuple[int, int]:
        """Delete many blobs (a shred); returns ``(deleted, already_absent)``. No stat per file:
        a name the unlink does not find counts as absent. Each shard folder is opened once and
        its names unlinked relative to it, on a few threads; with ``durable`` every shard folder
        of the names is fsynced before returning, else the caller must :meth:`sync`."""
        groups = _by_shard(names)
        if not groups:
            return 0, 0

        def unlink_group(item: tuple[str, list[str]]) -> tuple[int, int, str | None]:
            shard, members = item
            folder = self._folder(shard)
            try:
                dfd = os.open(folder, _DIR_FLAGS)
            except FileNotFoundError:
                return 0, len(members), None
            deleted = absent = 0
            try:
                for name in members:
                    try:
                        os.unlink(name, dir_fd=dfd)
                        deleted += 1
                    except FileNotFoundError:
                        absent += 1
            finally:
                os.close(dfd)
            # every folder is fsynced, also where every name was already absent: a killed run
            # may have unlinked them without reaching its fsync
            return deleted, absent, folder

        results = _run_parallel(unlink_group, list(groups.items()), _DELETE_WORKERS, "delete")
        deleted = sum(r[0] for r in results)
        absent = sum(r[1] for r in results)
        self._dirty_dirs.update(r[2] for r in results if r[2])
        if durable:
            self.sync()
        return deleted, absent

    def count_present(self, names: Iterable[str]) -> int:
        """How many of ``names`` exist in this store (one lstat per name, relative to its open
        shard folder)."""
        present = 0
        try:
            for shard, members in _by_shard(names).items():
                try:
                    dfd = os.open(self._folder(shard), _DIR_FLAGS)
                except FileNotFoundError:
                    continue
                try:
                    for name in members:
                        try:
                            os.stat(name, dir_fd=dfd, follow_symlinks=False)
                            present += 1
                        except FileNotFoundError:
                            pass
                finally:
                    os.close(dfd)
        except OSError as exc:
            raise _fail(exc, "stat") from None
        return present

    def list(self) -> Iterator[str]:
        if not self.root.exists():
            return
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if not entry.name.startswith(".") and entry.is_file():
                    yield entry.name

    def stray_temp_files(self) -> builtins.list[Path]:
        """Temporary files left by an interrupted put (reported by doctor)."""
        if not self.root.exists():
            return []
        return [p for folder in self.root.iterdir() if folder.is_dir() for p in folder.glob(".tmp-*")]

    def exists(self, name: str) -> bool:
        return os.path.exists(self._file(name))


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


def _run_parallel(fn, items: list, workers: int, what: str) -> list:
    if len(items) <= 1 or workers <= 1:
        results = [fn(i) for i in items]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
            try:
                results = list(pool.map(fn, items))
            except OSError as exc:
                raise _fail(exc, what) from None
    return results


class BulkWriter:
    """Writes new blobs in place (no temporary file, no fsync) on one background thread, so the
    file creation -- kernel time -- overlaps the caller's encryption and SQL.

    ``add()`` queues a blob; ``finish()`` waits for every write and raises the first failure;
    ``abort()`` (after an error) waits for the writes already started and discards failures.
    Names are recorded as not yet durable as they are queued: the caller calls
    :meth:`LocalBackend.sync` after ``finish()`` and before its commit. Only for names no
    committed row refers to: a crash or a rollback leaves at worst orphan files."""

    def __init__(self, backend: LocalBackend):
        self.backend = backend
        self._chunk: list[tuple[str, bytes]] = []
        self._futures: list = []
        self._pool: ThreadPoolExecutor | None = None

    def add(self, name: str, data: bytes) -> None:
        path = self.backend._file(name)
        self.backend._dirty_dirs.add(os.path.dirname(path))
        self.backend._dirty_files.append(path)
        self._chunk.append((name, data))
        if len(self._chunk) >= _BULK_CHUNK:
            self._submit()

    def _submit(self) -> None:
        if not self._chunk:
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=_WRITE_WORKERS, thread_name_prefix="cvault-blobs")
        self._futures.append(self._pool.submit(self._write_chunk, self._chunk))
        self._chunk = []
        # bounded memory: when the files are created more slowly than the caller encrypts, the
        # caller waits for the oldest chunks instead of queueing the whole import
        while len(self._futures) > _BULK_PENDING:
            self._result(self._futures.pop(0))

    @staticmethod
    def _result(future) -> None:
        try:
            future.result()
        except OSError as exc:
            raise _fail(exc, "write") from None

    def _write_chunk(self, chunk: list[tuple[str, bytes]]) -> None:
        backend = self.backend
        dirs: dict[str, int] = {}
        try:
            for name, data in chunk:
                shard = name[:2]
                dfd = dirs.get(shard)
                if dfd is None:
                    folder = backend._folder(shard)
                    try:
                        dfd = os.open(folder, _DIR_FLAGS)
                    except FileNotFoundError:  # first blob of this shard folder
                        backend._make_folder(folder)
                        dfd = os.open(folder, _DIR_FLAGS)
                    dirs[shard] = dfd
                fd = os.open(name, _WRITE_FLAGS, 0o600, dir_fd=dfd)
                try:
                    _write_all(fd, data)
                finally:
                    os.close(fd)
        finally:
            for dfd in dirs.values():
                os.close(dfd)

    def finish(self) -> None:
        self._submit()
        try:
            for future in self._futures:
                self._result(future)
        finally:
            self.abort()

    def abort(self) -> None:
        self._chunk = []
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._futures = []
