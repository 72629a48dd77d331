"""Item 5 of issue 12: a vault whose schema or format version this build does not support is
refused with one line, exit 6, never a traceback or "internal error"."""

import sqlite3

import pytest

from vault.store.db import latest_schema_version


def _one_line_exit_6(proc, *words):
    assert proc.returncode == 6, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _edit(vdir, *statements):
    conn = sqlite3.connect(vdir.home / "vault.db")
    for sql in statements:
        conn.execute(sql)
    conn.commit()
    conn.close()


def test_schema_newer_than_this_build(vdir):
    _edit(vdir, f"PRAGMA user_version={latest_schema_version() + 1}")
    _one_line_exit_6(vdir.cli("client", "list"), "newer", "upgrade cvault")


@pytest.mark.parametrize("older", [2, 3])
def test_schema_version_older_than_the_tables(vdir, older):
    # an older number written over this build's tables: upgrading from it cannot work
    _edit(vdir, f"PRAGMA user_version={older}")
    _one_line_exit_6(vdir.cli("client", "list"), f"version {older}")


def test_schema_version_zero_over_existing_tables(vdir):
    _edit(vdir, "PRAGMA user_version=0")
    _one_line_exit_6(vdir.cli("client", "list"), "no cvault schema version")


@pytest.mark.parametrize(
    ("value", "word"), [("2", "newer"), ("0", "older"), ("'one'", "unreadable"), (None, "missing")]
)
def test_format_version_not_this_builds(vdir, value, word):
    if value is None:
        _edit(vdir, "DELETE FROM meta WHERE key = 'format_version'")
    else:
        _edit(vdir, f"UPDATE meta SET value = {value} WHERE key = 'format_version'")
    _one_line_exit_6(vdir.cli("client", "list"), word)
    _one_line_exit_6(vdir.cli("audit", "pubkey"), word)
