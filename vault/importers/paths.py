"""Record paths from entry titles: sanitised and de-duplicated deterministically (docs/import.md).

A record path segment (``vault.names.PATH_SEGMENT``) is 1-64 characters of ASCII letters, digits
and `` @+=,._-``, not starting with a space or a dot. Titles from other tools are free text
(unicode, emoji, slashes), so a title becomes a segment by these steps, always the same for the same
title:

1. Unicode NFKD, combining marks dropped (``Büro`` -> ``Buro``, ``ﬁ`` -> ``fi``);
2. whitespace becomes a space, every other character outside the set becomes ``-``;
3. a run of dashes and spaces collapses to one dash (one space if it holds no dash); leading
   spaces, dots and dashes and trailing spaces and dashes are removed; the result is
   cut to 64 characters;
4. a title left with no letter or digit (all emoji, Arabic, CJK...) becomes ``item-`` + the first
   10 hex digits of SHA-256 of the title, so it is stable across runs and distinct per title; an
   empty title becomes ``untitled``.

Two titles that land on the same path (compared case-insensitively, so ``Admin`` and ``admin`` do
not become two records that look alike) get ``-2``, ``-3``... in source order. The writer must
allocate again per target client when several hints map to one client: :class:`PathAllocator` is
the same tool for that.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from vault.names import record_path

MAX_SEGMENT = 64
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 @+=,._-")
# a segment may start with "-", but a leading dash is nearly always a replaced emoji or symbol
_FIRST_ALLOWED = _ALLOWED - {" ", ".", "-"}
_RUNS = re.compile(r"[ -]{2,}")
#: a title the steps below would return unchanged: allowed characters only, a proper first
#: character, no trailing space or dash, at most 64 characters, at least one letter or digit
_UNCHANGED = re.compile(r"^(?=[^\n]*[A-Za-z0-9])[A-Za-z0-9@+=,_][A-Za-z0-9 @+=,._-]{0,63}(?<![ -])$")


def sanitize_segment(title: str) -> str:
    """The record path segment for ``title`` (steps 1-4 of the module docstring)."""
    if _UNCHANGED.match(title) and not _RUNS.search(title):
        return title  # most titles are already fine: skip the per-character walk
    decomposed = unicodedata.normalize("NFKD", title)
    chars = []
    for ch in decomposed:
        if unicodedata.category(ch) == "Mn":
            continue
        if ch in _ALLOWED:
            chars.append(ch)
        elif ch.isspace():
            chars.append(" ")
        else:
            chars.append("-")
    text = _RUNS.sub(lambda m: "-" if "-" in m.group(0) else " ", "".join(chars))
    text = _trim(text)
    if not any(ch.isalnum() for ch in text):
        if not title:
            return "untitled"
        return "item-" + hashlib.sha256(title.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return text


def _trim(text: str) -> str:
    start = 0
    while start < len(text) and text[start] not in _FIRST_ALLOWED:
        start += 1
    text = text[start : start + MAX_SEGMENT]
    return text.rstrip(" -")


class PathAllocator:
    """Hands out unique record paths within one client (or one client hint), in call order."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def allocate(self, title: str) -> tuple[str, str | None]:
        """Return ``(path, reason)``: ``reason`` is ``None`` when the title was used unchanged,
        else ``"sanitised"``, ``"duplicate"`` or ``"sanitised, duplicate"``."""
        base = sanitize_segment(title)
        reasons = [] if base == title else ["sanitised"]
        path = base
        n = 1
        while path.lower() in self._taken:
            n += 1
            suffix = f"-{n}"
            path = _trim(base[: MAX_SEGMENT - len(suffix)]) + suffix
        if n > 1:
            reasons.append("duplicate")
        self._taken.add(path.lower())
        record_path(path)  # the contract of this module: never hand out an invalid path
        return path, (", ".join(reasons) or None)

    def reserve(self, path: str) -> None:
        """Mark an existing path (e.g. already in the vault) as taken."""
        self._taken.add(path.lower())
