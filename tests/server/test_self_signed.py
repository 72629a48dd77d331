"""``cvault serve --self-signed`` and TLS errors that name their real cause (issue 17)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.helpers import ROOT, run_cli
from tests.server.harness import free_port
from vault import crypto
from vault.server.tls import wanted_names


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_")}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


@contextlib.contextmanager
def self_signed_service(vdir, port: int):
    argv = [sys.executable, "-m", "cli.main", "--home", str(vdir.home), "serve", "--self-signed"]
    argv += ["--port", str(port), "--key-file", str(vdir.key_file), "--log-level", "warning"]
    log = vdir.home.parent / f"serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=_env(), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "Uvicorn running" not in log.read_text() and "serving https" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(0.3)
        yield log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _status(addr: str, cacert: str) -> subprocess.CompletedProcess:
    return run_cli("operator", "status", env=_env(CVAULT_ADDR=addr, CVAULT_CACERT=cacert))


def test_self_signed_serves_the_bind_address_and_prints_the_ca(vdir):
    port = free_port()
    with self_signed_service(vdir, port) as out:
        m = re.search(r"export CVAULT_CACERT=(\S+)", out)
        assert m, out
        ca = m.group(1)
        assert f"export CVAULT_ADDR=https://127.0.0.1:{port}" in out
        for host in ("127.0.0.1", "localhost"):
            proc = _status(f"https://{host}:{port}", ca)
            assert proc.returncode == 0 and "unsealed" in proc.stdout, proc.stderr
    folder = vdir.home / "tls"
    names, addresses, _ = crypto.tls_certificate_names((folder / "server.pem").read_bytes())
    assert "localhost" in names and {"127.0.0.1", "::1"} <= set(addresses)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for f in folder.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    # a restart reuses the certificate: the engineers' CVAULT_CACERT stays valid
    before = (folder / "ca.pem").read_bytes()
    with self_signed_service(vdir, port) as out:
        assert "reusing the self-signed certificate" in out
    assert (folder / "ca.pem").read_bytes() == before
    # the vault still opens and checks out with the tls folder in it
    assert (
        run_cli("doctor", env=_env(CVAULT_HOME=str(vdir.home), CVAULT_KEY_FILE=str(vdir.key_file))).returncode
        == 0
    )


def test_wildcard_bind_names_the_host_and_loopback():
    names, addresses = wanted_names("0.0.0.0", ("vault.example.internal", "192.0.2.10"))
    assert socket.gethostname().lower() in names and "localhost" in names
    assert "vault.example.internal" in names
    assert {"127.0.0.1", "::1", "192.0.2.10"} <= set(addresses)
    assert wanted_names("192.0.2.7") == ([], ["192.0.2.7"])


@contextlib.contextmanager
def tls_server(cert: Path, key: Path):
    """A bare TLS listener on 127.0.0.1 (the handshake is all the client gets to)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def _pair(folder: Path, names: list[str], addresses: list[str]) -> tuple[Path, Path, Path]:
    folder.mkdir()
    ca, cert, key = crypto.self_signed_tls(names, addresses, days=1, now_epoch=int(time.time()), ca_label="t")
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    for path, data in zip(paths, (ca, cert, key), strict=True):
        path.write_bytes(data)
    return paths


def test_tls_errors_name_the_real_cause(tmp_path):
    # the certificate: it does not name 127.0.0.1 (a CN, or another name, is not enough)
    ca, cert, key = _pair(tmp_path / "named", ["vault.example.internal"], [])
    with tls_server(cert, key) as port:
        proc = _status(f"https://127.0.0.1:{port}", str(ca))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 9 and len(lines) == 1, proc.stderr
    assert "IP address mismatch" in lines[0] and "subjectAltName" in lines[0]
    assert "set CVAULT_CACERT" not in lines[0]  # it is set: that is not the cause
    # the CA file names another CA
    other, _, _ = _pair(tmp_path / "other", ["x"], [])
    good_ca, good_cert, good_key = _pair(tmp_path / "good", [], ["127.0.0.1"])
    with tls_server(good_cert, good_key) as port:
        wrong = _status(f"https://127.0.0.1:{port}", str(other))
        right = _status(f"https://127.0.0.1:{port}", str(good_ca))
    assert wrong.returncode == 9 and f"CVAULT_CACERT={other} does not hold the CA" in wrong.stderr
    assert "IP address mismatch" not in right.stderr  # past the handshake: not a TLS error
