"""Streaming JSON for the JSON-based exports (Bitwarden, 1PUX ``export.data``).

ijson (the yajl2 C backend) reads 64 KiB at a time and hands over one event at a time; readers
build one item at a time with :func:`build_value`, so memory stays bounded by the largest item,
not by the file (docs/import.md, "Memory").
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import IO, Any

import ijson

Event = tuple[str, str, Any]

#: the largest single item :func:`build_value` builds (a 1Password item with its notes and
#: fields); a record is at most 1 MiB of fields (vault/blob.py MAX_PLAINTEXT), so 16 MiB of JSON
#: for one item is already far beyond anything real and stops a crafted file from eating memory
MAX_ITEM_EVENTS = 1_000_000

JSON_ERRORS = (ijson.JSONError, UnicodeDecodeError, ValueError)


class _SkipBom:
    """A binary stream that hides a leading UTF-8 byte order mark (some tools write one)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        head = raw.read(3)
        self._head = b"" if head == codecs.BOM_UTF8 else head

    def read(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            if size is None or size < 0:
                return head + self._raw.read()
            if size <= len(head):
                self._head = head[size:]
                return head[:size]
            return head + self._raw.read(size - len(head))
        return self._raw.read(size)


def events(raw: IO[bytes]) -> Iterator[Event]:
    """ijson parse events of a UTF-8 JSON byte stream (floats as float, not Decimal)."""
    stream = _SkipBom(raw)
    return ijson.parse(stream, use_float=True)


def items(raw: IO[bytes], prefix: str) -> Iterator[Any]:
    """The values at ``prefix`` (``"items.item"``), one at a time, built by ijson's C backend."""
    return ijson.items(_SkipBom(raw), prefix, use_float=True)


def build_value(stream: Iterator[Event], event: str, value: Any) -> Any:
    """Build the JSON value that starts with (``event``, ``value``), consuming its events from
    ``stream``. Raises ValueError when the value has more than MAX_ITEM_EVENTS events."""
    builder = ijson.ObjectBuilder()
    builder.event(event, value)
    if event not in ("start_map", "start_array"):
        return builder.value
    depth = 1
    for count, (_, ev, val) in enumerate(stream, 1):
        if count > MAX_ITEM_EVENTS:
            raise ValueError("item too large")
        builder.event(ev, val)
        if ev in ("start_map", "start_array"):
            depth += 1
        elif ev in ("end_map", "end_array"):
            depth -= 1
            if depth == 0:
                return builder.value
    raise ijson.IncompleteJSONError("premature EOF")


def skip_value(stream: Iterator[Event], event: str) -> None:
    """Consume the events of a value without building it."""
    if event not in ("start_map", "start_array"):
        return
    depth = 1
    for _, ev, _ in stream:
        if ev in ("start_map", "start_array"):
            depth += 1
        elif ev in ("end_map", "end_array"):
            depth -= 1
            if depth == 0:
                return
    raise ijson.IncompleteJSONError("premature EOF")


def explain(exc: BaseException) -> str:
    """A short reason for a JSON failure, never quoting the file's content."""
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    text = str(exc).lower()
    if "item too large" in text:
        return "an item is too large"
    if "premature eof" in text or "incomplete" in text:
        return "the file ends early (truncated?)"
    return "not valid JSON"
