"""The second half of a large live log, verified in a helper process (docs/audit.md section 6,
"Speed").

A hash chain is walked in order, but each entry's check needs only its own fields, its stored
link and the stored hash of the entry before it. ``audit verify`` on a log of at least
:data:`vault.audit.live.PARALLEL_MIN` entries therefore starts this module as a child process
(``python -I``, the same source tree) for the entries from the middle to the end, while it walks
the first half itself: two cores, about half the time. The child opens the SQLite file itself
(query-only), walks its entries with the verifier's own loop (:func:`vault.audit.verify._walk`)
and prints what it established (:class:`vault.audit.verify.Span`) as one JSON line: its first
entry's stored link, its last entry's stored hash, the last checkpoint it passed. The parent
accepts the span only if it starts right after its own last entry and links to it; on any
doubt (a problem in either half, a child that fails, a span that does not join) it walks the
whole log in one pass itself, so the verdict and the problem named are exactly those of a
single walk. No key, no secret and nothing of the log's content crosses the pipe: the request
is the file's path, two sequence numbers and the checkpoints' entry hashes; the answer is two
hashes and three numbers.
"""

from __future__ import annotations

import json
import sqlite3
import sys

from vault.audit.log import EVENT_COLUMNS
from vault.audit.verify import Span, VerifyResult, WalkState, walk_entries
from vault.tuples import NamedTuple


class _Mark(NamedTuple):
    """A checkpoint as the walk compares it: the entry hash it signs."""

    entry_hash: bytes


def walk_span(path: str, first: int, last: int, marks: dict[int, list[bytes]]) -> Span | None:
    """Walk entries ``first``..``last`` of the log in the SQLite file at ``path`` (every hash,
    every link, every checkpoint in ``marks``); None when any of it does not verify."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA cache_size=-32768")
        conn.execute("BEGIN")
        rows = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq >= ? AND seq <= ? ORDER BY seq",  # noqa: S608 - a constant column list; the bounds are bound
            (first, last),
        )
        head = rows.fetchone()
        if head is None or not isinstance(head[10], bytes):
            return None
        link = head[10]
        checkpoints = {seq: [_Mark(h) for h in hashes] for seq, hashes in marks.items()}
        pending = [*sorted(checkpoints), -1]

        result = VerifyResult()
        walked = walk_entries(
            _chain(head, rows),
            result,
            checkpoints,  # type: ignore[arg-type]
            pending,
            WalkState(first, link, 0, 0),
            lambda _cp: True,  # a mismatch fails the span whatever its signature
            lambda: result.fail("a checkpoint does not match", None),
            lambda _done, _total: None,
            -1,
            -1,
            0,
            None,
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    if isinstance(walked, VerifyResult) or walked.expected != last + 1 or pending[walked.mark_i] != -1:
        return None
    return Span(first, last, link, walked.prev, walked.last_mark)


def _chain(head: tuple, rows):
    yield head
    yield from rows


def main() -> None:
    """The child: one JSON request on standard input, one JSON answer on standard output."""
    request = json.loads(sys.stdin.buffer.read())
    span = walk_span(
        request["path"],
        int(request["first"]),
        int(request["last"]),
        {int(seq): [bytes.fromhex(h) for h in hashes] for seq, hashes in request["marks"].items()},
    )
    if span is None:
        answer: dict = {"ok": False}
    else:
        answer = {
            "ok": True,
            "first": span.first,
            "last": span.last,
            "link": span.link.hex(),
            "head": span.head.hex(),
            "last_mark": span.last_mark,
        }
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
