"""R11-1: with --workers, a deferred `secret get` runs in the event loop's thread
(FastDispatch._deferred), and its session check writes: `touch_session` (last_seen, once a
minute per session; the operator session here was last seen at 0, so its first use touches) and,
for an idle/expired session, `ended_at`. That write takes the service's write lock in the loop's
thread: HostWriteLock = an in-process RLock + `flock(locks/write, LOCK_EX)` with no timeout, then
SQLite's BEGIN IMMEDIATE with a 30 s busy timeout. Whoever holds the lock -- a file writer with no
key (`flock vault/locks/write sleep 1d`), another worker's or the CLI's long write -- freezes the
whole worker's event loop (every connection, every TLS handshake, the 408 timers), not one thread.

In process, as the service does it: the real FastDispatch._deferred, the real SharedAuditWriter
with the supervisor's real writer on a socketpair (test_shared_audit's set-up), a Vault with the
real HostWriteLock; a second open file description of locks/write holds the flock (a file writer
or another process). A watcher thread looks at the loop thread's stack (no timing): if it is
waiting inside HostWriteLock.__enter__, the loop is blocked on the write lock -> the test fails
(then the flock is released so the test ends). FAILED on main f534622. Now the loop's thread
never writes there (``vault.store.db.writes_elsewhere``): the read goes to a thread, which waits
for the lock instead (the watcher then lets it go), and answers."""

from __future__ import annotations

import fcntl
import os
import sys
import threading
import time

from tests.helpers import OPERATOR_TOKEN, make_vault
from tests.server.test_deferred_audit import _run
from tests.server.test_shared_audit import _Setup
from vault.facade import Vault
from vault.home import VaultHome
from vault.locks import HostWriteLock
from vault.server.routes import FastDispatch


def _waiting_on_the_write_lock(thread_id: int) -> bool:
    return _in_the_write_lock(sys._current_frames().get(thread_id))


def _in_the_write_lock(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__enter__" and "locks.py" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def test_a_deferred_get_never_waits_for_the_write_lock_in_the_loop_thread(tmp_path):
    vdir = make_vault(tmp_path)
    setup = _Setup(vdir, workers=1, vaults_each=1)
    end = setup.ends[0]
    locks = VaultHome(vdir.home).locks
    v = Vault.open(vdir.home, write_lock=HostWriteLock(locks))  # as serve --workers opens them
    v.unseal_key_file(vdir.key_file)
    v.ctx.audit.group = end
    os.makedirs(locks, exist_ok=True)
    holder = os.open(os.path.join(locks, "write"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)  # the file writer (or another process's long write)
    seen: list[bool] = []
    done = threading.Event()

    def run(request, body):  # what add_route's run does for secrets.get first: the session
        return v.users.resume(OPERATOR_TOKEN, origin="http")

    async def main() -> None:
        loop_thread = threading.get_ident()

        def watch() -> None:
            while not done.is_set():
                if _waiting_on_the_write_lock(loop_thread):
                    seen.append(True)
                    break
                others = [f for t, f in sys._current_frames().items() if t != loop_thread]
                if any(_in_the_write_lock(f) for f in others):
                    break  # the read went to a thread, which may wait: let it have the lock
                time.sleep(0.01)  # polling the stack, not a timed assertion
            fcntl.flock(holder, fcntl.LOCK_UN)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            dispatch = FastDispatch.__new__(FastDispatch)
            dispatch.handoff = None  # the read's thread: starlette's pool, as without a hand-off
            principal = await dispatch._deferred(end, run, None, None)
            assert principal.name == "operator"  # answered, from the thread
        finally:
            done.set()
        watcher.join(60)

    try:
        _run(main())
        assert not seen, (
            "the event loop's thread waited for the vault's write lock (flock held elsewhere) "
            "inside a deferred secret get: the whole worker's loop was blocked"
        )
    finally:
        os.close(holder)
        v.close()
        setup.close()
