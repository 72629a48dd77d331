"""The lines of a regular file given to ``secret import`` (:meth:`SecretService.import_records`).

An :class:`ImportFile` is what the CLI passes for a named file: iterated, it is the same stream of
lines as any other source (read line by line, split on ``\\n`` alone, each decoded by the caller's
``decode``, blank lines included), so every path of the library and the service client reads it
as before. Because it is a regular file, the import may also read the part after what was
iterated by byte ranges (:mod:`vault.records.parallel`: forked encrypt workers on a second core,
each ``pread``-ing its own ranges): :attr:`offset` and :attr:`lines_read` say where iteration
stopped; ``decode`` is the same for both (the caller's one message for non-UTF-8 input).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from typing import BinaryIO


class ImportFile:
    """The lines of an open regular file, from its current position."""

    def __init__(
        self,
        fh: BinaryIO,
        decode: Callable[[bytes], str],
        update: Callable[[int], None] | None = None,
    ):
        self.fh, self.decode, self.update = fh, decode, update
        #: the byte offset after the last line iterated, and how many lines were
        self.offset = fh.tell()
        self.lines_read = 0

    @staticmethod
    def usable(fh: BinaryIO) -> bool:
        """Whether ``fh`` is a regular file (a pipe or a terminal is read as a stream only)."""
        try:
            return stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self.fh.fileno()

    def progress(self, done: int) -> None:
        """Report ``done`` bytes read (the CLI's progress bar), if anyone listens."""
        if self.update is not None:
            self.update(done)

    def __iter__(self) -> Iterator[str]:
        decode, update, start = self.decode, self.update, self.offset
        done = 0
        for raw in self.fh:
            done += len(raw)
            self.offset = start + done
            self.lines_read += 1
            if update is not None and self.lines_read % 1000 == 0:
                update(done)
            yield decode(raw)
        if update is not None:
            update(done)
