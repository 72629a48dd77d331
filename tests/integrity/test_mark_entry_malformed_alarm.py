"""The loose end after review8: a malformed ``entry_hash`` (TEXT, a REAL, a big INTEGER, a BLOB
that is not 32 bytes; NULL the column refuses) of the audit entry at the high-water mark's own
seq (its head, or its checkpoint's entry) was a plain IntegrityFailure from the strict reader
(vault.audit.stored.entry_hash) inside the mark check: exit 6, but no alarm recorded, so the next
command found it again from scratch and ``audit recover`` had nothing to acknowledge, where every
other malformed entry (vault.audit.mark.check_segment) is the recorded alarm "entry N is
malformed". Fixed: the mark check (vault.audit.mark._entry_hash, and the entries after the head it
reads) and the append's read of the chain head raise that alarm; the append records it.
The last test: an entry planted at seq 2**63 - 1 after the head (no entry fits after it) was exit
2 "a number is out of range" from every append; now the same recorded alarm. Guarantee 48."""

from __future__ import annotations

import pytest

from tests.helpers import file_sql, run_cli
from tests.integrity.test_meta_values import _assert_one_line, _commands, acme  # noqa: F401
from vault.audit import mark as hwm

VALUES = {"text": "'abc'", "real": "1.5", "integer": "10000000000000", "short_blob": "zeroblob(31)"}
#: which entry: the newest (the mark's head), or the one the mark's checkpoint signed
WHICH = {
    "head": "(SELECT max(seq) FROM audit_events)",
    "checkpoint": "(SELECT max(seq) FROM audit_checkpoints)",
}


def _recorded_alarm(vdir) -> object:
    rows = file_sql(vdir, "SELECT value FROM meta WHERE key = ?", (hwm.ALARM_KEY,))
    return rows[0][0] if rows else None


@pytest.mark.parametrize("which", sorted(WHICH))
@pytest.mark.parametrize("value", sorted(VALUES))
def test_a_malformed_entry_hash_at_the_mark_is_the_recorded_alarm(acme, value, which):  # noqa: F811
    vdir, env = acme
    seq = file_sql(vdir, f"SELECT {WHICH[which]}")[0][0]
    assert seq > 0, "the mark's checkpoint signs an entry of the log"
    edit = f"UPDATE audit_events SET entry_hash = {VALUES[value]} WHERE seq = ? RETURNING seq"
    assert file_sql(vdir, edit, (seq,))
    result = run_cli("secret", "get", "acme", "office/firewall", env=env)
    line = _assert_one_line(result, 6)
    assert "integrity alarm" in line and f"entry {seq} is malformed" in line, line
    recorded = _recorded_alarm(vdir)  # before: None (a plain integrity failure, nothing recorded)
    assert recorded is not None and f'"first_bad_seq": {seq}' in recorded, recorded
    for name, result in _commands(vdir, env):
        line = _assert_one_line(result, 6)
        assert "integrity alarm" in line or name in ("doctor", "audit verify"), (name, line)


def test_an_entry_planted_at_the_last_seq_is_the_recorded_alarm(acme):  # noqa: F811
    vdir, env = acme
    last = 2**63 - 1
    file_sql(
        vdir,
        "INSERT INTO audit_events (seq, at, actor, action, client, outcome, reason, origin,"
        " detail_sealed, detail_key, prev_hash, entry_hash) SELECT ?, at, actor, action, client,"
        " outcome, reason, origin, detail_sealed, detail_key, prev_hash, entry_hash FROM audit_events"
        " WHERE seq = (SELECT max(seq) FROM audit_events)",
        (last,),
    )
    result = run_cli("secret", "get", "acme", "office/firewall", env=env)
    line = _assert_one_line(result, 6)  # before: 2 "a number is out of range"
    assert "integrity alarm" in line and f"entry {last} is malformed" in line, line
    recorded = _recorded_alarm(vdir)
    assert recorded is not None and f'"first_bad_seq": {last}' in recorded, recorded
