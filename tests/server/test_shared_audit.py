"""One audit group commit for all workers of ``cvault serve --workers N``, in the supervisor
(vault/server/shared_audit.py; docs/service.md "Worker processes").

In process, with real SQLite files: the supervisor's writer (:class:`AuditWriter`, on a real
:class:`VaultPool`) and two workers' ends (:class:`SharedAuditWriter`) on real socketpairs. Events
of both workers share one commit and each gets its own sequence number; an alarm refuses each
event on its own and the worker raises the same error; a writer that is gone (its socket
closed: the supervisor killed) fails every waiting and later event closed, never an answer. The
kill -9 test kills a real supervisor under load: every answered read has its durable event.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections import Counter

import pytest

from tests.helpers import OPERATOR_TOKEN, make_vault
from tests.server.harness import start_readers, start_service, wait_for_answers
from tests.server.test_workers import _durable_reads, _state, _vault_with_records, wait_for_workers
from vault.errors import AuditAlarm, AuditFailure
from vault.facade import Vault
from vault.server.pool import VaultPool
from vault.server.shared_audit import AuditWriter, SharedAuditWriter


class _Setup:
    """A supervisor's writer and ``workers`` workers' ends, each with one unsealed vault."""

    def __init__(self, vdir, workers: int = 2, vaults_each: int = 4):
        self.pool = VaultPool(vdir.home)
        self.pool.unseal("key_file", str(vdir.key_file))
        self.writer = AuditWriter(self.pool)
        self.gone: list[int] = []
        self.ends: list[SharedAuditWriter] = []
        self.socks: list[socket.socket] = []
        self.vaults: list[list[Vault]] = []
        for n in range(workers):
            theirs, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self.socks.append(theirs)
            self.writer.add(theirs)
            end = SharedAuditWriter(ours, on_gone=lambda n=n: self.gone.append(n))
            self.ends.append(end)
            mine = []
            for _ in range(vaults_each):
                v = Vault.open(vdir.home, write_lock=threading.RLock())
                v.unseal_key_file(vdir.key_file)
                v.ctx.audit.group = end
                mine.append(v)
            self.vaults.append(mine)

    def close(self) -> None:
        self.writer.stop()  # closes the supervisor's ends
        for mine in self.vaults:
            for v in mine:
                v.close()
        self.pool.close()


def _append_all(vaults: list[Vault], action: str = "secret.get") -> dict:
    results: dict = {}

    def append(key, v: Vault) -> None:
        try:
            results[key] = v.ctx.audit.append(actor=f"u{key}", action=action, outcome="allow")
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            results[key] = exc

    threads = [threading.Thread(target=append, args=(i, v)) for i, v in enumerate(vaults)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_events_of_two_workers_share_commits_and_each_gets_its_own_seq(tmp_path):
    vdir = make_vault(tmp_path)
    setup = _Setup(vdir)
    try:
        before = setup.vaults[0][0].ctx.audit.head()[0]
        results = _append_all([v for mine in setup.vaults for v in mine])
        assert all(isinstance(seq, int) for seq in results.values()), results
        assert sorted(results.values()) == list(range(before + 1, before + 9))  # one each, no gap
        assert setup.writer.events == 8 and setup.writer.batches <= 8
        rows = (
            setup.vaults[0][0]
            .ctx.db.conn.execute("SELECT seq, actor FROM audit_events WHERE seq > ?", (before,))
            .fetchall()
        )
        assert {actor: seq for seq, actor in rows} == {f"u{k}": seq for k, seq in results.items()}
    finally:
        setup.close()
    assert vdir.cli("audit", "verify").returncode == 0


def test_an_alarm_is_raised_in_the_worker_as_the_same_error(tmp_path):
    """A file writer deleted the newest checkpoint: the supervisor's writer refuses each
    non-exempt event (exit 6) and still writes a sign-in; the worker raises AuditAlarm itself."""
    vdir = make_vault(tmp_path)
    setup = _Setup(vdir, workers=1, vaults_each=1)
    try:
        with sqlite3.connect(vdir.home / "vault.db") as db:
            db.execute("DELETE FROM audit_checkpoints WHERE id = (SELECT max(id) FROM audit_checkpoints)")
        v = setup.vaults[0][0]
        with pytest.raises(AuditAlarm) as raised:
            v.ctx.audit.append(actor="eve", action="secret.get", outcome="allow")
        assert raised.value.exit_code == 6 and raised.value.first_bad_seq is not None
        assert isinstance(v.ctx.audit.append(actor="eve", action="auth.login", outcome="allow"), int)
    finally:
        setup.close()


def test_a_writer_that_is_gone_fails_every_waiting_and_later_event_closed(tmp_path):
    """The supervisor killed while events wait for their commit: each waiting append raises
    AuditFailure (exit 8, never a sequence number), and so does every later one."""
    vdir = make_vault(tmp_path)
    setup = _Setup(vdir, workers=1)
    held = threading.Event()
    release = threading.Event()
    real_lease = setup.pool.lease

    def stuck_lease(*args, **kwargs):  # the writer's batch never commits (a hung supervisor)
        held.set()
        release.wait(60)
        return real_lease(*args, **kwargs)

    setup.pool.lease = stuck_lease  # type: ignore[method-assign]
    try:
        results: dict = {}
        worker = threading.Thread(target=lambda: results.update(_append_all(setup.vaults[0])))
        worker.start()
        assert held.wait(30)
        # the supervisor's end of the socketpair closes, as after its kill -9
        setup.socks[0].shutdown(socket.SHUT_RDWR)
        worker.join(60)
        assert len(results) == 4
        assert all(isinstance(r, AuditFailure) for r in results.values()), results
        assert setup.gone == [0]  # the worker is told to stop
        with pytest.raises(AuditFailure):
            setup.vaults[0][0].ctx.audit.append(actor="eve", action="secret.get", outcome="allow")
    finally:
        release.set()
        setup.close()


def test_a_malformed_message_is_ignored_and_the_writer_goes_on(tmp_path):
    vdir = make_vault(tmp_path)
    setup = _Setup(vdir, workers=1, vaults_each=1)
    try:
        for junk in (b"\xff", b"[1, 2]", b'[1, ["a", "b", "c", null, null, "cli", "!!", null]]', b"[]"):
            setup.ends[0].sock.send(junk)
        assert isinstance(setup.vaults[0][0].ctx.audit.append(actor="eve", action="x", outcome="ok"), int)
    finally:
        setup.close()


@pytest.mark.slow
def test_kill_9_of_the_supervisor_mid_load_leaves_no_answered_read_without_its_event(tmp_path):
    """Eight readers over both workers; the supervisor (which commits every worker's events) is
    killed with SIGKILL: every read answered 200 has its durable audit event, and the workers stop."""
    vdir, paths, before = _vault_with_records(tmp_path)
    service = start_service(vdir, tmp_path / "svc", "--workers", "2")
    pids = wait_for_workers(service, 2)
    answered: list[str] = []
    stop = threading.Event()

    threads = start_readers(service, OPERATOR_TOKEN, paths, answered, stop)
    wait_for_answers(answered, 150)
    assert len(answered) >= 150
    service.proc.kill()  # kill -9, mid-flight
    service.proc.wait(10)
    deadline = time.monotonic() + 30
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if os.path.exists(f"/proc/{p}") and "Z" not in _state(p)}
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    assert not alive, alive  # no worker left holding the root key
    durable, got = _durable_reads(vdir, before), Counter(answered)
    missing = {p: n - durable[p] for p, n in got.items() if durable[p] < n}
    assert not missing, f"answered reads with no durable audit event: {missing}"
