"""The host's own unseal path (issue 11): a Unix socket only the service's user (and root) can
reach, so unseal junk from the network can never lock the operator out.

``cvault serve`` listens on ``<vault>/unseal.sock`` (``--unseal-socket PATH`` elsewhere; the
vault folder is 0700, the socket 0600, and on Linux the peer's uid, from ``SO_PEERCRED``, must be
the service's or root's). ``cvault operator unseal --local`` sends one JSON line,
``{"passphrase": ...}`` or ``{"recovery_key": ...}``, and reads one back: ``{"sealed": false}``
or ``{"error": {"code", "message", "exit_code"}}``.

Attempts on this path are serialized with every other unseal (one Argon2id at a time) and
audited (origin ``host``), but never throttled: whoever can connect is the service's own user,
who can read ``vault.db`` and guess offline anyway. The network path (``POST /v1/sys/unseal``)
stays throttled per source address (docs/service.md, "Unseal").
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import sys
import threading
from pathlib import Path

from vault.errors import VaultError

log = logging.getLogger("cvault.server")

SOCKET_NAME = "unseal.sock"
#: one request line at most this long (a passphrase or a recovery key, as JSON)
MAX_LINE = 64 * 1024


def default_socket(home: Path | str) -> Path:
    return Path(home) / SOCKET_NAME


#: AF_UNIX paths are limited to 107 bytes; a longer one is reached through its folder's file
#: descriptor (Linux: /proc/self/fd/N/NAME)
MAX_SUN_PATH = 100


@contextlib.contextmanager
def _addressable(path: Path):
    if len(os.fsencode(path)) <= MAX_SUN_PATH or not sys.platform.startswith("linux"):
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _addressable(path) as address:
            probe.connect(address)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _peer_allowed(conn: socket.socket) -> bool:
    if not sys.platform.startswith("linux"):
        return True  # the socket file's mode (0600, in the 0700 vault folder) is the check
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid in (0, os.getuid())


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data and len(data) <= MAX_LINE:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def _error(exc: VaultError) -> dict:
    return {"error": {"code": exc.code, "message": exc.message, "exit_code": exc.exit_code}}


class HostUnseal:
    """The listening socket and its accept thread (a daemon: it never holds the process up)."""

    def __init__(self, pool, path: Path | str):
        self.pool = pool
        self.path = Path(path)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.path.exists() or self.path.is_symlink():
            if _listening(self.path):
                from vault.errors import InvalidInput

                raise InvalidInput(
                    f"another cvault serve already listens on {self.path} (give --unseal-socket PATH)"
                )
            self.path.unlink()  # a stale socket of an earlier run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            with _addressable(self.path) as address:
                sock.bind(address)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(4)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="cvault-host-unseal", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by stop()
            with conn:
                try:
                    conn.settimeout(30)
                    answer = self._answer(conn)
                    conn.sendall(json.dumps(answer).encode() + b"\n")
                except OSError:
                    continue

    def _answer(self, conn: socket.socket) -> dict:
        from vault.errors import AccessDenied, InvalidInput

        if not _peer_allowed(conn):
            return _error(AccessDenied("access denied: only the service's own user may unseal here"))
        try:
            body = json.loads(_read_line(conn) or b"null")
        except ValueError:
            return _error(InvalidInput("invalid request: one JSON line"))
        given = (
            [(k, body[k]) for k in ("passphrase", "recovery_key") if isinstance(body.get(k), str)]
            if isinstance(body, dict)
            else []
        )
        if len(given) != 1:
            return _error(InvalidInput("give exactly one of passphrase or recovery_key"))
        if not self.pool.sealed:
            return {"sealed": False}
        try:
            self.pool.unseal(*given[0], origin="host", source="host")
        except VaultError as exc:
            return _error(exc)
        log.info("service unsealed with a %s on the host socket", given[0][0].replace("_", " "))
        return {"sealed": self.pool.sealed}


def unseal_over_socket(path: Path | str, body: dict, timeout: float = 120.0) -> dict:
    """The client side (``cvault operator unseal --local``): one request, one answer, sent only
    to a listener of this user (or root): the same ``SO_PEERCRED`` rule as the service's."""
    from vault.errors import AccessDenied, VaultSealed

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            with _addressable(Path(path)) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError):
            raise VaultSealed(
                f"no service listening on {path}: is cvault serve running for this vault?"
            ) from None
        except PermissionError:
            raise VaultSealed(f"cannot reach {path}: run this as the service's user") from None
        if not _peer_allowed(sock):
            # a socket bound by another user (a shared --unseal-socket folder while serve was
            # down) gets no passphrase: only this user's (or root's) service is answered
            raise AccessDenied(
                f"access denied: {path} is held by another user, not the service; nothing was sent"
            )
        sock.sendall(json.dumps(body).encode() + b"\n")
        line = _read_line(sock)
    finally:
        sock.close()
    try:
        answer = json.loads(line)
    except ValueError:
        raise VaultSealed(f"no answer from the service on {path}") from None
    return answer
