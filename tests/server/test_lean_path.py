"""The service's fast dispatch outside the middleware stack (vault.server.app.ServiceApp,
docs/architecture.md "The service's request path"): a plain registry call skips every middleware,
so it must carry the same answer headers the middlewares give (the security headers), leave every
request the body limit would look at to that middleware, and its thread hand-off
(vault.server.handoff.Handoff) must return results and raise errors like run_in_threadpool.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import threading

import pytest
from pydantic import BaseModel, ConfigDict

from tests.helpers import run_coroutine
from tests.server.harness import start_service
from vault.server.handoff import Handoff
from vault.server.http import MAX_HEAD_BYTES
from vault.server.routes import FastDispatch, json_response


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


def _served(headers: list[tuple[bytes, bytes]], raw: bytes, limit: int = 100):
    """Run FastDispatch (with a body limit and a header hook) over one request: (whether the
    stand-in behind it was reached, the messages sent)."""
    reached: list[bool] = []
    answers: list[dict] = []

    def run(request, body):
        return json_response({"hello": body.name, "auth": request.headers.get("Authorization")})

    async def fallback(scope, receive, send):
        reached.append(True)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    messages = [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        answers.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/x/y",
        "raw_path": b"/v1/x/y",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "query_string": b"",
    }
    middleware = FastDispatch(
        fallback,
        {"/v1/x/y": (Body, run)},
        lambda: {},
        limit=limit,
        headers=lambda scope, raw: [*raw, (b"x-added", b"1")],
        handoff=Handoff(max_threads=2),
    )
    worker = threading.Thread(target=asyncio.run, args=(middleware(scope, receive, send),))
    worker.start()
    worker.join()
    return bool(reached), answers


JSON = (b"content-type", b"application/json")


def test_a_plain_call_is_answered_with_the_added_headers():
    raw = b'{"name": "ada"}'
    reached, answers = _served(
        [JSON, (b"content-length", str(len(raw)).encode()), (b"authorization", b"Bearer t")], raw
    )
    assert not reached
    assert answers[0]["status"] == 200
    assert (b"x-added", b"1") in answers[0]["headers"]
    assert json.loads(answers[1]["body"]) == {"hello": "ada", "auth": "Bearer t"}


def test_what_the_body_limit_looks_at_is_left_to_the_middleware_stack():
    raw = b'{"name": "ada"}'
    size = str(len(raw)).encode()
    for headers in [
        [JSON],  # no Content-Length (chunked): counted by BodyLimit as it arrives
        [JSON, (b"content-length", b"101")],  # declared over the limit: BodyLimit's 413
        [JSON, (b"content-length", size), (b"x-big", b"a" * MAX_HEAD_BYTES)],  # head: 431
        [(b"content-type", b"text/plain"), (b"content-length", size)],
    ]:
        reached, answers = _served(headers, raw)
        assert reached, headers
        assert answers[0]["status"] == 299


def test_the_handoff_returns_raises_and_queues_past_its_threads():
    handoff = Handoff(max_threads=2)
    gate = threading.Event()
    names: set[str] = set()

    def work(n: int) -> int:
        gate.wait(30)
        names.add(threading.current_thread().name)
        return n * n

    def fail() -> None:
        raise LookupError("the operation's own error")

    async def main():
        calls = [asyncio.ensure_future(handoff.run(work, n)) for n in range(6)]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*calls)
        with pytest.raises(LookupError, match="own error"):
            await handoff.run(fail)
        return results

    assert run_coroutine(main()) == [n * n for n in range(6)]
    assert len(names) <= 2  # six calls on at most two threads


def _answer(port: int, cafile, token: str, content_type: str):
    conn = http.client.HTTPSConnection(
        "127.0.0.1", port, context=ssl.create_default_context(cafile=str(cafile)), timeout=30
    )
    try:
        body = json.dumps({"client_name": "acme", "path": "fw"}).encode()
        conn.request(
            "POST",
            "/v1/secrets/get",
            body=body,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
        )
        resp = conn.getresponse()
        data = resp.read()
        headers = sorted((k.lower(), v) for k, v in resp.getheaders() if k.lower() != "date")
        return resp.status, json.loads(data), headers
    finally:
        conn.close()


def test_the_fast_answer_has_the_headers_of_the_middleware_stack(tmp_path):
    """Over real HTTPS: the fast path's 200 and 404 carry exactly the headers of the same answer
    through FastAPI and the middlewares (security headers, HSTS, no-store), in any order."""
    from tests.factories import engineer_on_acme
    from tests.helpers import make_vault

    vdir = make_vault(tmp_path, with_operator=False)
    v = vdir.open()
    token = engineer_on_acme(v)
    v.secrets.put(v.users.resume(token), "acme", "fw", "access", {"password": "pw-0"})
    v.close()
    service = start_service(vdir, tmp_path / "svc")
    try:
        for bearer in (token, "cvs1_" + "A" * 43):
            fast = _answer(service.port, service.ca.ca_path, bearer, "application/json")
            slow = _answer(service.port, service.ca.ca_path, bearer, "application/x-cvault+json")
            assert fast == slow
            names = {k for k, _ in fast[2]}
            assert {"content-security-policy", "strict-transport-security", "x-frame-options"} <= names
            assert ("cache-control", "no-store") in fast[2]
        assert fast[0] == 401
    finally:
        service.stop()
