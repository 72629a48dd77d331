"""Draining the outbox to the remote replica (``sync push``; SPEC 8).

For each blob only its *last* queued operation matters (a put followed by a delete is just a
delete). A failed operation stays queued with an attempt count, a back-off time and a one-line
error; nothing is lost. The queue itself is :mod:`vault.store.outbox`'s table.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vault.backends.base import Backend, BulkBackend
from vault.clock import from_epoch, rfc3339
from vault.errors import BackendError, BlobNotFound, TransientBackendError
from vault.store.db import Database

RETRY_BASE_SECONDS = 30  # first retry of a failed outbox item after 30 s ...
RETRY_CAP_SECONDS = 3600  # ... doubling up to an hour
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
    out = {"put": 0, "delete": 0, "failing": 0, "oldest": None}
    for op, count, failing, oldest in rows:
        out[op] = count
        out["failing"] += failing or 0
        if oldest is not None and (out["oldest"] is None or oldest < out["oldest"]):
            out["oldest"] = oldest
    if out["oldest"] is not None:
        out["oldest"] = rfc3339(from_epoch(out["oldest"]))
    return out


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


def settle(db: Database, task: Task, error: str | None, now: int) -> None:
    """Remove a done task's rows, or record the failure and the next attempt's time."""
    with db.write() as conn:
        if error is None:
            conn.execute("DELETE FROM outbox WHERE blob_name = ? AND id <= ?", (task.blob_name, task.max_id))
            return
        delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** min(task.attempts, 10))
        conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
            " WHERE blob_name = ? AND id <= ?",
            (now + delay, error[:300], task.blob_name, task.max_id),
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
    """Run every due task on ``workers`` threads; ``force`` ignores back-off times."""
    due = tasks(db.conn, 2**62 if force else now)
    done: dict = {"uploaded": 0, "deleted": 0, "failed": 0, "errors": []}

    def run(task: Task) -> tuple[Task, str | None, bool]:
        try:
            if task.op == "delete":
                remote.delete(task.blob_name)
            else:
                remote.put(task.blob_name, local.get(task.blob_name))
            return task, None, False
        except BlobNotFound:
            return task, "the local blob is missing (run 'cvault doctor')", False
        except TransientBackendError as exc:
            return task, exc.message, True
        except BackendError as exc:
            return task, exc.message, False

    finished = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for task, error, _transient in pool.map(run, due):
            finished += 1
            settle(db, task, error, now)
            if error is None:
                done["uploaded" if task.op == "put" else "deleted"] += 1
            else:
                done["failed"] += 1
                if len(done["errors"]) < 5:
                    done["errors"].append(f"{task.op} {task.blob_name}: {error}")
            if progress:
                progress(finished, len(due))
    done["pending"] = pending(db.conn)
    return done
