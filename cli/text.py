"""Text for the terminal and for ``--json``, without click: shared by :mod:`cli.output` (the click
commands) and :mod:`cli.fastget` (``cvault secret get`` without click), so both print the same
bytes."""

from __future__ import annotations

import sys
from typing import Any


def json_text(data: Any) -> str:
    """The one ``--json`` rendering: indented, keys sorted, non-ASCII kept."""
    import json

    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def safe(text: Any) -> str:
    """Escape control characters so no stored value can forge terminal output."""
    s = "" if text is None else str(text)
    if s.isprintable():  # the common case, in C: nothing to escape
        return s
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in s)


def for_terminal(text: Any, raw: bool = False) -> str:
    """A stored value printed on its own (``secret get --field``): on a terminal, control
    characters are escaped (ESC shows as the four characters ``\\x1b``: a stored escape sequence cannot
    rewrite the screen, retitle the window or fake a prompt) and line breaks kept; piped, or with
    ``--raw``, the value exactly as stored (issue 11)."""
    s = "" if text is None else str(text)
    if raw or not sys.stdout.isatty():
        return s
    return "\n".join(safe(line) for line in s.split("\n"))


def echo(text: str, *, err: bool = False, color: bool | None = None) -> None:
    """``click.echo(text, err=err, color=color)`` for a ``str``, without importing click.

    click.echo writes the text and a newline to the stream and flushes it; the only thing it may
    change is ANSI escape sequences, which it strips when ``color`` is not True and the stream is
    not a terminal. So text with an ESC in it goes to click.echo itself (imported then), whatever
    click's version does with it; any other text is written as click.echo writes it. Callers make
    sure the streams are ones click would use as they are (:func:`cli.fastget.streams_are_plain`)."""
    if "\x1b" in text and not color:
        import click

        click.echo(text, err=err, color=color)
        return
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()
