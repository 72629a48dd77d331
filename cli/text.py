"""Text for the terminal and for ``--json``, without click: shared by :mod:`cli.output` (the click
commands) and :mod:`cli.fastget` (``cvault secret get`` without click), so both print the same
bytes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def json_text(data: Any) -> str:
    """The one ``--json`` rendering: indented, keys sorted, non-ASCII kept
    (``json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)``, byte for byte).

    With an indent the json module encodes in Python, object by object (2.2 s for the 100,000
    records of a ``secret list --json``); a list of flat objects of strings, integers, booleans
    and nulls, or lists of them (the listings, search hits), is written here with the C string
    encoder instead, column by column when every object has the same keys
    (tests/cli/test_json_shapes.py compares the two on generated data)."""
    import json

    if isinstance(data, list) and data and all(type(row) is dict for row in data):
        text = _listing(data)
        if text is not None:
            return text
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def _json_scalar(value: Any) -> str | None:
    """A string, integer, boolean or null as json.dumps writes it; ``None`` for anything else."""
    from json.encoder import encode_basestring

    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return None


def _json_member(value: Any) -> str | None:
    """A member of a listed object as json.dumps(indent=2) writes it there: a scalar, or a list
    of scalars (a search hit's ``matched`` fields), one element a line; ``None`` for anything
    else."""
    if type(value) is not list:
        return _json_scalar(value)
    if not value:
        return "[]"
    items = list(map(_json_scalar, value))
    if None in items:
        return None
    return "[\n      " + ",\n      ".join(items) + "\n    ]"  # type: ignore[arg-type]  # no None left


def _listing(data: list[dict]) -> str | None:
    """:func:`json_text` of a non-empty list of dicts of scalars, or ``None`` (anything else)."""
    from json.encoder import encode_basestring

    first = data[0].keys()
    if first and all(type(k) is str for k in first) and all(map(first.__eq__, map(dict.keys, data))):
        keys = sorted(first)
        texts = []
        for key in keys:
            values = [row[key] for row in data]
            kinds = set(map(type, values))
            if kinds == {str}:
                texts.append(list(map(encode_basestring, values)))
            elif kinds == {int}:
                texts.append(list(map(int.__repr__, values)))
            elif (
                kinds == {list}
                and set(map(len, values)) == {1}
                and set(map(type, firsts := [v[0] for v in values])) == {str}
            ):
                # a column of one-string lists (a search's ``matched``, 8,400 hits): in C, as above
                texts.append(["[\n      " + text + "\n    ]" for text in map(encode_basestring, firsts)])
            else:
                column = list(map(_json_member, values))
                if None in column:
                    return None
                texts.append(column)  # type: ignore[arg-type]  # no None left
        pattern = (  # a format string: the braces of the object and of the key names doubled
            "  {{\n"
            + ",\n".join(
                "    " + encode_basestring(k).replace("{", "{{").replace("}", "}}") + ": {}" for k in keys
            )
            + "\n  }}"
        )
        return "[\n" + ",\n".join(map(pattern.format, *texts)) + "\n]"
    items = []
    for row in data:
        fields = []
        for key in sorted(row):
            text = _json_member(row[key])
            if text is None or type(key) is not str:
                return None
            fields.append(f"    {encode_basestring(key)}: {text}")
        items.append("  {\n" + ",\n".join(fields) + "\n  }" if fields else "  {}")
    return "[\n" + ",\n".join(items) + "\n]"


#: the one human form itself (the facade's own rfc3339 output): returned as it is
_HUMAN_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
#: an ISO 8601 date-time as the facade returns them (offset or Z, optional fraction)
_ISO_TIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$"


def when(value: Any) -> str:
    """The human form of a point in time: ``2027-03-31T23:59:59Z`` (UTC, seconds). ``None`` is
    ``-``; text that is not an ISO 8601 date-time is returned unchanged (docs/cli.md "Output")."""
    import re
    from datetime import UTC, datetime

    if value is None or value == "":
        return "-"
    if isinstance(value, str) and not value[:4].isdigit() and not value[:1].isspace():
        return value  # not a date-time (paths, names, kinds: most cells of a table)
    if isinstance(value, str) and re.fullmatch(_HUMAN_TIME, value):
        return value
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, str) and re.match(_ISO_TIME, value.strip()):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            return value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    else:
        return str(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def fields_block(data: dict[str, Any], raw: bool, echo: Callable[[str], object]) -> None:
    """``label  value`` lines. Facade data gets human labels (``sla_end`` -> ``sla end``) and values
    (:func:`cli.render.human_value`); ``raw=True`` (a record's own fields) shows keys and values
    exactly as stored, control characters escaped."""
    if raw:
        shown = data
    else:
        from cli.render import human_value, label

        shown = {label(k): human_value(v) for k, v in data.items()}
    width = max((len(k) for k in shown), default=0)
    for key, value in shown.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        text = str(value)
        if "\n" in text:
            echo(f"{safe(key)}:")
            for line in text.splitlines():
                echo(f"  {safe(line)}")
        else:
            echo(f"{safe(key).ljust(width)}  {safe(text)}")


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
