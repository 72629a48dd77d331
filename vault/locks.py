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
