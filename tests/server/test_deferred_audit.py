"""A read's audit answer awaited in the event loop (vault/server/shared_audit.py ``Deferral``,
vault/server/routes.py ``FastDispatch._deferred``; docs/service.md "Worker processes").

With ``--workers``, ``secret get`` runs in the loop's thread and its audit event's answer is an
asyncio future instead of a blocked thread. Fail closed must hold exactly as before: the answer
waits until the event is durable, an error answer refuses it with the same error, and no answer
(the supervisor gone) refuses it with AuditFailure. In process, with real SQLite files and the
supervisor's real writer on real socketpairs (test_shared_audit's set-up); the kill -9 test of
test_shared_audit replays a real supervisor's death under readers of this path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import threading

import pytest

from tests.helpers import make_vault
from tests.server.test_shared_audit import _Setup
from vault.errors import AccessDenied, AuditAlarm, AuditFailure
from vault.server import shared_audit
from vault.server.routes import FastDispatch, json_response
from vault.server.shared_audit import Deferral


def _rows(vdir, actor: str) -> int:
    with sqlite3.connect(vdir.home / "vault.db") as db:
        return db.execute("SELECT count(*) FROM audit_events WHERE actor = ?", (actor,)).fetchone()[0]


def _run(coro) -> None:
    """``asyncio.run`` in a thread of its own (a browser test may leave a loop in the main one)."""
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - raised again below
            failure.append(exc)

    worker = threading.Thread(target=main)
    worker.start()
    worker.join(120)
    assert not worker.is_alive()
    if failure:
        raise failure[0]


def _one_worker(tmp_path):
    """A vault, one worker's audit end wired to the supervisor's writer (test_shared_audit's
    set-up), that worker's vault and its end."""
    vdir = make_vault(tmp_path)
    setup = _Setup(vdir, workers=1, vaults_each=1)
    return vdir, setup, setup.vaults[0][0], setup.ends[0]


def _deferred_append(loop, end, v) -> tuple[Deferral, int]:
    """ada's ``secret.get`` event appended under a new deferral (sent, not waited for), and what
    the append returned."""
    deferral = Deferral(loop)
    with end.deferring(deferral):
        seq = v.ctx.audit.append(actor="ada", action="secret.get", outcome="allow")
    return deferral, seq


def _stuck(setup: _Setup):
    """The supervisor's writer holds its batch until ``release`` (a slow commit)."""
    held, release = threading.Event(), threading.Event()
    real_lease = setup.pool.lease

    def stuck_lease(*args, **kwargs):
        held.set()
        release.wait(60)
        return real_lease(*args, **kwargs)

    setup.pool.lease = stuck_lease  # type: ignore[method-assign]
    return held, release


def test_a_deferred_event_is_settled_only_once_it_is_durable(tmp_path):
    vdir, setup, v, end = _one_worker(tmp_path)
    held, release = _stuck(setup)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        deferral, seq = _deferred_append(loop, end, v)
        assert seq == 0
        assert len(deferral.futures) == 1  # sent, not waited for in this thread
        settled = asyncio.ensure_future(deferral.settled())
        assert await loop.run_in_executor(None, held.wait, 30)  # the supervisor has the event
        for _ in range(50):
            await asyncio.sleep(0)
        assert not settled.done() and _rows(vdir, "ada") == 0  # not durable: not settled
        release.set()
        await settled
        assert _rows(vdir, "ada") == 1

    try:
        _run(main())
        # outside a deferral, appends wait in their thread as before
        assert v.ctx.audit.append(actor="bob", action="secret.get", outcome="allow") > 0
    finally:
        release.set()
        setup.close()


def test_no_answer_from_the_supervisor_refuses_a_deferred_event(tmp_path):
    """The supervisor's end closes (its kill -9) while the event waits for its commit: the
    deferral raises AuditFailure, and a later deferred append fails at once."""
    vdir, setup, v, end = _one_worker(tmp_path)
    held, release = _stuck(setup)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        deferral, _ = _deferred_append(loop, end, v)
        assert await loop.run_in_executor(None, held.wait, 30)
        setup.socks[0].shutdown(socket.SHUT_RDWR)
        with pytest.raises(AuditFailure):
            await deferral.settled()
        with end.deferring(Deferral(loop)), pytest.raises(AuditFailure):
            v.ctx.audit.append(actor="ada", action="secret.get", outcome="allow")

    try:
        _run(main())
        assert setup.gone == [0]
    finally:
        release.set()
        setup.close()


def test_an_error_answer_is_raised_by_the_deferral_as_the_same_error(tmp_path):
    vdir, setup, v, end = _one_worker(tmp_path)
    with sqlite3.connect(vdir.home / "vault.db") as db:
        db.execute("DELETE FROM audit_checkpoints WHERE id = (SELECT max(id) FROM audit_checkpoints)")

    async def main() -> None:
        deferral = Deferral(asyncio.get_running_loop())
        with end.deferring(deferral):
            v.ctx.audit.append(actor="eve", action="secret.get", outcome="allow")
        with pytest.raises(AuditAlarm) as raised:
            await deferral.settled()
        assert raised.value.exit_code == 6

    try:
        _run(main())
    finally:
        setup.close()


class _Writer:
    """A writer whose every deferred event gets ``answer`` (None: no answer) from the loop."""

    def __init__(self, answer):
        self.answer = answer

    @contextlib.contextmanager
    def deferring(self, deferral: Deferral):
        future = deferral.loop.create_future()
        deferral.loop.call_soon(future.set_result, self.answer)
        deferral.futures.append(future)
        yield deferral


def _dispatch(writer, run, path: str = "/v1/secrets/get") -> list[dict]:
    answers: list[dict] = []
    messages = [{"type": "http.request", "body": b'{"name": "x"}', "more_body": False}]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        answers.append(message)

    async def refused(request, exc):
        from fastapi.responses import Response

        return Response(json.dumps({"error": type(exc).__name__}).encode(), status_code=503)

    async def fallback(scope, receive, send):  # pragma: no cover - the fast path takes these
        raise AssertionError("not taken by the fast path")

    from tests.server.test_fast_dispatch import Body

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "query_string": b"",
    }
    middleware = FastDispatch(
        fallback,
        {path: (Body, run)},
        lambda: {AuditFailure: refused, AuditAlarm: refused, AccessDenied: refused},
        deferring=writer,
        deferred=frozenset({"/v1/secrets/get"}),
        defer_alone=True,
    )
    _run(middleware(scope, receive, send))
    return answers


def test_a_deferred_read_whose_event_is_not_answered_is_refused_not_answered():
    answers = _dispatch(_Writer(None), lambda request, body: json_response({"secret": "pw-0"}))
    assert answers[0]["status"] == 503
    assert json.loads(answers[1]["body"]) == {"error": "AuditFailure"}
    assert b"pw-0" not in answers[1]["body"]


def test_an_audit_failure_comes_before_the_operations_own_error():
    """As when the audit append raised inside the operation: its refusal is the answer."""

    def denied(request, body):
        raise AccessDenied("access denied: not assigned")  # the read's own error

    error = {"code": AuditFailure.code, "message": "no audit", "exit_code": AuditFailure.exit_code}
    answers = _dispatch(_Writer({"id": 1, "error": error}), denied)
    assert answers[0]["status"] == 503
    assert json.loads(answers[1]["body"]) == {"error": "AuditFailure"}


def test_a_deferred_read_is_answered_once_its_event_is_answered():
    answers = _dispatch(_Writer({"id": 1, "seq": 7}), lambda request, body: json_response({"secret": "ok"}))
    assert answers[0]["status"] == 200 and json.loads(answers[1]["body"]) == {"secret": "ok"}


def test_a_timed_out_deferred_event_leaves_no_pending_entry(tmp_path, monkeypatch):
    """review11 R11-2: a deferred read whose audit answer timed out was refused, but its entry
    stayed in the writer's pending table for ever (the threaded path pops it)."""
    vdir, setup, v, end = _one_worker(tmp_path)
    held, release = _stuck(setup)  # the supervisor holds the event (alive, no answer)
    monkeypatch.setattr(shared_audit, "ANSWER_TIMEOUT", 0.2)  # the deferral's own timer, shortened

    async def main() -> None:
        loop = asyncio.get_running_loop()
        deferral, _ = _deferred_append(loop, end, v)
        assert await loop.run_in_executor(None, held.wait, 30)
        with pytest.raises(AuditFailure):
            await deferral.settled()  # refused: fail closed holds
        with end._lock:
            left = len(end._pending)
        assert left == 0, f"{left} pending entry kept after the deferred read was refused"

    try:
        _run(main())
    finally:
        release.set()
        setup.close()
