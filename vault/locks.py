"""Advisory locks in the vault's ``locks/`` folder, so that one sweep and one push run at a time.

``flock`` locks belong to the open file: the kernel drops them when the process dies, so a killed
sweep or push never blocks the next one."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def exclusive(locks_dir, name: str, wait: float = 0.0) -> Iterator[bool]:
    """Exclusive lock on ``locks_dir/name``; yields whether it was acquired.

    ``wait``: seconds to keep trying while another process (or another thread's open file, in the
    service) holds it; 0 gives up at once."""
    os.makedirs(locks_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(locks_dir, name), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class HostWriteLock:
    """The service's write lock when several worker processes share one vault (``cvault serve
    --workers N``, docs/service.md "Worker processes"): a reentrant in-process lock, and for the
    outermost holder an ``flock`` on ``locks_dir/write``, taken before SQLite's ``BEGIN
    IMMEDIATE``.

    The in-process lock queues this process's threads as before (``vault.server.pool``); the
    ``flock`` queues the processes: a blocked ``flock`` sleeps in the kernel with the GIL released
    and is woken as soon as the holder unlocks, where SQLite's busy handler would sleep 1, 2, 5,
    10 ... ms between retries. The kernel drops the lock of a killed process. Each process opens
    the file itself (an ``flock`` belongs to the open file: a descriptor inherited across
    ``fork`` would share it)."""

    def __init__(self, locks_dir):
        import threading

        self._dir = os.fspath(locks_dir)
        self._fd = -1  # opened at the first write: a missing vault is refused before, as ever
        self._lock = threading.RLock()
        self._depth = 0

    def __enter__(self) -> HostWriteLock:
        self._lock.acquire()
        if self._depth == 0:
            try:
                if self._fd < 0:
                    os.makedirs(self._dir, mode=0o700, exist_ok=True)
                    path = os.path.join(self._dir, "write")
                    self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._lock.release()
                raise
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        try:
            if self._depth == 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
