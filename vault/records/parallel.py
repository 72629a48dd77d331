"""``secret import`` of a large file on two cores: forked encrypt workers (issue 20 item 5).

The importing process (the parent) has unsealed the vault, authorized the import, opened its one
write transaction and validated the first batch itself. It then cuts the rest of the file into
blocks of :data:`~vault.records.service.IMPORT_BATCH` records (:func:`plan`: byte ranges split at
line boundaries, each with the number of its first line and the first record id it gets, the ids
the streamed path would give them) and forks up to two workers **before any thread starts**.
Each worker inherits the open vault in memory (the client keys, the row-MAC key: no key crosses
a pipe or a file; core dumps and ptrace were already forbidden for the process,
:mod:`vault.hardening`, and that is inherited), ``pread``-s the blocks the parent hands it by
number, and parses, validates, encrypts and MACs their records exactly as the streamed path does
(:meth:`_BulkWrite.encrypt`). It sends back, over an anonymous pipe of its own, bytes only: the
records and versions rows (path tags, sealed names, wrapped DEKs, MACs, ids, sizes), the packs
(record blobs: ciphertext) and the line number of each record; a bad line is sent as its number
and the one-line message the streamed path would raise (which never echoes a value), with the
tags and line numbers of the block's records before it. A plaintext value never leaves the worker.

The parent checks the path tags for duplicates (a keyed HMAC of the path: the same tag is the same
path), writes the packs and runs the inserts in its one transaction (on its inserts thread, as
the streamed path does). The rows are the same whatever the split and the order the blocks come
back in. Any failure (a bad line: the first in the file wins, as in the streamed path; a worker
killed or ending early; the parent interrupted) kills the workers, and the transaction rolls back
and the packs are deleted: nothing is imported. The workers die with the parent
(``PR_SET_PDEATHSIG``, and end of file on their task pipe), so a ``kill -9`` of the CLI leaves
neither a worker nor a committed row. Security reasoning: docs/security.md guarantee 50.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import os
import signal
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vault.errors import InvalidInput, VaultError
from vault.records.importfile import ImportFile

if TYPE_CHECKING:  # pragma: no cover
    from vault.records.service import _BulkWrite, _PreparedWrite

#: the environment variable that sets how many workers an import may fork (0: none, the streamed
#: path alone); by default one per core the process may run on, at most :data:`MAX_WORKERS`
WORKERS_ENV = "CVAULT_IMPORT_WORKERS"
MAX_WORKERS = 2
#: bytes read at a time by :func:`plan`
_CHUNK = 1 << 20
_LEN = struct.Struct(">Q")
_TASK = struct.Struct(">i")
#: JSON's whitespace: a line that can be a record starts with ``{`` after it
_JSON_SPACE = b" \t\r"
_OK, _BAD = 0, 1
PR_SET_PDEATHSIG = 1


#: the one line of a worker that is gone before its answer, whether its pipe is read (end of
#: file) or written (EPIPE, review9 R9-2: a ``BrokenPipeError`` was taken for a closed stdout)
_GONE = "secret import failed: an encrypt worker ended unexpectedly; nothing was imported"


class WorkerFailed(VaultError):
    """An encrypt worker ended without its answer: nothing was imported."""


def workers_wanted() -> int:
    """How many encrypt workers an import may fork (0: none)."""
    text = os.environ.get(WORKERS_ENV)
    if text is not None:
        try:
            return max(0, min(MAX_WORKERS, int(text)))
        except ValueError:
            raise InvalidInput(f"{WORKERS_ENV} must be a number of workers (0 to {MAX_WORKERS})") from None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return min(MAX_WORKERS, cores) if cores > 1 else 0


def plan(source: ImportFile, batch: int) -> list[tuple[int, int, int, int]]:
    """The rest of ``source`` after what was iterated, as blocks ``(offset, length, first line
    number, records)`` of ``batch`` records each (the last one fewer): a record is a line that
    starts with ``{`` after JSON whitespace. Any line that is neither blank nor such a line makes
    the import fail (a worker reports it), so the count is exact for every import that succeeds,
    and the line numbers (every line counts) are exact always."""
    fd = source.fileno()
    pos, number = source.offset, source.lines_read + 1
    start, start_line, count, at = pos, number, 0, pos
    blocks: list[tuple[int, int, int, int]] = []
    tail = b""
    while True:
        chunk = os.pread(fd, _CHUNK, pos)
        if not chunk:
            break
        pos += len(chunk)
        parts = (tail + chunk).split(b"\n")
        tail = parts.pop()  # the line the next chunk goes on with (b"": the chunk ended a line)
        for part in parts:
            at += len(part) + 1
            number += 1
            if part.lstrip(_JSON_SPACE)[:1] == b"{":
                count += 1
                if count == batch:
                    blocks.append((start, at - start, start_line, count))
                    start, start_line, count = at, number, 0
    if tail.lstrip(_JSON_SPACE)[:1] == b"{":  # a last line without a newline
        count += 1
    if pos > start:
        blocks.append((start, pos - start, start_line, count))
    return blocks


class _Worker:
    __slots__ = ("pid", "tasks", "results", "pending")

    def __init__(self, pid: int, tasks: int, results: int):
        self.pid, self.tasks, self.results = pid, tasks, results
        #: the blocks handed to this worker and not answered yet
        self.pending: list[int] = []


def start(
    bulk: _BulkWrite,
    source: ImportFile,
    blocks: list[tuple[int, int, int, int]],
    workers: int,
    prepare: Callable[[str, str, dict], _PreparedWrite],
) -> list[_Worker]:
    """Reserve the blocks' record ids and fork the workers (no thread may run: a fork copies
    only the calling thread, and a lock another thread held would stay held in the child)."""
    if threading.active_count() != 1:
        raise RuntimeError("encrypt workers are forked before any thread starts")
    ids, first = [], bulk.reserve(sum(b[3] for b in blocks))
    for block in blocks:
        ids.append(first)
        first += block[3]
    parent = os.getpid()
    pool: list[_Worker] = []
    try:
        for _ in range(workers):
            task_r, task_w = os.pipe()
            result_r, result_w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker: never returns, never runs the parent's cleanup
                code = 1
                try:
                    os.close(task_w)
                    os.close(result_r)
                    for other in pool:  # the other workers' pipe ends: theirs to close
                        os.close(other.tasks)
                        os.close(other.results)
                    _serve(bulk, source, blocks, ids, prepare, task_r, result_w, parent)
                    code = 0
                finally:
                    os._exit(code)
            os.close(task_r)
            os.close(result_w)
            pool.append(_Worker(pid, task_w, result_r))
    except BaseException:
        stop(pool, kill=True)
        raise
    return pool


def finish(
    bulk: _BulkWrite,
    source: ImportFile,
    blocks: list[tuple[int, int, int, int]],
    pool: list[_Worker],
    seen: dict[bytes, int],
) -> None:
    """Hand out the blocks, take the answers, store them; raise the first bad line's error."""
    import selectors

    try:
        errors: list[tuple[int, str]] = []  # (line number, message) of each bad line found
        limit = None  # the first bad line found so far: blocks after it need not be read
        todo = iter(range(len(blocks)))
        done_bytes = 0

        def hand_out(worker: _Worker) -> None:
            for index in todo:
                if limit is not None and blocks[index][2] > limit:
                    continue
                worker.pending.append(index)
                try:
                    os.write(worker.tasks, _TASK.pack(index))
                except OSError:  # EPIPE: the worker is gone (killed, or ended by its own failure)
                    raise WorkerFailed(_GONE) from None
                return

        for worker in pool:  # two blocks each: the next one is there when a worker answers
            hand_out(worker)
            hand_out(worker)
        selector = selectors.DefaultSelector()
        for worker in pool:
            selector.register(worker.results, selectors.EVENT_READ, worker)
        while any(w.pending for w in pool):
            for key, _ in selector.select():
                worker = key.data
                if not worker.pending:
                    continue
                message = _receive(worker.results)
                if message is None:
                    raise WorkerFailed(_GONE)
                # a forked copy of this process wrote it (bytes, ints, strings in tuples and
                # lists: marshal builds nothing else and runs no code)
                answer = marshal.loads(message)  # noqa: S302
                del message
                index = answer[0]
                if index not in worker.pending:
                    raise WorkerFailed("secret import failed: an encrypt worker answered out of turn")
                worker.pending.remove(index)
                if answer[1] == _OK:
                    _, _, records, versions, packs, numbers = answer
                    tags = [r[2] for r in records]
                else:
                    _, _, number, text, tags, numbers = answer
                    errors.append((number, text))
                duplicate = _check(seen, tags, numbers)
                if duplicate is not None:
                    errors.append((duplicate, ""))
                if errors:
                    limit = min(e[0] for e in errors)
                elif answer[1] == _OK:
                    for name, data in packs:
                        bulk.write_pack(name, data)
                    bulk.store(records, versions, [name for name, _ in packs], len(records))
                    done_bytes += blocks[index][1]
                    source.progress(source.offset + done_bytes)
                del answer
                hand_out(worker)
        selector.close()
        if errors:
            number, text = min(errors)
            raise InvalidInput(text or f"line {number}: duplicate path {_path_at(source, blocks, number)}")
    except BaseException:
        stop(pool, kill=True)
        raise
    if not stop(pool, kill=False):
        raise WorkerFailed(
            "secret import failed: an encrypt worker did not end cleanly; nothing was imported"
        )


def _check(seen: dict[bytes, int], tags: list[bytes], numbers: list[int]) -> int | None:
    """Add the tags with their line numbers; the line of the first duplicate (the later line of
    a path given twice: what the streamed path names), or None."""
    found = None
    for tag, number in zip(tags, numbers, strict=True):
        other = seen.get(tag)
        if other is None:
            seen[tag] = number
            continue
        second = max(other, number)
        if found is None or second < found:
            found = second
        if number < other:
            seen[tag] = number
    return found


def _path_at(source: ImportFile, blocks: list[tuple[int, int, int, int]], number: int) -> str:
    """The path on line ``number`` (a duplicate's message names it, as the streamed path does;
    read here, in the parent, from the user's own file)."""
    import json

    for offset, length, first, _ in blocks:
        data = os.pread(source.fileno(), length, offset)
        lines = data.split(b"\n")
        if first <= number < first + len(lines):
            return str(json.loads(source.decode(lines[number - first]))["path"])
    return "?"  # pragma: no cover - the line is in a block


def stop(pool: list[_Worker], *, kill: bool) -> bool:
    """End the workers (``kill``: at once) and reap them; whether each ended with status 0."""
    clean = True
    for worker in pool:
        if kill:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(worker.pid, signal.SIGKILL)
        else:
            try:
                os.write(worker.tasks, _TASK.pack(-1))
            except OSError:
                clean = False
        for fd in (worker.tasks, worker.results):
            with contextlib.suppress(OSError):
                os.close(fd)
    for worker in pool:
        try:
            _, status = os.waitpid(worker.pid, 0)
        except ChildProcessError:  # pragma: no cover
            clean = False
            continue
        clean = clean and os.waitstatus_to_exitcode(status) == 0
    pool.clear()
    return clean


# --- the worker ---------------------------------------------------------------------------------


def _serve(
    bulk: _BulkWrite,
    source: ImportFile,
    blocks: list[tuple[int, int, int, int]],
    ids: list[int],
    prepare: Callable[[str, str, dict], _PreparedWrite],
    tasks: int,
    results: int,
    parent: int,
) -> None:
    """A worker's loop: one block number at a time from ``tasks``, its answer to ``results``,
    until -1 or the end of the pipe (the parent is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent ends the workers
    # no collection in the worker: nothing of the parent's (its database connection above all)
    # is finalized here, and a block's objects are freed by their counts
    gc.disable()
    with contextlib.suppress(Exception):  # the end of the task pipe still ends the worker
        from vault.hardening import _prctl

        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the death signal was set
        return
    while True:
        raw = _read_exact(tasks, _TASK.size)
        if raw is None:
            return
        (index,) = _TASK.unpack(raw)
        if index < 0:
            return
        answer = marshal.dumps(_work(bulk, source, blocks[index], ids[index], index, prepare))
        _write_all(results, _LEN.pack(len(answer)))
        _write_all(results, answer)
        del answer


def _work(
    bulk: _BulkWrite,
    source: ImportFile,
    block: tuple[int, int, int, int],
    first: int,
    index: int,
    prepare: Callable[[str, str, dict], _PreparedWrite],
) -> tuple[Any, ...]:
    from vault.records.service import parse_line

    offset, length, number, expected = block
    data = _pread_exact(source.fileno(), length, offset)
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    del data
    decode, path_tag = source.decode, bulk.keys.path_tag
    fresh: list[tuple[_PreparedWrite, bytes]] = []
    numbers: list[int] = []
    try:
        for raw in lines:
            item = parse_line(prepare, number, decode(raw))
            if item is not None:
                fresh.append((item, path_tag(item.path)))
                numbers.append(number)
            number += 1
    except InvalidInput as exc:
        return (index, _BAD, number, exc.message, [t for _, t in fresh], numbers)
    del lines
    if len(fresh) != expected:  # only a bad line can make them differ, and it was reported
        return (index, _BAD, number, "secret import failed: a block's records were miscounted", [], [])
    packs: list[tuple[str, bytes]] = []
    records, versions, _ = bulk.encrypt(fresh, first, lambda name, data: packs.append((name, data)))
    return (index, _OK, records, versions, packs, numbers)


def _pread_exact(fd: int, length: int, offset: int) -> bytes:
    parts, done = [], 0
    while done < length:
        part = os.pread(fd, length - done, offset + done)
        if not part:
            raise WorkerFailed("secret import failed: the input file shrank while it was read")
        parts.append(part)
        done += len(part)
    return b"".join(parts)


def _read_exact(fd: int, size: int) -> bytes | None:
    """``size`` bytes from ``fd``, or None at its end."""
    parts, done = [], 0
    while done < size:
        part = os.read(fd, min(size - done, 1 << 20))
        if not part:
            return None
        parts.append(part)
        done += len(part)
    return b"".join(parts)


def _receive(fd: int) -> bytes | None:
    """One length-prefixed message, or None when the worker ended first."""
    head = _read_exact(fd, _LEN.size)
    if head is None:
        return None
    (size,) = _LEN.unpack(head)
    return _read_exact(fd, size)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
