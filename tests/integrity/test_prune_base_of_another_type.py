"""review8 R8-4 (low): ``AuditLog._chain_start`` (where the chain starts: the newest prune base)
read ``audit_checkpoints.base_seq`` raw and did ``base_seq + 1``: a file writer's prune row with a
TEXT, NULL or REAL base, or one at 2**63 - 1 (the next entry's seq no longer fits an SQLite
INTEGER), was a TypeError / OverflowError / sqlite error ("internal error", exit 1) in every
unsealed command of a young vault (its mark's checkpoint is the signed empty log, seq 0, whose
hash is the chain start's), not the integrity failure. Fixed: every reader of ``base_seq`` /
``base_hash`` takes them through the strict reader (:meth:`Checkpoint.from_row`: an INTEGER
from 0 to the checkpoint's own seq, below 2**63 - 1; a 32-byte BLOB, both or neither); anything
else is exit 6, one line. Guarantee 48."""

from __future__ import annotations

import pytest

from tests.helpers import file_sql
from tests.integrity.test_meta_values import _assert_one_line, _commands, acme  # noqa: F401

#: base_seq values of the planted prune row (SQL literals) and its own seq (None: the head's)
BASES = {
    "text": ("'abc'", None),
    "null": ("NULL", None),
    "real": ("1.5", None),
    "max_integer": (str(2**63 - 1), str(2**63 - 1)),
    "negative": ("-5", None),
    "past_its_own_seq": ("1000000", "1"),
}
#: base_hash values of the planted prune row
HASHES = {"text": "'abc'", "short": "zeroblob(31)", "null": "NULL"}
#: how the file writer makes the chain start matter: the mark row deleted (the alarm names the
#: chain start as the first bad entry), the entries up to the mark's checkpoint deleted (the mark
#: check asks the chain start for the hash there), or every entry (the next one goes after it)
ROUTES = {
    "mark_deleted": "DELETE FROM meta WHERE key = 'audit_mark'",
    "entries_deleted": (
        "DELETE FROM audit_events WHERE seq <= (SELECT max(seq) FROM audit_checkpoints WHERE id > 0)"
    ),
    # the next entry goes after the chain start: base_seq + 1 (2**63 no longer fits an INTEGER)
    "all_entries_deleted": "DELETE FROM audit_events",
}


def _plant_prune(vdir, route: str, base_seq: str, base_hash: str = "zeroblob(32)", seq: str | None = None):
    """One prune row with a low id (so it is not the newest checkpoint row), then the route."""
    file_sql(
        vdir,
        "INSERT INTO audit_checkpoints (id, seq, entry_hash, at, kind, base_seq, base_hash, signature)"
        f" VALUES (-1, {seq or '(SELECT max(seq) FROM audit_events)'}, zeroblob(32),"
        f" '2026-01-01T00:00:00Z', 'prune', {base_seq}, {base_hash}, zeroblob(64))",
    )
    file_sql(vdir, ROUTES[route])


def _assert_exit_6_everywhere(vdir, env) -> None:
    for name, result in _commands(vdir, env):
        line = _assert_one_line(result, 6)  # before: 1 "internal error: TypeError/OverflowError"
        # audit verify names what it found (exit 6, e.g. "checkpoint N has an invalid signature")
        assert "integrity" in line or name in ("doctor", "audit verify"), (name, line)


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("case", sorted(BASES))
def test_a_prune_base_seq_of_another_type_is_exit_6_one_line(acme, case, route):  # noqa: F811
    vdir, env = acme
    base_seq, seq = BASES[case]
    _plant_prune(vdir, route, base_seq, seq=seq)
    _assert_exit_6_everywhere(vdir, env)


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("case", sorted(HASHES))
def test_a_prune_base_hash_of_another_type_is_exit_6_one_line(acme, case, route):  # noqa: F811
    vdir, env = acme
    _plant_prune(vdir, route, "1", HASHES[case])
    _assert_exit_6_everywhere(vdir, env)
