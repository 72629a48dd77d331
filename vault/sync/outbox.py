"""Draining the outbox to the remote replica (``sync push``; docs/spec.md §8).

For each blob only its *last* queued operation matters (a put followed by a delete is just a
delete). A failed operation stays queued with an attempt count, the time of its next attempt and a
one-line error; nothing is lost (docs/onedrive.md, "Retries, back-off and errors"):

* a transient failure (throttling, 5xx, network) is retried after an exponential back-off, 30 s
  doubling to an hour, or after the store's ``Retry-After`` when that is longer (Graph's throttling
  guidance: wait at least that long; a 301 s wait is not retried after 31 s);
* a permanent failure (the store refused: permissions, quota, a bad request; or the local blob is
  missing) is not retried by itself: the row's next attempt is :data:`NEEDS_ATTENTION` and
  ``sync status`` counts it as needing attention until an operator fixes the cause and runs
  ``sync push --now``, which retries everything.

The queue itself is :mod:`vault.store.outbox`'s table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vault.backends.base import Backend, BulkBackend
from vault.clock import from_epoch, rfc3339
from vault.errors import BackendError, BlobNotFound, TransientBackendError
from vault.store.db import Database
from vault.tuples import NamedTuple

RETRY_BASE_SECONDS = 30  # first retry of a failed outbox item after 30 s ...
RETRY_CAP_SECONDS = 3600  # ... doubling up to an hour
#: ``next_attempt_at`` of a row that failed permanently: no automatic retry (only ``--now``)
NEEDS_ATTENTION = 2**62
Progress = Callable[[int, int], None]


@dataclass
class Task:
    """The last queued operation of one blob, covering every outbox row up to ``max_id``."""

    blob_name: str
    op: str
    max_id: int
    attempts: int
    next_at: int


def pending(conn) -> dict:
    rows = conn.execute(
        "SELECT op, count(*), sum(attempts > 0), min(queued_at) FROM outbox GROUP BY op"
    ).fetchall()
    out: dict[str, int | str | None] = {"put": 0, "delete": 0, "failing": 0}
    failing_total = 0
    oldest_at: int | None = None
    for op, count, failing, oldest in rows:
        out[op] = count
        failing_total += failing or 0
        if oldest is not None and (oldest_at is None or oldest < oldest_at):
            oldest_at = oldest
    out["failing"] = failing_total
    out["needs_attention"] = needs_attention(conn)
    out["oldest"] = None if oldest_at is None else rfc3339(from_epoch(oldest_at))
    return out


def needs_attention(conn) -> int:
    """Blobs whose last operation failed permanently (not retried until ``sync push --now``)."""
    return int(
        conn.execute(
            "SELECT count(DISTINCT blob_name) FROM outbox WHERE next_attempt_at >= ?", (NEEDS_ATTENTION,)
        ).fetchone()[0]
    )


def last_error(conn) -> str | None:
    row = conn.execute(
        "SELECT last_error FROM outbox WHERE last_error IS NOT NULL ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return row[0] if row else None


def queued_names(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT blob_name FROM outbox")}


def tasks(conn, now: int) -> list[Task]:
    """One task per blob (its last queued operation), those whose back-off has passed."""
    rows = conn.execute("SELECT id, op, blob_name, attempts, next_attempt_at FROM outbox ORDER BY id")
    found: dict[str, Task] = {}
    for row_id, op, name, attempts, next_at in rows:
        earlier = found.get(name)
        found[name] = Task(
            name,
            op,
            row_id,
            max(attempts, earlier.attempts if earlier else 0),
            max(next_at, earlier.next_at if earlier else 0),
        )
    return [t for t in found.values() if t.next_at <= now]


class Failure(NamedTuple):
    """Why one task failed: the message, whether a retry may help, the store's Retry-After."""

    message: str
    transient: bool
    retry_after: float | None = None


def next_attempt(task: Task, failure: Failure, now: int) -> int:
    """When to try a failed task again (module docstring)."""
    if not failure.transient:
        return NEEDS_ATTENTION
    delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** min(task.attempts, 10))
    if failure.retry_after is not None:
        delay = max(delay, math.ceil(failure.retry_after))
    return now + delay


def settle(db: Database, task: Task, failure: Failure | None, now: int) -> None:
    """Remove a done task's rows, or record the failure and the next attempt's time."""
    with db.write() as conn:
        if failure is None:
            conn.execute("DELETE FROM outbox WHERE blob_name = ? AND id <= ?", (task.blob_name, task.max_id))
            return
        conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
            " WHERE blob_name = ? AND id <= ?",
            (next_attempt(task, failure, now), failure.message[:300], task.blob_name, task.max_id),
        )


def drain(
    db: Database,
    local: BulkBackend,
    remote: Backend,
    now: int,
    workers: int,
    progress: Progress | None,
    *,
    force: bool = False,
) -> dict:
    """Run every due task on ``workers`` threads; ``force`` retries everything now, including
    what needs attention."""
    due = tasks(db.conn, NEEDS_ATTENTION if force else now)
    done: dict = {"uploaded": 0, "deleted": 0, "failed": 0, "errors": []}

    def run(task: Task) -> tuple[Task, Failure | None]:
        try:
            if task.op == "delete":
                remote.delete(task.blob_name)
            else:
                remote.put(task.blob_name, local.get(task.blob_name))
            return task, None
        except BlobNotFound:
            return task, Failure("the local blob is missing (run 'cvault doctor')", transient=False)
        except TransientBackendError as exc:
            return task, Failure(exc.message, transient=True, retry_after=exc.retry_after)
        except BackendError as exc:
            return task, Failure(exc.message, transient=False)

    finished = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for task, failure in pool.map(run, due):
            finished += 1
            settle(db, task, failure, now)
            if failure is None:
                done["uploaded" if task.op == "put" else "deleted"] += 1
            else:
                done["failed"] += 1
                if len(done["errors"]) < 5:
                    done["errors"].append(f"{task.op} {task.blob_name}: {failure.message}")
            if progress:
                progress(finished, len(due))
    done["pending"] = pending(db.conn)
    return done
