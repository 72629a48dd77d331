"""The service client's transport: one keep-alive HTTPS connection, JSON in, JSON out, the
service's errors raised as the facade's exception classes.

Light on purpose (``cvault secret get`` pays for every import): ``socket`` and ``ssl`` from the
standard library with a minimal HTTP/1.1 exchange (:class:`Connection`), never requests, FastAPI
or even ``http.client``. ``CVAULT_CACERT`` names a PEM bundle to trust (a private CA) instead of
the system's.
"""

from __future__ import annotations

import contextlib
import json
import os
from urllib.parse import urlsplit

from vault.errors import InvalidInput, VaultError, error_class  # error_class: one copy, shared

TIMEOUT_SECONDS = 600  # a sweep or a sync push of many blobs is one long request


class ServiceUnreachable(VaultError):
    """the cvault service cannot be reached."""

    exit_code = 9
    code = "service_unreachable"


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Transport:
    """One keep-alive HTTPS connection to the service; JSON in, JSON out, errors raised."""

    def __init__(self, addr: str, cacert: str | None = None, timeout: float = TIMEOUT_SECONDS):
        url = urlsplit(addr if "://" in addr else f"https://{addr}")
        if url.scheme not in ("https", "http") or not url.hostname:
            raise InvalidInput(f"invalid service address {addr!r}: use https://HOST:PORT")
        if url.scheme == "http" and not _is_loopback(url.hostname):
            raise InvalidInput(f"refusing plain HTTP to {url.hostname}: use https://")
        self.https = url.scheme == "https"
        self.host = url.hostname
        self.port = url.port or (8443 if self.https else 80)
        self.base = url.path.rstrip("/")
        self.cacert = cacert if cacert is not None else os.environ.get("CVAULT_CACERT")
        self.timeout = timeout
        self.token: str | None = None
        self._conn: Connection | None = None
        self.origin = f"{url.scheme}://{url.netloc}{self.base}"

    def _connection(self) -> Connection:
        if self._conn is not None and self._conn.closed_by_peer():
            # the service closes a keep-alive connection after 30 s without a request
            # (vault/server/run.py); a resident agent's next read would fail on it: reconnect
            self.close()
        if self._conn is None:
            ctx = None
            if self.https:
                import ssl

                if self.cacert:
                    if not os.path.isfile(self.cacert):
                        raise InvalidInput(f"CA certificate file {self.cacert} not found (CVAULT_CACERT)")
                    ctx = ssl.create_default_context(cafile=self.cacert)
                else:
                    ctx = ssl.create_default_context()
            self._conn = Connection(self.host, self.port, ctx, self.timeout)
        return self._conn

    def request(self, method: str, path: str, body: dict | None = None, *, auth: bool = False):
        headers = {"Accept": "application/json"}
        data = b""
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            status, payload = self._connection().exchange(method, self.base + path, headers, data)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self.close()
            raise ServiceUnreachable(
                f"cannot reach the cvault service at {self.origin}: {_reason(exc, self.host, self.cacert)}"
            ) from None
        if 200 <= status < 300:
            try:
                return json.loads(payload) if payload else None
            except ValueError:
                raise ServiceUnreachable(
                    f"the service at {self.origin} sent a reply that is not JSON"
                ) from None
        raise _error_from(status, payload)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class Connection:
    """A minimal HTTP/1.1 client connection (keep-alive, Content-Length or chunked replies).

    Not ``http.client``: importing it pulls in the ``email`` package, ~20 ms, which is most of
    the remote ``secret get`` budget (docs/service.md, "Performance"). The service is ours and
    speaks plain HTTP/1.1 through uvicorn, so this small subset is enough."""

    MAX_HEADER = 64 * 1024
    MAX_BODY = 256 * 1024 * 1024

    def __init__(self, host: str, port: int, ctx, timeout: float):
        import socket

        # an ASCII name (or address) as bytes: getaddrinfo and ssl then skip the "idna" codec,
        # whose import (encodings.idna, stringprep, unicodedata) is ~1 ms of every remote
        # command; for an ASCII name the codec returns it unchanged anyway
        name: str | bytes
        try:
            name = host.encode("ascii")
        except UnicodeEncodeError:
            name = host
        sock = socket.create_connection((name, port), timeout=timeout)  # type: ignore[arg-type]
        # each request is one write, but no write of ours should ever wait for an ACK (Nagle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_hostname=name)
        self.sock = sock
        self.host = f"{host}:{port}"
        self.buf = b""

    def exchange(self, method: str, target: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        lines = [
            f"{method} {target} HTTP/1.1",
            f"Host: {self.host}",
            f"Content-Length: {len(body)}",
            "Connection: keep-alive",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = self._until(b"\r\n\r\n", self.MAX_HEADER).decode("latin-1").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ValueError("not an HTTP/1.1 reply")
        fields = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "chunked" in fields.get("transfer-encoding", "").lower():
            payload = b""
            while True:
                size = int(self._until(b"\r\n", 1024).split(b";")[0], 16)
                if size == 0:
                    self._until(b"\r\n", self.MAX_HEADER)
                    break
                payload += self._exactly(size + 2)[:-2]
                if len(payload) > self.MAX_BODY:
                    raise ValueError("reply too large")
        else:
            length = int(fields.get("content-length", "0"))
            if not 0 <= length <= self.MAX_BODY:
                raise ValueError("reply too large")
            payload = self._exactly(length)
        if fields.get("connection", "").lower() == "close":
            self.close()
        return int(parts[1]), payload

    def closed_by_peer(self) -> bool:
        """True when the service has closed this idle connection (or sent anything unasked: a TLS
        alert). Between two exchanges nothing is due, so a readable socket means it is gone."""
        import select

        if self.buf:
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionResetError("the service closed the connection")
        self.buf += data

    def _until(self, marker: bytes, limit: int) -> bytes:
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("reply header too large")
            self._fill()
        out, _, self.buf = self.buf.partition(marker)
        return out

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _reason(exc: Exception, host: str = "", cacert: str | None = None) -> str:
    """One line naming the real cause of a failed connection; for a certificate that does not
    verify, OpenSSL's own reason (name or address mismatch, unknown CA, expired) and what to do."""
    text = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        why = str(getattr(exc, "verify_message", "") or "").rstrip(".")
        lowered = why.lower()
        if "mismatch" in lowered or "hostname" in lowered:
            hint = (
                f"the certificate does not name {host} in its subjectAltName (the CN is not used): "
                "make one that does, or use cvault serve --self-signed (docs/service.md)"
            )
        elif "expired" in lowered or "not yet valid" in lowered:
            hint = "renew the service's certificate"
        elif cacert:
            hint = f"CVAULT_CACERT={cacert} does not hold the CA that signed the service's certificate"
        else:
            hint = "set CVAULT_CACERT to your CA's PEM file"
        text = f"TLS certificate verify failed: {why or 'not trusted'} ({hint})"
    return str(text)


def _error_from(status: int, payload: bytes) -> VaultError:
    try:
        err = json.loads(payload)["error"]
        code, message, exit_code = str(err["code"]), str(err["message"]), int(err["exit_code"])
    except (ValueError, KeyError, TypeError):
        return ServiceUnreachable(f"the cvault service answered HTTP {status} without an error body")
    return error_class(code, exit_code)(message)
