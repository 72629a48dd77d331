"""The human table's fast path (:class:`cli.output.StreamingTable`, column by column, one format
string per line; ``secret list`` of 100,000 records) writes exactly what rendering each cell and
line one by one writes: escaping of control characters and terminal escapes, wide characters,
times in the one human form, ``-`` for none, widths fitted to ``COLUMNS`` and wrapped cells,
pages after the first."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from cli.output import StreamingTable

COLUMNS = [("path", "path"), ("kind", "kind"), ("version", "version"), ("updated_at", "updated")]

times = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.datetimes(),
    st.just("2026-12-02 20:07"),
    st.just("2026-13-45T99:99:99Z"),  # looks like a time, is not one
    # audit events' form, with microseconds: one cell per second on the fast path
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
    st.sampled_from(
        ["2026-02-30T00:00:00.000001Z", "2026-13-45T99:99:99.123456Z", "2026-02-28T23:59:59.999999Z"]
    ),
)
texts = st.one_of(
    st.text(),
    st.text(alphabet="ab /\x1b[31m\x07\t\n\u200b\u4e2d\u00e9 0123456789-:TZ", max_size=30),
    st.from_regex(r"[a-z0-9/._-]{1,40}", fullmatch=True),
)
values = st.one_of(texts, times, st.integers(), st.booleans(), st.none(), st.lists(texts, max_size=3))
plain_rows = st.lists(
    st.fixed_dictionaries(
        {
            "path": st.from_regex(r"[a-z][a-z0-9/._-]{0,40}", fullmatch=True),
            "kind": st.sampled_from(["access", "account", "note"]),
            "version": st.integers(min_value=1, max_value=10**6),
            "updated_at": st.just("2026-12-02T20:07:19Z"),
        }
    ),
    min_size=1,
    max_size=8,
)
audit_rows = st.lists(  # the audit log's times: many in one second, some that do not parse
    st.fixed_dictionaries(
        {
            "path": st.from_regex(r"[a-z]{1,8}", fullmatch=True),
            "kind": st.just("access"),
            "version": st.integers(min_value=1, max_value=9),
            "updated_at": st.builds(
                lambda second, micro: f"{second}.{micro:06d}Z",
                st.sampled_from(["2026-12-02T20:40:41", "2026-02-30T00:00:00", "2026-02-28T23:59:59"]),
                st.integers(min_value=0, max_value=999_999),
            ),
        }
    ),
    min_size=1,
    max_size=8,
)
mixed_rows = st.lists(st.fixed_dictionaries({k: values for k, _ in COLUMNS}), min_size=1, max_size=8)
pages = st.lists(st.one_of(plain_rows, audit_rows, mixed_rows), min_size=1, max_size=3)
widths = st.one_of(st.none(), st.integers(min_value=1, max_value=120))


def render(capsys, monkeypatch, pages_, columns, fast):
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", str(columns))
    printer = StreamingTable(COLUMNS, fast=fast)
    capsys.readouterr()
    for page in pages_:
        printer.rows(page)
    return capsys.readouterr().out


def test_the_fast_table_writes_exactly_what_the_cell_by_cell_table_writes(capsys, monkeypatch):
    @settings(max_examples=300, deadline=None)
    @given(pages, widths)
    def same(pages_, columns):
        fast = render(capsys, monkeypatch, pages_, columns, True)
        assert fast == render(capsys, monkeypatch, pages_, columns, False)

    same()


def test_the_fast_table_escapes_and_formats_like_the_reference(capsys, monkeypatch):
    """Fixed cases the property test may not draw: a terminal escape in a path, a wide
    character, a time in another form, a wrapped cell at a narrow width."""
    rows = [
        {
            "path": "a/\x1b]0;owned\x07",
            "kind": "access",
            "version": 1,
            "updated_at": "2026-12-02T20:07:19+00:00",
        },
        {"path": "\u4e2d\u6587/x", "kind": "note", "version": 2, "updated_at": datetime(2026, 1, 2, 3, 4, 5)},
        {"path": "b/" + "long" * 20, "kind": None, "version": 3, "updated_at": None},
    ]
    for columns in (None, 30, 200):
        fast = render(capsys, monkeypatch, [rows], columns, True)
        assert fast == render(capsys, monkeypatch, [rows], columns, False)
    out = render(capsys, monkeypatch, [rows], None, True)
    assert "\x1b" not in out and "\\x1b]0;owned\\x07" in out
    assert "2026-12-02T20:07:19Z" in out and "2026-01-02T03:04:05Z" in out
