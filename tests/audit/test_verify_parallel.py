"""A large live log is verified on two cores (vault.audit.span): the second half in a child
process. Whatever the log holds, the verdict and the problem named are those of one walk over
the whole log (docs/audit.md section 6, "Speed"). The threshold is lowered so that the ~260
entries of the ``busy`` vault take the two-process path."""

from __future__ import annotations

import os
import sqlite3

import pytest

from tests.audit.test_audit_chain import busy  # noqa: F401 - the fixture
from vault import hardening
from vault.audit import live
from vault.audit.signing import AuditSigner
from vault.audit.span import walk_span
from vault.audit.verify import Span, entry_bytes


def _verdicts(v, monkeypatch, *, copies: bool = True) -> tuple[dict, dict, list]:
    """(one walk, two processes, the spans the children answered) over the same file; with the
    blob store's newest checkpoint copy unless not ``copies``."""
    public = AuditSigner(v.ctx.db, v.ctx.keyring).trusted_public_key()[0]
    external = [cp for cp in (live.latest_backend_checkpoint(v.ctx),) if cp is not None and copies]
    path, vault_id = v.ctx.db.path, v.ctx.vault_id
    monkeypatch.setattr(live, "PARALLEL_MIN", 10**12)
    one = live.verify_database(path, vault_id, public, external=external).as_dict()
    spans: list = []
    real = live._SpanHelper.result

    def recorded(self):
        spans.append(real(self))
        return spans[-1]

    monkeypatch.setattr(live._SpanHelper, "result", recorded)
    monkeypatch.setattr(live, "PARALLEL_MIN", 50)
    two = live.verify_database(path, vault_id, public, external=external).as_dict()
    return one, two, spans


def _split(v) -> tuple[int, int]:
    """(the first entry the child walks, the last entry)."""
    with v.ctx.db.read() as conn:
        total = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
        first = conn.execute(
            "SELECT seq FROM audit_events ORDER BY seq LIMIT 1 OFFSET ?", (total // 2,)
        ).fetchone()[0]
        last = conn.execute("SELECT max(seq) FROM audit_events").fetchone()[0]
    return first, last


def test_an_untouched_log_verifies_the_same_on_two_cores(busy, monkeypatch):  # noqa: F811
    _, v, _ = busy
    one, two, spans = _verdicts(v, monkeypatch)
    assert one["ok"] and one == two
    first, last = _split(v)
    assert len(spans) == 1 and isinstance(spans[0], Span)  # the child walked and answered
    assert (spans[0].first, spans[0].last) == (first, last)
    assert spans[0].last_mark == 200  # the signed checkpoint in its half, compared there


def _rewrite_from(conn, seq: int, link: bytes | None = None) -> None:
    """A file writer's rewrite: entries from ``seq`` edited and the chain recomputed after them
    (from ``link``, or from the entry before), self-consistent but no longer what checkpoint 200
    signs."""
    prev = link or conn.execute("SELECT entry_hash FROM audit_events WHERE seq = ?", (seq - 1,)).fetchone()[0]
    rows = conn.execute(
        "SELECT seq, at, actor, action, client, outcome, reason, origin, detail_sealed, detail_key"
        " FROM audit_events WHERE seq >= ? ORDER BY seq",
        (seq,),
    ).fetchall()
    import base64
    import hashlib

    for s, at, actor, action, client, outcome, _reason, origin, sealed, key in rows:
        reason = "rewritten"
        sealed_b64 = None if sealed is None else base64.b64encode(sealed).decode()
        digest = hashlib.sha256(
            prev + entry_bytes(s, at, actor, action, client, outcome, reason, origin, sealed_b64, key)
        ).digest()
        conn.execute(
            "UPDATE audit_events SET reason = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?",
            (reason, prev, digest, s),
        )
        prev = digest


TAMPERINGS = {
    "edit in the child's half": lambda c, f, last: c.execute(
        "UPDATE audit_events SET actor = 'nobody' WHERE seq = ?", (f + 10,)
    ),
    "edit of the child's first entry": lambda c, f, last: c.execute(
        "UPDATE audit_events SET actor = 'nobody' WHERE seq = ?", (f,)
    ),
    "edit of the parent's last entry": lambda c, f, last: c.execute(
        "UPDATE audit_events SET actor = 'nobody' WHERE seq = ?", (f - 1,)
    ),
    "the child's first entry deleted": lambda c, f, last: c.execute(
        "DELETE FROM audit_events WHERE seq = ?", (f,)
    ),
    "an entry in the child's half deleted": lambda c, f, last: c.execute(
        "DELETE FROM audit_events WHERE seq = ?", (f + 5,)
    ),
    "the link at the seam replaced": lambda c, f, last: c.execute(
        "UPDATE audit_events SET prev_hash = ? WHERE seq = ?", (os.urandom(32), f)
    ),
    "the child's half rewritten and re-chained": lambda c, f, last: _rewrite_from(c, f),
    "the tail cut under the last checkpoint": lambda c, f, last: c.execute(
        "DELETE FROM audit_events WHERE seq >= ?", (190,)
    ),
}


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
def test_tampering_anywhere_gets_the_verdict_of_one_walk(busy, monkeypatch, how):  # noqa: F811
    vdir, v, _ = busy
    first, last = _split(v)
    assert first < 200 <= last  # checkpoint 200 is in the child's half
    conn = sqlite3.connect(v.ctx.db.path)
    with conn:
        TAMPERINGS[how](conn, first, last)
    conn.close()
    one, two, spans = _verdicts(v, monkeypatch)
    assert not one["ok"], how
    assert one == two, how


def test_a_child_that_cannot_start_or_answer_leaves_the_verdict_unchanged(busy, monkeypatch):  # noqa: F811
    _, v, _ = busy
    monkeypatch.setattr(hardening.sys, "executable", "/bin/false")  # every child: python_argv
    one, two, spans = _verdicts(v, monkeypatch)
    assert one["ok"] and one == two
    assert all(span is None for span in spans)  # no answer: the parent walked the whole log


def test_a_consistent_half_that_does_not_link_to_the_first_is_refused(busy, monkeypatch):  # noqa: F811
    """The child's half re-chained from a forged link, its checkpoints deleted: each half is
    self-consistent; only the seam between them shows the break."""
    _, v, _ = busy
    first, _last = _split(v)
    conn = sqlite3.connect(v.ctx.db.path)
    with conn:
        _rewrite_from(conn, first, link=os.urandom(32))
        conn.execute("DELETE FROM audit_checkpoints WHERE seq >= ?", (first,))
    conn.close()
    one, two, spans = _verdicts(v, monkeypatch, copies=False)
    assert (one["ok"], one["bad_seq"]) == (False, first)
    assert one == two
    assert isinstance(spans[0], Span)  # the child vouched for its half; the seam refused it


def test_the_child_refuses_a_span_whose_checkpoint_does_not_match(busy):  # noqa: F811
    _, v, _ = busy
    first, last = _split(v)
    with v.ctx.db.read() as conn:
        signed = conn.execute("SELECT entry_hash FROM audit_checkpoints WHERE seq = 200").fetchone()[0]
    assert walk_span(v.ctx.db.path, first, last, {200: [bytes(signed)]}) is not None
    assert walk_span(v.ctx.db.path, first, last, {200: [os.urandom(32)]}) is None
    assert walk_span(v.ctx.db.path, first, last + 1, {}) is None  # an entry it cannot find
