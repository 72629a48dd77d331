"""Rendering: stable JSON with --json, aligned tables for people, progress bars on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from cli.text import fields_block as text_fields_block
from cli.text import json_text, safe

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
#: ``--totp CODE`` for commands that read secret values (step-up, handled by CliState.with_stepup)
totp_option = click.option(
    "--totp",
    "totp",
    metavar="CODE",
    help="TOTP code for step-up, if the last one is older than the window (asked for in a terminal).",
)


def wants_json(as_json: bool = False) -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().obj if ctx else None
    return bool(as_json or (root is not None and getattr(root, "json", False)))


def emit(data: Any, as_json: bool, human: Callable[[Any], None] | None = None) -> None:
    if wants_json(as_json) or human is None:
        click.echo(json_text(data))
    else:
        human(data)


def emit_line(data: Any, as_json: bool, line: Callable[[Any], str]) -> None:
    """:func:`emit` for the commands whose human output is one line built from the result (team
    and membership changes, role grants, enable/disable...)."""
    emit(data, as_json, lambda d: click.echo(line(d)))


def _width() -> int | None:
    """The width tables must fit: ``COLUMNS`` when set, else the terminal's; ``None`` (no limit)
    when stdout is not a terminal and ``COLUMNS`` is unset, so piped output keeps whole lines."""
    import os

    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        import shutil

        return shutil.get_terminal_size().columns
    return None


def _fit(widths: list[int], limit: int | None, floors: list[int] | None = None) -> list[int]:
    """Narrow the widest column, one character at a time, until the row fits ``limit``: long
    free text wraps first, short columns keep their width. A column first keeps its longest word
    (up to 20 characters: a time, a name) whole; only if the table still does not fit do columns
    narrow further, down to 4."""
    widths = list(widths)
    if limit is None:
        return widths
    for floor in (floors or [4] * len(widths)), [4] * len(widths):
        while sum(widths) + 2 * (len(widths) - 1) > limit:
            wider = [j for j in range(len(widths)) if widths[j] > floor[j]]
            if not wider:
                break
            i = max(wider, key=lambda j: (widths[j], j))
            widths[i] -= 1
    return widths


def _word_floors(titles: list[str], cells: list[list[str]]) -> list[int]:
    """Per column: its longest word (title included), at most 20 and at least 4 characters."""
    floors = []
    for i, title in enumerate(titles):
        longest = max((len(w) for c in cells for w in c[i].split()), default=0)
        floors.append(max(4, min(20, max(longest, len(title)))))
    return floors


def _wrap(text: str, width: int) -> list[str]:
    if len(text) <= width:
        return [text]
    import textwrap

    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]


def table(rows: Sequence[dict], columns: Sequence[tuple[str, str]], empty: str = "(none)") -> None:
    """An aligned table; times in the one human format, ``-`` for none. It fits ``COLUMNS`` (or the
    terminal) by wrapping the widest cells onto more lines: nothing is cut off."""
    if not rows:
        click.echo(empty)
        return
    StreamingTable(columns).rows(rows)


class StreamingTable:
    """:func:`table` for rows that arrive in pages: the column widths come from the first page
    (and the titles), later cells wrap to them; nothing is held beyond one page."""

    def __init__(self, columns: Sequence[tuple[str, str]]):
        self.columns = columns
        self.widths: list[int] | None = None
        self.empty = True

    def rows(self, rows: Sequence[dict]) -> None:
        from cli.render import human_value

        if not rows:
            return
        cells = [[safe(human_value(r.get(key))) for key, _ in self.columns] for r in rows]
        lines = cells
        if self.widths is None:
            titles = [title.upper() for _, title in self.columns]
            natural = [max(len(t), *(len(c[i]) for c in cells)) for i, t in enumerate(titles)]
            self.widths = _fit(natural, _width(), _word_floors(titles, cells))
            lines = [titles, *cells]
        self.empty = False
        out = []
        widths = self.widths
        for row in lines:
            if all(len(v) <= w for v, w in zip(row, widths, strict=True)):  # no cell wraps
                out.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
                continue
            parts = [_wrap(v, w) for v, w in zip(row, widths, strict=True)]
            for n in range(max(len(p) for p in parts)):
                line = [(p[n] if n < len(p) else "").ljust(w) for p, w in zip(parts, widths, strict=True)]
                out.append("  ".join(line).rstrip())
        click.echo("\n".join(out))  # one write per page, not one per line


def fields_block(data: dict[str, Any], raw: bool = False) -> None:
    """``label  value`` lines (:func:`cli.text.fields_block`, written with click.echo)."""
    text_fields_block(data, raw, click.echo)


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
