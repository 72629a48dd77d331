"""A stranger's chunked body cannot get past the body limit (docs/service.md "Limits",
docs/security.md guarantee 8b) by also declaring a small ``Content-Length`` (review4 R4-8).

h11 frames a request that carries both ``Content-Length`` and ``Transfer-Encoding: chunked`` as
chunked (T-E wins) and uvicorn hands both headers on. ``FastDispatch`` (vault/server/routes.py),
which runs outside the ASGI middleware, took such a request by its declared length and buffered
every chunk before anything looked at it: 96 MiB sent to ``/v1/users/login`` (no token needed)
grew the service by ~289 MiB. Now a request with a ``Transfer-Encoding`` (or two lengths) goes
to the application, whose ``BodyLimit`` answers 413 after at most 8 MiB drained, and the fast
path stops reading past the limit whatever was declared."""

from __future__ import annotations

import contextlib
import socket
import ssl

from tests.helpers import copy_vault, run_coroutine
from tests.server.harness import start_service

CHUNK = 1024 * 1024
SENT_MIB = 48  # far past 2 MiB + the 8 MiB a refusal drains


def _peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_chunked_body_with_a_small_content_length_is_not_buffered_whole(staff_template, tmp_path):
    vdir = copy_vault(staff_template.vdir, tmp_path)
    service = start_service(vdir, tmp_path / "service")
    try:
        before = _peak_kib(service.proc.pid)
        ctx = ssl.create_default_context(cafile=str(service.ca.ca_path))
        raw = socket.create_connection(("127.0.0.1", service.port), timeout=60)
        sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        head = (
            "POST /v1/users/login HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{service.port}\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 2\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        sent = 0
        with contextlib.suppress(OSError):  # a server that stops reading resets the connection
            sock.sendall(head)
            piece = b"%x\r\n" % CHUNK + b" " * CHUNK + b"\r\n"
            for _ in range(SENT_MIB):
                sock.sendall(piece)
                sent += 1
            sock.sendall(b"0\r\n\r\n")
            sock.settimeout(60)
            sock.recv(4096)  # the answer (413 from the body limit, after the fact)
        with contextlib.suppress(OSError):
            sock.close()
        grown_mib = (_peak_kib(service.proc.pid) - before) / 1024
    finally:
        service.stop()
    assert grown_mib < 40, (
        f"{sent} MiB sent as a chunked body declared 2 bytes long; the service's peak memory grew by"
        f" {grown_mib:.0f} MiB (the body limit is 2 MiB)"
    )


def test_the_fast_path_stops_reading_past_the_limit_whatever_was_declared():
    """Defence in depth under the Transfer-Encoding rule: a body that outgrows the limit while it
    arrives is handed to the application (its body limit answers) after one chunk past it."""

    from vault.server.routes import FastDispatch

    handed: list = []

    async def app(scope, receive, send):
        handed.append(await receive())

    chunks = [{"type": "http.request", "body": b"x" * 8, "more_body": True} for _ in range(100)]
    read: list = []

    async def receive():
        read.append(chunks[len(read)])
        return read[-1]

    fast = FastDispatch(app, {"/v1/x": (None, None)}, dict, limit=20)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/x",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"10")],
    }
    run_coroutine(fast(scope, receive, lambda message: None))
    assert len(read) == 3  # 24 bytes > 20: it stopped there
    assert handed == [chunks[0]]  # and replayed what it had read to the application
