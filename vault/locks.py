"""Advisory locks in the vault's ``locks/`` folder, so that one sweep and one push run at a time.

``flock`` locks belong to the open file: the kernel drops them when the process dies, so a killed
sweep or push never blocks the next one."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def exclusive(locks_dir, name: str) -> Iterator[bool]:
    """Non-blocking exclusive lock on ``locks_dir/name``; yields whether it was acquired."""
    os.makedirs(locks_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(locks_dir, name), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
