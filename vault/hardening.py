"""Process hardening for every process that holds the root key (issue 11): no core file and no
ptrace attach by other processes of the same user.

``forbid_core_dumps()`` sets ``RLIMIT_CORE`` to 0 (soft and hard: it cannot be raised again) and,
on Linux, ``PR_SET_DUMPABLE`` to 0 through ``prctl`` (ctypes; no dependency). Called by
:meth:`vault.keys.Keyring.load_root`, so ``cvault serve``, the agent and every CLI command that
unseals are covered before the root key is in memory; idempotent and cheap (two system calls once
per process). The systemd unit adds ``LimitCORE=0`` (deploy/systemd/cvault.service).
"""

from __future__ import annotations

import sys

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3

_done: list[bool] = []


def forbid_core_dumps() -> None:
    if _done:
        return
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):  # not POSIX: nothing to set
        pass
    if sys.platform.startswith("linux"):
        try:
            _prctl(PR_SET_DUMPABLE, 0)
        except (OSError, AttributeError, TypeError, ImportError):
            try:
                import ctypes

                ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
            except (OSError, AttributeError):
                pass
    _done.append(True)


def _prctl(option: int, arg: int) -> int:
    """``prctl(option, arg, 0, 0, 0)`` through the C module ``_ctypes`` itself: ``import ctypes``
    (its ~40 classes) costs about 8 M instructions, 3 % of a whole ``cvault secret get``, which
    unseals and so calls this (docs/performance.md). Any failure falls back to ``ctypes``."""
    import _ctypes

    class _Int(_ctypes._SimpleCData):
        _type_ = "i"

    class _Function(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = _Int

    class _Libc:
        _handle = _ctypes.dlopen(None, 2)  # type: ignore[arg-type]  # the process itself, RTLD_NOW

    result: int = _Function(("prctl", _Libc()))(option, arg, 0, 0, 0)  # type: ignore[arg-type]
    return result


def core_dumps_forbidden() -> bool:
    """Whether this process can leave no core file (doctor, tests)."""
    import resource

    if resource.getrlimit(resource.RLIMIT_CORE) != (0, 0):
        return False
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
    return True
