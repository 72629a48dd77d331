"""The event loop's hand-off of a registry operation to a thread (:class:`Handoff`), for the
service's fast dispatch (:class:`vault.server.routes.FastDispatch`).

An operation blocks (SQLite, the audit group commit's fsync), so it runs in a thread while the
loop serves the other connections. Starlette's ``run_in_threadpool`` (anyio's
``to_thread.run_sync``) costs two extra trips through the event loop per call (its checkpoints),
a cancel scope and a capacity limiter, and a ``queue.Queue`` (a Python condition variable) to
wake the thread: about 12 % of a worker's CPU under load (docs/performance.md, "Issue 20, the
service target: the request path below the ASGI stack"). Here a call is one
``queue.SimpleQueue.put`` (C) that wakes an idle thread, and one ``call_soon_threadsafe`` back.

The threads are at most :data:`MAX_THREADS` (anyio's default limit, which bounded the same calls
before); past that, calls wait in the queue for a free thread. They are daemon threads that wait
for work: a stopping service does not wait for an idle one.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

#: the most threads running operations at once (anyio's default ``CapacityLimiter``: 40)
MAX_THREADS = 40


class Handoff:
    """``await handoff.run(fn, *args)``: ``fn(*args)`` in one of this object's threads; its result,
    or its exception raised in the caller."""

    def __init__(self, max_threads: int = MAX_THREADS, name: str = "cvault-op"):
        self.max_threads = max_threads
        self.name = name
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for work minus calls queued for them (< 0: a backlog)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            # a new thread takes this call, or a waiting one does (or the first to finish)
            start = self._idle <= 0 and self._threads < self.max_threads
            if start:
                self._threads += 1
            else:
                self._idle -= 1
        if start:
            threading.Thread(target=self._serve, name=f"{self.name}-{self._threads}", daemon=True).start()
        self._work.put((loop, future, fn, args))
        return await future

    def _serve(self) -> None:
        work = self._work
        while True:
            loop, future, fn, args = work.get()
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller
                self._answer(loop, future, None, exc)
            else:
                self._answer(loop, future, result, None)
            with self._lock:
                self._idle += 1
            del loop, future, fn, args  # nothing of the request kept while waiting

    @staticmethod
    def _answer(loop, future, result, exc) -> None:
        # a closed loop (the service stopped) raises RuntimeError: nobody waits any more
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, future, result, exc)


def _settle(future: asyncio.Future, result, exc) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
