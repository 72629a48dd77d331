"""Service-mode test plumbing: a real ``cvault serve`` subprocess on loopback HTTPS (test CA from
tests/fakes/https.py) and a small keep-alive JSON client. People and their tokens: tests/factories.py.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.https import TestCA, make_test_ca
from tests.helpers import ROOT, VaultDir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    proc: subprocess.Popen
    port: int
    ca: TestCA
    log_path: Path

    @property
    def addr(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self, token: str | None = None, *, source: str | None = None) -> ApiClient:
        """``source``: another loopback address to send from (127.0.0.2: "another machine")."""
        return ApiClient(self.port, self.ca.ca_path, token, source=source)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_service(
    vdir: VaultDir,
    folder: Path,
    *args: str,
    unsealed: bool = True,
    ca: TestCA | None = None,
    timeout: float = 30,
) -> Service:
    """``cvault serve`` on 127.0.0.1:<free port> over HTTPS; waits until /v1/health answers."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = ca or make_test_ca(folder / "tls")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_") or k == "CVAULT_ALLOWED_HOSTS"}
    env["PYTHONPATH"] = str(ROOT)
    argv = [
        sys.executable,
        "-m",
        "cli.main",
        "--home",
        str(vdir.home),
        "serve",
        "--port",
        str(port),
        "--tls-cert",
        str(ca.cert_path),
        "--tls-key",
        str(ca.key_path),
        "--log-level",
        "warning",
        # one process unless the test asks for workers: what most tests look at is one service
        # (the default, auto, is one worker per CPU: tests/server/test_workers.py)
        *(() if "--workers" in args else ("--workers", "1")),
        *args,
    ]
    if unsealed:
        argv += ["--key-file", str(vdir.key_file)]
    log_path = folder / f"serve-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    service = Service(proc, port, ca, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"cvault serve exited {proc.returncode}: {service.log()[-2000:]}")
        try:
            status, _ = service.client().get("/v1/health")
            if status == 200:
                return service
        except OSError:
            pass
        if time.monotonic() > deadline:
            service.stop()
            raise RuntimeError(f"cvault serve did not start: {service.log()[-2000:]}")
        time.sleep(0.1)


def read_until_stopped(
    service: Service,
    token: str,
    paths: list[str],
    k: int,
    answered: list[str],
    stop,
    *,
    refused: list | None = None,
    reconnect: bool = False,
) -> None:
    """One keep-alive reader of ``paths`` (every 8th, from the ``k``-th) until ``stop`` is set, for
    the kill -9 tests: each path answered 200 goes to ``answered``, any other answer to
    ``refused`` (when given). A dropped connection was not answered: the reader ends, or with
    ``reconnect`` opens another connection and goes on."""
    client = service.client(token)
    i = k
    while not stop.is_set():
        path = paths[i % len(paths)]
        i += 8
        try:
            status, body = client.post("/v1/secrets/get", {"client_name": "acme", "path": path})
        except OSError:
            if not reconnect:
                return
            client = service.client(token)
            continue
        if status == 200:
            answered.append(path)
        elif refused is not None:
            refused.append((status, body))


def start_readers(
    service: Service, token: str, paths: list[str], answered: list[str], stop, n: int = 8, **kw
):
    """``n`` :func:`read_until_stopped` threads, started; returns them."""
    import threading

    threads = [
        threading.Thread(
            target=read_until_stopped, args=(service, token, paths, k, answered, stop), kwargs=kw
        )
        for k in range(n)
    ]
    for t in threads:
        t.start()
    return threads


def wait_for_answers(answered: list, count: int, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while len(answered) < count and time.monotonic() < deadline:
        time.sleep(0.01)


class ApiClient:
    """One keep-alive HTTPS connection; ``post(path, body) -> (status, json)``."""

    def __init__(self, port: int, cafile: Path, token: str | None = None, *, source: str | None = None):
        self.port = port
        self.token = token
        self.source = source
        self.ctx = ssl.create_default_context(cafile=str(cafile))
        self.conn: http.client.HTTPSConnection | None = None
        self.headers: dict[str, str] = {}

    def request(
        self, method: str, path: str, body=None, *, raw: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, object]:
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(
                "127.0.0.1",
                self.port,
                context=self.ctx,
                timeout=60,
                source_address=(self.source, 0) if self.source else None,
            )
        h = {"Content-Type": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            self.conn.request(method, path, body=data, headers=h)
            resp = self.conn.getresponse()
            payload = resp.read()
        except (http.client.HTTPException, OSError):
            self.close()
            raise
        #: the last answer's headers (``Retry-After`` of a 429)
        self.headers = {k.lower(): v for k, v in resp.getheaders()}
        if resp.getheader("connection", "").lower() == "close":
            self.close()
        return resp.status, (json.loads(payload) if payload else None)

    def post(self, path: str, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def get(self, path: str):
        return self.request("GET", path)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def assert_error_shape(body, code: str | None = None) -> dict:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "exit_code"}, err
    assert isinstance(err["code"], str) and isinstance(err["message"], str)
    assert isinstance(err["exit_code"], int)
    if code is not None:
        assert err["code"] == code, err
    return err
