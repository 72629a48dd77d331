"""The service's fast dispatch (vault.server.routes.FastDispatch): a well-formed registry call
skips FastAPI's request handling, everything else is FastAPI's, and both give the same answers.

The ASGI-level tests drive the middleware directly (a recording stand-in for FastAPI behind it);
the service test sends the same requests once as ``application/json`` (the fast path) and once as
``application/x-cvault+json`` (a JSON type the fast path leaves to FastAPI, which parses it the
same way) and compares status, body and the headers that matter.
"""

from __future__ import annotations

import asyncio
import json
import threading

from pydantic import BaseModel, ConfigDict

from tests.server.harness import start_service
from vault.server.routes import FastDispatch, json_response


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


def _call(raw: bytes, content_type: bytes = b"application/json", chunks: int = 1):
    """Run FastDispatch over one request: (what reached the stand-in, what the client got)."""
    reached: list[bytes] = []
    answers: list[dict] = []

    def run(request, body):
        return json_response({"hello": body.name})

    async def fallback(scope, receive, send):
        message = await receive()
        got = message.get("body", b"")
        while message.get("more_body"):
            message = await receive()
            got += message.get("body", b"")
        reached.append(got)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    size = max(1, len(raw) // chunks)
    parts = [raw[i : i + size] for i in range(0, len(raw), size)] or [b""]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)
    ]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        answers.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/x/y",
        "headers": [(b"content-type", content_type)],
        "client": ("127.0.0.1", 1),
        "query_string": b"",
    }
    middleware = FastDispatch(fallback, {"/v1/x/y": (Body, run)}, lambda: {})
    # in a thread of its own: a browser test earlier in this worker may leave an event loop
    # running in the main thread, where asyncio.run refuses to start another
    worker = threading.Thread(target=asyncio.run, args=(middleware(scope, receive, send),))
    worker.start()
    worker.join()
    return reached, answers


def test_a_well_formed_call_is_dispatched_without_fastapi():
    reached, answers = _call(b'{"name": "ada"}', chunks=3)
    assert reached == []
    assert answers[0]["status"] == 200
    assert json.loads(answers[1]["body"]) == {"hello": "ada"}


def test_everything_else_reaches_fastapi_with_the_body_intact():
    for raw, ctype in [
        (b'{"name": 5}', b"application/json"),  # the model refuses it: FastAPI's 422 words
        (b'{"name": "ada", "x": 1}', b"application/json"),  # extra field
        (b'["ada"]', b"application/json"),  # not an object
        (b'{"name": "ada"', b"application/json"),  # invalid JSON
        (b"[" * 5000 + b"]" * 5000, b"application/json"),  # nested too deeply for json.loads
        (b'{"name": "ada"}', b"text/plain"),  # another content type
        (b'{"name": "ada"}', b"application/x-cvault+json"),
    ]:
        reached, answers = _call(raw, ctype, chunks=2)
        assert reached == [raw], (raw, ctype)
        assert answers[0]["status"] == 299


def test_fast_and_fastapi_paths_answer_alike(tmp_path):
    from tests.factories import engineer_on_acme
    from tests.helpers import make_vault

    vdir = make_vault(tmp_path, with_operator=False)
    v = vdir.open()
    token = engineer_on_acme(v)
    v.secrets.put(v.users.resume(token), "acme", "fw", "access", {"password": "pw-0"})
    v.close()
    service = start_service(vdir, tmp_path / "svc")
    try:
        cases = [
            (token, "/v1/secrets/get", {"client_name": "acme", "path": "fw"}),  # 200
            (token, "/v1/secrets/get", {"client_name": "acme", "path": "nope"}),  # 404
            (token, "/v1/secrets/get", {"client_name": "globex", "path": "fw"}),  # 404 client
            (None, "/v1/secrets/get", {"client_name": "acme", "path": "fw"}),  # 401
            ("cvs1_" + "A" * 43, "/v1/secrets/get", {"client_name": "acme", "path": "fw"}),  # 401
            (token, "/v1/secrets/list", {"client_name": "acme"}),
            (token, "/v1/users/whoami", None),
        ]
        for bearer, path, body in cases:
            answers = []
            for ctype in ("application/json", "application/x-cvault+json"):
                client = service.client(bearer)
                try:
                    client.conn = None
                    status, payload = client.post(path, body, headers={"Content-Type": ctype})
                finally:
                    client.close()
                answers.append((status, payload))
            assert answers[0] == answers[1], (path, body, answers)
    finally:
        service.stop()
