"""Runs one benchmark module in its own process for ``python -m bench`` (isolation, timeout, memory).

    python -m bench._child MODULE 'JSON KWARGS'

Calls ``bench.MODULE.run(**kwargs)`` with the keyword arguments its signature accepts and prints
every returned Result as one line prefixed with ``MARK``; the parent reads only those lines.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys

MARK = "@@bench-result "


def main() -> None:
    name, kwargs = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    module = importlib.import_module(f"bench.{name}")
    params = inspect.signature(module.run).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    chosen = {k: v for k, v in kwargs.items() if accepts_any or k in params}
    for result in module.run(**chosen) or []:
        print(MARK + result.line(), flush=True)


if __name__ == "__main__":
    main()
