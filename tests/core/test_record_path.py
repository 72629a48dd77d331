"""``vault.names.record_path`` checks a whole path with one pattern (issue 20 item 5: one regex
match per segment was a measurable part of a bulk import). It must accept and refuse exactly what
the per-segment rule does, with the same message: the rule is compared here with that rule,
written out as docs/cli.md states it (1-256 printable characters; 1-8 segments split at '/', each
a PATH_SEGMENT, none '.' or '..')."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault import names
from vault.errors import InvalidInput

_SEGMENT = re.compile(names.PATH_SEGMENT)


def _rule(path: str) -> str:
    if not path or len(path) > names.MAX_PATH or not path.isprintable():
        return "characters"
    segments = path.split("/")
    if len(segments) > 8 or any(s in (".", "..") or not _SEGMENT.fullmatch(s) for s in segments):
        return "segments"
    return "ok"


def _checked(path: str) -> str:
    try:
        names.record_path(path)
    except InvalidInput as exc:
        return "characters" if "1-256 printable" in exc.message else "segments"
    return "ok"


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="aZ09@+=,_-. /\n\x00é\u200b", max_size=40))
def test_the_one_pattern_is_the_per_segment_rule(path):
    assert _checked(path) == _rule(path)


@pytest.mark.parametrize(
    "path",
    [
        "a/" * 7 + "b",
        "a/" * 8 + "b",
        "x" * 64,
        "x" * 65,
        "a/" + "x" * 64,
        "a/" + "x" * 65,
        ".",
        "..",
        "./a",
        "a/..",
        "a/.b",
        "a/b.",
        "a//b",
        "/a",
        "a/",
        "a b/c",
        " a",
        "a\n",
        "office/firewall",
    ],
)
def test_edges(path):
    assert _checked(path) == _rule(path)
