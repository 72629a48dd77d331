"""The one error report of the CLI: an exception becomes one line on stderr and an exit code.

Used by :func:`cli.main.run` (after click's own exceptions) and by :mod:`cli.fastget` (``cvault
secret get`` without click), so that both print the same line and exit with the same code. It
imports neither click nor the vault core until an error needs them.

Every line is printed with its C0/C1 control characters (and other non-printable ones: line
separators, bidi controls) escaped, whatever the message holds: no message can carry a terminal
escape sequence or a second line (review R6; the rule of :func:`vault.audit.export.escape_controls`)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

#: errors of a path itself (not of the storage under it: storage_error has those, exit 9)
_PATH_ERRNOS = {
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENAMETOOLONG,
    errno.EACCES,
    errno.EPERM,
    errno.ELOOP,
    errno.EINVAL,
    errno.ENXIO,
}


def safe_line(text: str) -> str:
    """``text`` with every non-printable character written as an escape (``\\x1b``, ``\\n``)."""
    if text.isprintable():
        return text
    from vault.audit.export import escape_controls

    return escape_controls(text)


def _output_closed() -> bool:
    """Whether stdout or stderr is a pipe or socket whose reader is gone: only then is a
    ``BrokenPipeError`` a closed output, to leave without a line. Any other pipe's EPIPE (an
    encrypt worker's, a peer's socket) is an error like any other and gets its line (review9 R9-2:
    every BrokenPipeError was taken for a closed stdout, so a failure ended with no line at all).
    An in-memory stream (the agent's) has no descriptor: never closed this way."""
    import select
    import sys

    gone = select.POLLERR | select.POLLHUP | select.POLLNVAL
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, ValueError, OSError):  # None, closed or in memory
            continue
        poller = select.poll()
        poller.register(fd, 0)  # no event asked for: the error and hang-up ones are always told
        if any(events & gone for _, events in poller.poll(0)):
            return True
    return False


def report(exc: BaseException, debug: bool, echo_err: Callable[[str], None]) -> int:
    """Write the one line for ``exc`` with ``echo_err`` and return the exit code. Called from
    the ``except`` block that caught ``exc`` (``--debug`` prints its traceback)."""
    return _report(exc, debug, lambda line: echo_err(safe_line(line)))


def _report(exc: BaseException, debug: bool, echo_err: Callable[[str], None]) -> int:
    if isinstance(exc, KeyboardInterrupt):
        echo_err("cvault: interrupted")
        return 130
    if isinstance(exc, BrokenPipeError) and _output_closed():
        return 1  # the reader of stdout or stderr is gone (``| head``): no line can reach anyone
    if not isinstance(exc, Exception):
        raise exc
    from vault.errors import VaultError

    if debug:
        import traceback

        traceback.print_exc()
    if not isinstance(exc, VaultError):
        # a full or read-only disk, a damaged database file, a number SQLite cannot hold,
        # input nested too deeply, a constraint cvault's schema does not have: the documented
        # line and exit code, not "internal error"
        from vault.store.db import storage_error, unexpected_constraint

        exc = storage_error(exc) or unexpected_constraint(exc) or exc
    if isinstance(exc, VaultError):
        echo_err(f"cvault: {exc.message}")
        return exc.exit_code
    if isinstance(exc, OSError) and exc.filename is not None and exc.errno in _PATH_ERRNOS:
        # a path the user gave that the system refuses (too long, a folder, no permission...)
        name = os.fsdecode(exc.filename)
        shown = name if len(name) <= 120 else name[:60] + "..." + name[-20:]
        echo_err(f"cvault: {shown!r}: {os.strerror(exc.errno).lower()}")
        return 2
    echo_err(f"cvault: internal error: {type(exc).__name__} (run with --debug for details)")
    return 1
