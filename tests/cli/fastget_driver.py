"""Runs ``cvault`` command lines in this process, one after the other, through one path, and prints
what each wrote and returned (tests/cli/test_fastget.py compares the two paths).

    python -m tests.cli.fastget_driver click|launcher  < cases.json  > results.json

``click``: :func:`cli.main.run`, the full click CLI. ``launcher``: what the console script does
without an agent, :func:`cli.fastget.try_fast` and, when it declines, :func:`cli.main.run`.
``cases.json`` is a list of ``{"argv": [...], "tty": bool}``; each case gets fresh standard
streams (real ``io.TextIOWrapper``s over bytes, a terminal when ``tty``), the environment as it
was, and reports ``{"code", "stdout", "stderr", "fast"}`` (the streams as hex; ``fast``: the
case was served by cli.fastget)."""

from __future__ import annotations

import io
import json
import os
import sys


class _Stream(io.TextIOWrapper):
    """A standard stream as the interpreter makes them, writing into memory."""

    def __init__(self, tty: bool, errors: str):
        super().__init__(io.BytesIO(), encoding="utf-8", errors=errors, line_buffering=tty)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def data(self) -> bytes:
        self.flush()
        return self.buffer.getvalue()  # type: ignore[attr-defined]


def run_case(path: str, argv: list[str], tty: bool) -> dict:
    saved_env = dict(os.environ)
    saved = sys.stdout, sys.stderr
    out, err = _Stream(tty, "strict"), _Stream(tty, "backslashreplace")
    sys.stdout, sys.stderr = out, err
    fast = False
    try:
        code = None
        if path == "launcher":
            from cli.fastget import try_fast

            code = try_fast(argv)
            fast = code is not None
        if code is None:
            from cli.main import run

            code = run(argv)
    finally:
        sys.stdout, sys.stderr = saved
        os.environ.clear()
        os.environ.update(saved_env)
    return {
        "code": code,
        "stdout": out.data().hex(),
        "stderr": err.data().hex(),
        "fast": fast,
    }


def main() -> None:
    path = sys.argv[1]
    cases = json.load(sys.stdin)
    results = [run_case(path, case["argv"], case["tty"]) for case in cases]
    sys.stdout.write(json.dumps(results))


if __name__ == "__main__":
    main()
