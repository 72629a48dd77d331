"""Audit group commit in the service (issue 20 item 4; docs/architecture.md "Audit group commit").

Concurrent requests' events share one transaction and one fsync; each request returns only after
the commit holding its own event; a failed batch fails every request in it (fail closed). The
kill -9 test runs a real ``cvault serve`` under concurrent reads and kills it: every read that was
answered has its audit event in the database afterwards.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from tests.helpers import OPERATOR_TOKEN, add_client, make_vault, operator
from tests.server.harness import start_readers, start_service, wait_for_answers
from vault.audit.log import GroupCommit
from vault.errors import AuditFailure
from vault.facade import Vault


def _pooled(vdir, n: int, group: GroupCommit) -> list[Vault]:
    lock = threading.RLock()
    vaults = []
    for _ in range(n):
        v = Vault.open(vdir.home, write_lock=lock)
        v.unseal_key_file(vdir.key_file)
        v.ctx.audit.group = group
        vaults.append(v)
    return vaults


def _hold_first_batch_until(group: GroupCommit, vault: Vault, queued: int):
    """The first batch's leader waits (in its fail injector, before writing) until ``queued``
    other events are queued behind it: a deterministic batch, no sleeping on a clock."""
    first = {"done": False}

    def hold() -> None:
        if first["done"]:
            return
        first["done"] = True
        deadline = time.monotonic() + 30
        while len(group._queue) < queued:
            if time.monotonic() > deadline:
                raise AssertionError("the other appends never queued")
            time.sleep(0.001)

    vault.ctx.audit.fail_injector = hold


def test_concurrent_appends_share_one_commit_and_each_gets_its_own_seq(tmp_path):
    vdir = make_vault(tmp_path)
    group = GroupCommit()
    vaults = _pooled(vdir, 9, group)
    leader, others = vaults[0], vaults[1:]
    _hold_first_batch_until(group, leader, queued=len(others))
    before = leader.ctx.audit.head()[0]
    seqs: dict[int, int] = {}

    def append(i: int, v: Vault) -> None:
        seqs[i] = v.ctx.audit.append(actor=f"u{i}", action="secret.get", outcome="allow", client=None)

    t0 = threading.Thread(target=append, args=(0, leader))
    t0.start()
    while not group._leading:
        time.sleep(0.001)
    threads = [threading.Thread(target=append, args=(i + 1, v)) for i, v in enumerate(others)]
    for t in threads:
        t.start()
    for t in [t0, *threads]:
        t.join(60)
    assert sorted(seqs.values()) == list(range(before + 1, before + 10))
    # two commits for nine events: the held leader's own, then one batch of the eight behind it
    assert group.events == 9 and group.batches == 2
    with sqlite3.connect(vdir.home / "vault.db") as db:
        actors = dict(db.execute("SELECT seq, actor FROM audit_events WHERE seq > ?", (before,)).fetchall())
    assert {actors[seqs[i]] for i in seqs} == {f"u{i}" for i in range(9)}
    assert leader.audit.verify(operator()).ok
    for v in vaults:
        v.close()


def test_a_failed_batch_fails_every_request_in_it(tmp_path):
    vdir = make_vault(tmp_path)
    group = GroupCommit()
    vaults = _pooled(vdir, 4, group)
    before = vaults[0].ctx.audit.head()[0]
    gate = threading.Event()
    held = {"first": True}

    def fail() -> None:  # the first leader waits until the three others queue; every write fails
        gate.wait(30)
        if held.pop("first", False):
            while len(group._queue) < 3:
                time.sleep(0.001)
        raise sqlite3.OperationalError("disk I/O error")

    for v in vaults:
        v.ctx.audit.fail_injector = fail
    errors: list[BaseException] = []

    def append(v: Vault) -> None:
        try:
            v.ctx.audit.append(actor="x", action="secret.get", outcome="allow")
        except AuditFailure as exc:
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(v,)) for v in vaults]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(60)
    assert len(errors) == 4  # nobody's operation goes ahead without its event
    assert group.batches == 2  # the leader alone, then one batch of three that failed together
    assert vaults[0].ctx.audit.head()[0] == before
    for v in vaults:
        v.close()


def test_an_integrity_alarm_in_a_batch_refuses_each_event_on_its_own(tmp_path):
    """A batch mixing signing-in events with others under a raised alarm (docs/audit.md section
    3): the others are refused (exit 6), the sign-ins are still written, and nothing is signed."""
    from vault.errors import AuditAlarm

    vdir = make_vault(tmp_path)
    group = GroupCommit()
    vaults = _pooled(vdir, 5, group)
    leader, others = vaults[0], vaults[1:]
    with sqlite3.connect(vdir.home / "vault.db") as db:  # a file writer deletes the newest checkpoint
        db.execute("DELETE FROM audit_checkpoints WHERE id = (SELECT max(id) FROM audit_checkpoints)")
    signed = leader.ctx.db.one("SELECT count(*) FROM audit_checkpoints")[0]
    _hold_first_batch_until(group, leader, queued=len(others))
    results: dict[int, object] = {}

    def append(i: int, v: Vault, action: str) -> None:
        try:
            results[i] = v.ctx.audit.append(actor=f"u{i}", action=action, outcome="allow")
        except AuditAlarm as exc:
            results[i] = exc

    t0 = threading.Thread(target=append, args=(0, leader, "auth.login"))
    t0.start()
    while not group._leading:
        time.sleep(0.001)
    actions = ["auth.login", "secret.get", "auth.stepup", "secret.list"]
    threads = [threading.Thread(target=append, args=(i + 1, v, actions[i])) for i, v in enumerate(others)]
    for t in threads:
        t.start()
    for t in [t0, *threads]:
        t.join(60)
    assert isinstance(results[0], int)  # the held leader's sign-in: written, unsigned
    assert isinstance(results[1], int) and isinstance(results[3], int)  # the sign-ins of the batch
    for i in (2, 4):
        assert isinstance(results[i], AuditAlarm) and results[i].exit_code == 6
    assert leader.ctx.db.one("SELECT count(*) FROM audit_checkpoints")[0] == signed
    for v in vaults:
        v.close()


@pytest.mark.slow
def test_kill_9_leaves_no_answered_read_without_its_durable_event(tmp_path):
    vdir = make_vault(tmp_path)
    v = vdir.open()
    add_client(v, "acme")
    paths = [f"rec/{i}" for i in range(40)]
    for p in paths:
        v.secrets.put(operator(), "acme", p, "note", {"text": p})
    before = v.ctx.audit.head()[0]
    v.close()
    service = start_service(vdir, tmp_path / "svc")
    answered: list[str] = []
    stop = threading.Event()

    threads = start_readers(service, OPERATOR_TOKEN, paths, answered, stop)
    wait_for_answers(answered, 150)
    service.proc.kill()  # kill -9, mid-flight
    service.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(30)
    assert len(answered) >= 150
    v = vdir.open()
    try:
        events = v.audit.log(operator(), action="secret.get", limit=0)
    finally:
        v.close()
    reads = [e for e in events if e["seq"] > before and e["outcome"] == "allow"]
    from collections import Counter

    durable, got = Counter(e["detail"] for e in reads), Counter(answered)
    missing = {p: n - durable[p] for p, n in got.items() if durable[p] < n}
    assert not missing, f"answered reads with no durable audit event: {missing}"
