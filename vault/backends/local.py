"""Local filesystem backend: the primary copy of every blob in the embedded vault.

Layout: ``<root>/<first two chars>/<name>``, files 0600, folders 0700.
Atomic write: write a temporary file in the same folder, fsync it, rename it over the target,
fsync the folder (so the rename itself survives a crash). A crash leaves either the old blob or
the new one, plus at worst a ``.tmp-*`` file that :meth:`LocalBackend.list` ignores and
``cvault doctor`` reports.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterator

from vault.backends.base import validate_blob_name
from vault.errors import BlobNotFound, PermanentBackendError, TransientBackendError

_TRANSIENT = {errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ETIMEDOUT}


def _fail(exc: OSError, what: str):
    cls = TransientBackendError if exc.errno in _TRANSIENT else PermanentBackendError
    return cls(f"local blob store: {what} failed: {exc.strerror or exc}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBackend:
    location = "local"

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        validate_blob_name(name)
        return self.root / name[:2] / name

    def put(self, name: str, data: bytes, *, durable: bool = True) -> None:
        """Atomic replace. ``durable=False`` (bulk import of names no committed row refers to yet)
        writes in place without fsync; the caller must :meth:`sync` before committing."""
        path = self._path(name)
        try:
            # A non-durable put (bulk import of new names inside an uncommitted transaction) writes
            # in place: until the commit no row refers to the name, so a torn file is an orphan.
            tmp = path.parent / f".tmp-{name}-{os.getpid()}" if durable else path
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except FileNotFoundError:  # first blob of this shard folder (or the folder was lost)
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if durable:
                os.replace(tmp, path)
                fsync_dir(path.parent)
        except OSError as exc:
            raise _fail(exc, "write") from None

    def sync(self) -> None:
        """Make every earlier non-durable put durable (one filesystem-wide sync)."""
        os.sync()
        for folder in self.root.iterdir():
            if folder.is_dir():
                fsync_dir(folder)
        fsync_dir(self.root)

    def get(self, name: str) -> bytes:
        path = self._path(name)
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {name} not found in {self.location}") from None
        except OSError as exc:
            raise _fail(exc, "read") from None

    def delete(self, name: str, *, durable: bool = True) -> None:
        """Permanent, idempotent. ``durable=False`` skips the folder fsync; the caller must
        :meth:`sync` later (a shred deletes thousands of blobs, then syncs once)."""
        path = self._path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _fail(exc, "delete") from None
        if not durable:
            return
        try:
            fsync_dir(path.parent)
        except OSError as exc:
            raise _fail(exc, "delete") from None

    def list(self) -> Iterator[str]:
        if not self.root.exists():
            return
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if not entry.name.startswith(".") and entry.is_file():
                    yield entry.name

    def stray_temp_files(self) -> list[Path]:
        """Temporary files left by an interrupted put (reported by doctor)."""
        if not self.root.exists():
            return []
        return [p for folder in self.root.iterdir() if folder.is_dir() for p in folder.glob(".tmp-*")]

    def exists(self, name: str) -> bool:
        return self._path(name).exists()
