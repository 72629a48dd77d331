"""review7 R7-4 (goes in tests/integrity/): 7bcf49d made every *meta* value's decoder strict
(never ``bytes(value)``: a number allocates that many bytes, a string has none), but the audit
rows the same readers use are still converted blindly: ``vault/audit/mark.py`` ``_entry_hash``
(``bytes(row[0])`` of ``audit_events.entry_hash``, read by find_break at every unsealed open),
``vault/audit/log.py`` (``bytes(last[1])`` of the chain head at every append) and the verifier.
A file writer (A4, no key) who sets one entry's ``entry_hash`` to TEXT, a REAL or a large
INTEGER gets "internal error: TypeError/MemoryError" (exit 1) from ``secret get``, ``audit
verify`` and ``doctor`` (doctor reports nothing), and an INTEGER of 2**31 makes each process
allocate 2 GiB before "a number is out of range" (exit 2). Guarantee 48 / rule: an integrity
failure is exit 6 and one line. The second test: the same for the ``audit_checkpoints`` columns
(read by find_break's newest-checkpoint digest and by the verifier; ``recovery``/``unproven``
text that is no JSON is JSONDecodeError). The third: two time columns (``records.updated_at``,
outside the row MAC; ``clients.created_at``) the same way. FAILED on main 711ff9d; fixed by the
strict readers vault.audit.stored, Checkpoint.from_row and vault.clock.stored_epoch."""

from __future__ import annotations

import pytest

from tests.helpers import file_sql
from tests.integrity.test_meta_values import _assert_one_line, _commands, acme  # noqa: F401


@pytest.mark.parametrize("value", ["'abc'", "1.5", "10000000000000", "2147483648"])
def test_an_entry_hash_of_another_type_is_exit_6_one_line(acme, value):  # noqa: F811
    vdir, env = acme
    file_sql(vdir, f"UPDATE audit_events SET entry_hash = {value}")
    for name, result in _commands(vdir, env):
        line = _assert_one_line(result, 6)  # main: 1 "internal error: TypeError"/"MemoryError", or 2
        assert "integrity" in line or name == "doctor", (name, line)


#: (column of audit_checkpoints, value): each "internal error" on main (TypeError, MemoryError,
#: JSONDecodeError) from secret get (both paths) and/or audit verify and doctor
CHECKPOINT_CASES = [
    ("entry_hash", "'abc'"),
    ("entry_hash", "10000000000000"),
    ("seq", "'abc'"),
    ("base_hash", "1.5"),
    ("signature", "'abc'"),
    ("signature", "10000000000000"),
    ("prev_checkpoint", "'abc'"),
    ("base_checkpoint", "1.5"),
    ("recovery", "'abc'"),
    ("unproven", "'abc'"),
]


@pytest.mark.parametrize(("column", "value"), CHECKPOINT_CASES)
def test_a_checkpoint_column_of_another_type_is_exit_6_one_line(acme, column, value):  # noqa: F811
    vdir, env = acme
    file_sql(vdir, f"UPDATE audit_checkpoints SET {column} = {value}")
    for _name, result in _commands(vdir, env):
        _assert_one_line(result, result.returncode if result.returncode in (0, 6) else 6)


#: (table, column, value, command): found by a sweep of every column of ten tables with TEXT and
#: 10**13 through secret get/list: "internal error: TypeError/ValueError" (exit 1) on main
ROW_CASES = [
    ("records", "updated_at", "'abc'", ("secret", "list", "acme")),
    ("records", "updated_at", "10000000000000", ("secret", "list", "acme")),
    ("clients", "created_at", "'abc'", ("secret", "get", "acme", "office/firewall")),
    ("clients", "created_at", "10000000000000", ("secret", "list", "acme")),
]


@pytest.mark.parametrize(("table", "column", "value", "command"), ROW_CASES)
def test_a_time_column_of_another_type_is_not_internal_error(acme, table, column, value, command):  # noqa: F811
    from tests.helpers import run_cli

    vdir, env = acme
    file_sql(vdir, f"UPDATE {table} SET {column} = {value}")
    result = run_cli(*command, env=env)
    _assert_one_line(result, result.returncode if result.returncode in (0, 6) else 6)


@pytest.mark.parametrize("column", ["prev_hash", "entry_hash", "detail_sealed"])
@pytest.mark.parametrize("value", ["'abc'", "10000000000000"])
def test_an_exported_entry_of_another_type_is_not_internal_error(acme, column, value):  # noqa: F811
    """``audit export`` converted an entry's hashes and sealed detail with ``bytes()`` (2**31 or
    10**13 allocates that much, text is a TypeError): an entry between the mark's checkpoint
    and head, which the open's mark check does not read."""
    from tests.helpers import run_cli

    vdir, env = acme
    file_sql(vdir, f"UPDATE audit_events SET {column} = {value} WHERE seq = 2")
    result = run_cli("audit", "export", "--format", "jsonl", env=env)
    _assert_one_line(result, result.returncode if result.returncode in (0, 6) else 6)
