"""Rendering: stable JSON with --json, aligned tables for people, progress bars on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def wants_json(as_json: bool = False) -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().obj if ctx else None
    return bool(as_json or (root is not None and getattr(root, "json", False)))


def emit(data: Any, as_json: bool, human: Callable[[Any], None] | None = None) -> None:
    if wants_json(as_json) or human is None:
        click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        human(data)


def safe(text: Any) -> str:
    """Escape control characters so no stored value can forge terminal output."""
    s = "" if text is None else str(text)
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in s)


def table(rows: Sequence[dict], columns: Sequence[tuple[str, str]], empty: str = "(none)") -> None:
    if not rows:
        click.echo(empty)
        return
    cells = [[safe(r.get(key, "")) for key, _ in columns] for r in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (_, title) in enumerate(columns)]
    click.echo(
        "  ".join(title.upper().ljust(w) for (_, title), w in zip(columns, widths, strict=True)).rstrip()
    )
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


def fields_block(data: dict[str, Any]) -> None:
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        text = str(value)
        if "\n" in text:
            click.echo(f"{key}:")
            for line in text.splitlines():
                click.echo(f"  {safe(line)}")
        else:
            click.echo(f"{key.ljust(width)}  {safe(text)}")


@contextmanager
def progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr when it is a terminal; silent otherwise.

    Yields ``update(done, total)``; the bar is drawn from the first update, when the total is known."""
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    state: dict = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = click.progressbar(length=total, label=label, file=sys.stderr)
            state["bar"].__enter__()
            state["last"] = 0
        state["bar"].update(done - state["last"])
        state["last"] = done

    try:
        yield update
    finally:
        if "bar" in state:
            state["bar"].__exit__(None, None, None)
