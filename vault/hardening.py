"""Process hardening for every process that holds the root key (issue 11): no core file and no
ptrace attach by other processes of the same user.

``forbid_core_dumps()`` sets ``RLIMIT_CORE`` to 0 (soft and hard: it cannot be raised again) and,
on Linux, ``PR_SET_DUMPABLE`` to 0 through ``prctl`` (ctypes; no dependency). Called by
:meth:`vault.keys.Keyring.load_root`, so ``cvault serve``, the agent and every CLI command that
unseals are covered before the root key is in memory; idempotent and cheap (two system calls once
per process). The systemd unit adds ``LimitCORE=0`` (deploy/systemd/cvault.service).

``python_argv()`` is the one way cvault starts a Python process of its own (review6 R6-3, R6-4):
the service's workers, the agent daemon, the clipboard clearers, the audit verifier's second
half, the shred scan and the demo's steps. ``python -c`` and ``python -m`` put the current
folder first on ``sys.path``, so a ``vault/``, ``cli/`` or ``json.py`` planted where the user
typed the command would run as the vault user (and be handed the root key). The child is
``sys.executable -I`` (isolated: no current or script folder on ``sys.path``, no user site, no
``PYTHON*`` variable), with the folder holding this ``vault`` package put on ``sys.path`` when the
child needs cvault itself, and is started in :data:`CHILD_CWD` (every path it is given is
absolute). What a child needs to know goes on its stdin, through inherited descriptors or
``CVAULT_*`` variables in ``env=``, never through ``PYTHON*`` variables.
"""

from __future__ import annotations

import os
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


#: the working folder of every Python child of cvault (:func:`python_argv`): never the caller's
CHILD_CWD = "/"


def project_root() -> str:
    """The folder that holds the ``vault`` (and ``cli``) package this process runs: site-packages
    for a regular install, the source checkout for an editable install or ``PYTHONPATH``."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_argv(
    *,
    code: str | None = None,
    module: str | None = None,
    args: tuple[str, ...] | list[str] = (),
    project: bool = True,
) -> list[str]:
    """The argv of a Python child of cvault: ``code`` (a program) or ``module`` (run as
    ``__main__``, as ``python -m`` would, with ``args`` as its ``sys.argv[1:]``), in this
    interpreter, isolated (``-I``). ``project``: put :func:`project_root` on ``sys.path`` (first,
    unless the isolated interpreter finds it there already: site-packages) so that the child
    imports the same cvault as this process; False for a child that needs the standard library
    only. Start it with ``cwd=CHILD_CWD``."""
    if (code is None) == (module is None):
        raise ValueError("python_argv needs code or module")
    program = (
        code
        if code is not None
        else f"import runpy\nrunpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    )
    if project:
        root = project_root()
        program = f"import sys\nif {root!r} not in sys.path:\n    sys.path.insert(0, {root!r})\n" + program
    return [sys.executable, "-I", "-c", program, *args]
