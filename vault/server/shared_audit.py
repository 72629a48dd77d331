"""``cvault serve --workers N``: one audit group commit for the whole service, in the supervisor.

Each worker used to group-commit its own requests' audit events (:class:`vault.audit.log.GroupCommit`)
under the host-wide write lock, so the workers' commits alternated: a worker's leader held the
lock while its own event loop and threads took the GIL from it between SQLite calls (a median
hold of 6.7 ms for a ~0.5 ms fsync under load), and the other worker, all its requests waiting
for their events, sat idle (docs/performance.md, "Issue 20, the service target: svcfast").

Here a worker hands each event to the supervisor (:class:`SharedAuditWriter`, the same
``append(log, event)`` as a ``GroupCommit``) over a ``SOCK_SEQPACKET`` socketpair of its own, and
waits for its answer. The supervisor's one writer thread (:class:`AuditWriter`) takes every event
queued by any worker, writes them in one transaction (one commit, one fsync) with the same
``GroupCommit._write`` (an alarm refuses each event on its own), and only then answers each
event with its sequence number or its own failure. So, as before, a request returns only after
its own event is durable, and fails closed otherwise: an error answer raises that error in the
worker; no answer (the supervisor gone, killed, or silent for :data:`ANSWER_TIMEOUT`) raises
:class:`vault.errors.AuditFailure`. The supervisor serves no HTTP, so its writer is not slowed
by request work holding the GIL.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import queue
import selectors
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from vault.errors import AuditAlarm, AuditFailure, VaultError, error_class

log = logging.getLogger("cvault.server")

#: the largest event message a worker sends (a larger event is written by the worker itself, in
#: its own transaction under the host write lock, as before)
EVENT_MAX = 60 * 1024
#: the largest answer message (the supervisor sends at most :data:`ANSWERS_PER_MESSAGE` answers in one)
ANSWER_MAX = 256 * 1024
ANSWERS_PER_MESSAGE = 32
#: seconds a worker waits for its event's answer before it fails closed
ANSWER_TIMEOUT = 120.0
#: events in one transaction at most (as ``GroupCommit``)
MAX_BATCH = 256
_STRING_FIELDS = (0, 1, 2, 5)  # actor, action, outcome, origin; client, reason, detail_key may be None


def _failure() -> AuditFailure:
    return AuditFailure(
        "the audit log could not be written (no answer from the service's writer); operation refused"
    )


def encode_event(ident: int, event: tuple) -> bytes:
    fields = list(event)
    sealed = fields[6]
    fields[6] = None if sealed is None else base64.b64encode(sealed).decode()
    return json.dumps([ident, fields]).encode()


def decode_event(data: bytes) -> tuple[int, tuple]:
    """``(id, event)`` of a worker's message; ValueError when it is not one."""
    ident, fields = json.loads(data)
    if type(ident) is not int or not isinstance(fields, list) or len(fields) != 8:
        raise ValueError("not an audit event")
    for i, value in enumerate(fields):
        if i == 6:
            continue
        if not (isinstance(value, str) or (value is None and i not in _STRING_FIELDS)):
            raise ValueError("not an audit event")
    if fields[6] is not None:
        if not isinstance(fields[6], str):
            raise ValueError("not an audit event")
        fields[6] = base64.b64decode(fields[6], validate=True)
    return ident, tuple(fields)


def _error_answer(exc: BaseException) -> dict:
    if isinstance(exc, VaultError):
        err: dict[str, Any] = {"code": exc.code, "message": exc.message, "exit_code": exc.exit_code}
        if isinstance(exc, AuditAlarm):
            err["alarm"] = exc.first_bad_seq
        return err
    failure = AuditFailure(f"the audit log could not be written ({type(exc).__name__}); operation refused")
    return {"code": failure.code, "message": failure.message, "exit_code": failure.exit_code}


def _error_from(err: dict) -> VaultError:
    if "alarm" in err:
        seq = err["alarm"]
        return AuditAlarm(str(err["message"]), seq if type(seq) is int else None)
    return error_class(str(err["code"]), int(err["exit_code"]))(str(err["message"]))


# --- the worker's side ---------------------------------------------------------------------------------


class _Pending:
    __slots__ = ("answer", "done", "future")

    def __init__(self, future=None) -> None:
        self.answer: dict | None = None
        #: a deferred event's future (settled in its event loop), else a lock released once, when
        #: the answer (or the failure) is there
        self.future = future
        self.done = threading.Lock()
        if future is None:
            self.done.acquire()


def _settle_answers(settled: list) -> None:
    """In the event loop: each deferred event's future gets its answer (None: no answer)."""
    for future, answer in settled:
        if not future.done():
            future.set_result(answer)


def _answer_result(answer: dict | None) -> int:
    if answer is None:
        raise _failure()
    if "error" in answer:
        raise _error_from(answer["error"])
    return int(answer["seq"])


class Deferral:
    """One request's audit events, answered in its event loop instead of a blocked thread
    (:meth:`SharedAuditWriter.deferring`). While it is active in a thread, ``append`` sends the
    event and returns at once (sequence number 0: not known yet); :meth:`settled` awaits every
    event's answer and raises the first failure. Only for an operation that writes nothing after
    its audit event (a read): its answer waits for :meth:`settled`, so a request is still
    answered only after its own events are durable, and refused otherwise."""

    __slots__ = ("loop", "futures")

    def __init__(self, loop) -> None:
        self.loop = loop
        self.futures: list = []

    async def settled(self) -> None:
        if not self.futures:
            return
        futures, self.futures = self.futures, []
        timer = self.loop.call_later(ANSWER_TIMEOUT, _settle_answers, [(f, None) for f in futures])
        try:
            answers = [await f for f in futures]
        finally:
            timer.cancel()
        for answer in answers:
            _answer_result(answer)


class SharedAuditWriter:
    """A worker's ``GroupCommit``: ``append(log, event)`` returns the event's sequence number once
    the supervisor committed it, or raises (see the module's docstring)."""

    def __init__(self, sock: socket.socket, *, on_gone: Callable[[], None] | None = None):
        self.sock = sock
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._next = 0
        self._broken = False
        self._on_gone = on_gone or (lambda: os.kill(os.getpid(), signal.SIGTERM))
        self.batches = self.events = 0  # GroupCommit's counters (this worker does not batch)
        self._local = threading.local()  # .deferral: the Deferral active in this thread, if any
        threading.Thread(target=self._answers, name="cvault-worker-audit", daemon=True).start()

    @contextlib.contextmanager
    def deferring(self, deferral: Deferral):
        """``append`` in this thread defers to ``deferral`` until the block ends."""
        self._local.deferral = deferral
        try:
            yield deferral
        finally:
            self._local.deferral = None

    def append(self, audit_log, event: tuple) -> int:
        if audit_log.fail_injector is not None:  # the fail-closed tests' hook: as without workers
            return audit_log.append_batch([event])[0]
        deferral = getattr(self._local, "deferral", None)
        me = _Pending(None if deferral is None else deferral.loop.create_future())
        with self._lock:
            if self._broken:
                raise _failure()
            self._next += 1
            ident = self._next
            data = encode_event(ident, event)
            if len(data) > EVENT_MAX:
                big = True
            else:
                big = False
                self._pending[ident] = me
        if big:  # too large for one message: written here, in its own transaction
            return audit_log.append_batch([event])[0]
        try:
            self.sock.send(data)
        except OSError:
            self._gone()
            raise _failure() from None
        if deferral is not None:
            # forgotten once settled, answered or not (review11 R11-2: a timed-out one stayed)
            me.future.add_done_callback(lambda _f, i=ident: self._forget(i))
            deferral.futures.append(me.future)
            return 0
        if not me.done.acquire(timeout=ANSWER_TIMEOUT):
            with self._lock:
                self._pending.pop(ident, None)
            raise _failure()
        return _answer_result(me.answer)

    def _forget(self, ident: int) -> None:
        with self._lock:
            self._pending.pop(ident, None)

    def _answers(self) -> None:
        while True:
            try:
                data = self.sock.recv(ANSWER_MAX)
            except OSError:
                data = b""
            if not data:
                self._gone()
                return
            try:
                answers = json.loads(data)
            except ValueError:
                continue
            settled: dict = {}  # loop -> [(future, answer)]: one wake-up of each loop per message
            for answer in answers if isinstance(answers, list) else ():
                if not isinstance(answer, dict):
                    continue
                ident = answer.get("id")
                with self._lock:
                    waiting = self._pending.pop(ident, None) if type(ident) is int else None
                if waiting is None:
                    continue
                if waiting.future is not None:
                    settled.setdefault(waiting.future.get_loop(), []).append((waiting.future, answer))
                else:
                    waiting.answer = answer
                    waiting.done.release()
            self._wake(settled)

    @staticmethod
    def _wake(settled: dict) -> None:
        for loop, answers in settled.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle_answers, answers)

    def _gone(self) -> None:
        """The supervisor is gone: every waiting event fails closed, and this worker stops."""
        with self._lock:
            first = not self._broken
            self._broken = True
            pending, self._pending = self._pending, {}
        settled: dict = {}
        for waiting in pending.values():
            if waiting.future is not None:
                settled.setdefault(waiting.future.get_loop(), []).append((waiting.future, None))
            else:
                waiting.done.release()  # answer None: AuditFailure
        self._wake(settled)
        if first:
            log.warning("the service's audit writer is gone: this worker stops")
            self._on_gone()


# --- the supervisor's side -----------------------------------------------------------------------------


class AuditWriter:
    """The supervisor's writer: one thread reads every worker's events (:meth:`add` gives it a
    worker's socket), commits all that are there in one transaction on a vault of the
    supervisor's pool, answers them, and reads again. It owns the sockets it was given: it closes
    one when its worker is gone (the end of file a dead worker's socket reads)."""

    def __init__(self, pool) -> None:
        self.pool = pool
        self.batches = self.events = 0
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._added: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        self._stopping = False
        self._thread = threading.Thread(target=self._write_loop, name="cvault-audit-writer", daemon=True)
        self._thread.start()

    def add(self, sock: socket.socket) -> None:
        """Read a worker's events from ``sock`` from now on (any thread may call this)."""
        self._added.put(sock)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"+")

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b".")
        self._thread.join(timeout=10)

    def _drop(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        sock.close()

    def _take(self, sock: socket.socket, taken: list) -> None:
        """What ``sock`` holds now (at most a batch)."""
        while len(taken) < MAX_BATCH:
            try:
                data = sock.recv(EVENT_MAX + 1)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._drop(sock)  # the worker is gone
                return
            try:
                ident, event = decode_event(data)
            except (ValueError, TypeError):
                log.warning("a worker sent a malformed audit event; ignored")
                continue
            taken.append((sock, ident, event))

    def _write_loop(self) -> None:
        from vault.audit.log import GroupCommit, _Waiting

        try:
            while not self._stopping:
                taken: list = []
                for key, _ in self._selector.select():
                    sock = key.fileobj
                    if sock is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                        with contextlib.suppress(queue.Empty):
                            while True:
                                added = self._added.get_nowait()
                                added.setblocking(False)
                                self._selector.register(added, selectors.EVENT_READ)
                    else:
                        self._take(sock, taken)  # type: ignore[arg-type]
                if not taken:
                    continue
                batch = [_Waiting(event) for _, _, event in taken]
                try:
                    with self.pool.lease(unsealed=False) as vault:
                        GroupCommit._write(vault.ctx.audit, batch)
                except BaseException as exc:  # noqa: BLE001 - the lease failed: every event of the batch fails
                    for w in batch:
                        w.error = exc
                self.batches += 1
                self.events += len(batch)
                self._answer(taken, batch)
        finally:
            for key in list(self._selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            self._selector.close()
            self._wake_w.close()

    @staticmethod
    def _answer(taken: list, batch: list) -> None:
        by_sock: dict[socket.socket, list[dict]] = {}
        for (sock, ident, _), w in zip(taken, batch, strict=True):
            if w.error is not None:
                answer = {"id": ident, "error": _error_answer(w.error)}
            else:
                answer = {"id": ident, "seq": w.seq}
            by_sock.setdefault(sock, []).append(answer)
        for sock, answers in by_sock.items():
            for i in range(0, len(answers), ANSWERS_PER_MESSAGE):
                with contextlib.suppress(OSError):  # the worker is gone: its requests are too
                    sock.send(json.dumps(answers[i : i + ANSWERS_PER_MESSAGE]).encode())
