"""Rendering: stable JSON with --json, aligned tables for people, progress bars on stderr."""

from __future__ import annotations

import re
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
    (and the titles), later cells wrap to them; nothing is held beyond one page.

    A page is rendered column by column: a column of plain text (every cell printable, none that
    may be a time) or of integers is its own cells, the others go cell by cell through
    :func:`cell`; a page whose cells all fit their widths is written with one format string per
    line. ``fast=False`` renders every cell and line one by one (the reference the fast path is
    tested against, byte for byte: tests/cli/test_table_fast_path.py)."""

    def __init__(self, columns: Sequence[tuple[str, str]], *, fast: bool = True):
        self.columns = columns
        self.widths: list[int] | None = None
        self.empty = True
        self.fast = fast

    def rows(self, rows: Sequence[dict]) -> None:
        if not rows:
            return
        if not self.fast:
            return self._rows_one_by_one(rows)
        cols = [_cells([r.get(key) for r in rows]) for key, _ in self.columns]
        longest = [max(map(len, c)) for c in cols]
        titles = None
        if self.widths is None:
            titles = [title.upper() for _, title in self.columns]
            natural = [max(len(t), n) for t, n in zip(titles, longest, strict=True)]
            limit = _width()
            floors = None
            if limit is not None and sum(natural) + 2 * (len(natural) - 1) > limit:
                floors = [
                    max(4, min(20, max(max(map(len, " ".join(c).split()), default=0), len(t))))
                    for t, c in zip(titles, cols, strict=True)
                ]  # _word_floors, column by column
            self.widths = _fit(natural, limit, floors)
        self.empty = False
        widths = self.widths
        if all(n <= w for n, w in zip(longest, widths, strict=True)) and (
            titles is None or all(len(t) <= w for t, w in zip(titles, widths, strict=True))
        ):  # no cell wraps: one format per line
            pattern = "  ".join(f"{{:<{w}}}" for w in widths)
            out = list(map(str.rstrip, map(pattern.format, *cols)))
            if titles is not None:
                out.insert(0, pattern.format(*titles).rstrip())
            click.echo("\n".join(out))
            return
        lines: list[Sequence[str]] = list(zip(*cols, strict=True))
        if titles is not None:
            lines.insert(0, titles)
        click.echo("\n".join(_lines(lines, widths)))

    def _rows_one_by_one(self, rows: Sequence[dict]) -> None:
        cells = [[cell(r.get(key)) for key, _ in self.columns] for r in rows]
        lines = cells
        if self.widths is None:
            titles = [title.upper() for _, title in self.columns]
            natural = [max(len(t), *(len(c[i]) for c in cells)) for i, t in enumerate(titles)]
            self.widths = _fit(natural, _width(), _word_floors(titles, cells))
            lines = [titles, *cells]
        self.empty = False
        click.echo("\n".join(_lines(lines, self.widths)))  # one write per page, not one per line


def _lines(rows: Sequence[Sequence[str]], widths: list[int]) -> list[str]:
    """The text lines of rows of cells: each cell padded to its column's width, cells too long for
    it wrapped onto more lines."""
    out = []
    for row in rows:
        if all(len(v) <= w for v, w in zip(row, widths, strict=True)):  # no cell wraps
            out.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
            continue
        parts = [_wrap(v, w) for v, w in zip(row, widths, strict=True)]
        for n in range(max(len(p) for p in parts)):
            line = [(p[n] if n < len(p) else "").ljust(w) for p, w in zip(parts, widths, strict=True)]
            out.append("  ".join(line).rstrip())
    return out


def cell(value: Any) -> str:
    """One table cell: the value as people read it (:func:`cli.render.human_value`: times in the
    one format, ``-`` for none), control characters escaped (:func:`cli.text.safe`)."""
    from cli.render import human_value

    return safe(human_value(value))


#: the vault's own form of a time with microseconds (audit events' ``at``), ASCII digits only
_MICRO_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


class _Cells(dict):
    """``memo[value]``: :func:`cell` of ``value``, computed once per distinct text (the times of a
    listing repeat: records written in one import share their second). A time in the vault's
    microsecond form (``2026-12-02T20:40:41.311577Z``: every audit event's differs) is computed
    once per second: its cell is that of the same second with ``.000000`` (six ASCII digits
    parse whatever they are, and the human form drops them), unless that second does not parse
    (then ``when`` returns the text unchanged, and so each such text is its own cell)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, str | None] = {}

    def __missing__(self, value: str) -> str:
        text = None
        if _MICRO_TIME.fullmatch(value):
            second = value[:19]
            if second not in self.seconds:
                whole = second + ".000000Z"
                human = cell(whole)
                self.seconds[second] = None if human == whole else human
            text = self.seconds[second]
        if text is None:
            text = cell(value)
        self[value] = text
        return text


def _cells(values: list[Any]) -> list[str]:
    """:func:`cell` of each value, column by column: integers are their digits, and text that is
    printable and cannot be a time (it does not start with a digit or a space: ``when``) is
    itself; the rest goes through :func:`cell`."""
    kinds = set(map(type, values))
    if kinds == {int}:
        return list(map(int.__repr__, values))
    if kinds == {str} and "".join(values).isprintable():
        memo = _Cells()
        return [memo[v] if not v or v[0].isdigit() or v[0].isspace() else v for v in values]
    return [cell(v) for v in values]


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
