"""Service mode, client side: :class:`RemoteVault`, a stand-in for the facade over HTTPS.

With ``--addr URL`` / ``CVAULT_ADDR``, ``CliState.vault()`` returns a RemoteVault instead of
opening a local vault. It has the facade's service attributes (``secrets``, ``clients``, ...) and
method signatures, generated from the one operation table :mod:`vault.server.spec`; each call is
one HTTPS request (keep-alive), returns the facade's types (dicts and lists; ``SecretRecord``,
``VerifyResult`` rebuilt from JSON) and raises the facade's ``VaultError`` subclasses, found by
the error ``code`` the service sends. So every command runs unchanged, with the same output and
exit codes. The ``principal`` argument is ignored: the service derives the principal from the
bearer token (the session token saved by ``cvault login``).

Light on purpose (``cvault secret get`` pays for every import): ``socket`` and ``ssl`` from the
standard library with a minimal HTTP/1.1 exchange (:class:`_Connection`), never requests, FastAPI
or even ``http.client``. ``CVAULT_CACERT`` names a PEM bundle to trust
(a private CA) instead of the system's.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from vault.errors import InvalidInput, VaultError
from vault.server import spec

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
        self._conn = None
        self.origin = f"{url.scheme}://{url.netloc}{self.base}"

    def _connection(self) -> _Connection:
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
            self._conn = _Connection(self.host, self.port, ctx, self.timeout)
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
                f"cannot reach the cvault service at {self.origin}: {_reason(exc)}"
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


class _Connection:
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
        try:
            name = host.encode("ascii")
        except UnicodeEncodeError:
            name = host
        sock = socket.create_connection((name, port), timeout=timeout)
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
        try:
            self.sock.close()
        except OSError:
            pass


def _reason(exc: Exception) -> str:
    text = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        text = "TLS certificate verify failed (set CVAULT_CACERT to your CA's PEM file)"
    return str(text)


def error_class(code: str, exit_code: int) -> type[VaultError]:
    """The facade's exception class for an error code (so ``except StepUpRequired`` works);
    for a code only the API has, a VaultError subclass carrying that code and exit code."""
    seen: list[type] = [VaultError]
    while seen:
        cls = seen.pop()
        if (
            getattr(cls, "code", None) == code
            and cls.exit_code == exit_code
            and cls.__module__.startswith("vault.")
        ):
            return cls
        seen.extend(cls.__subclasses__())
    return type(
        f"ServiceError_{code}", (VaultError,), {"code": code, "exit_code": exit_code, "__doc__": f"{code}."}
    )


def _error_from(status: int, payload: bytes) -> VaultError:
    try:
        err = json.loads(payload)["error"]
        code, message, exit_code = str(err["code"]), str(err["message"]), int(err["exit_code"])
    except (ValueError, KeyError, TypeError):
        return ServiceUnreachable(f"the cvault service answered HTTP {status} without an error body")
    return error_class(code, exit_code)(message)


# --- the facade stand-in --------------------------------------------------------------------------


class _RemoteId:
    """``vault.ctx.vault_id`` in remote mode: the session file is bound to the service address."""

    def __init__(self, origin: str):
        self.origin = origin

    def hex(self) -> str:
        return f"service:{self.origin}"


class RemoteContext:
    def __init__(self, vault: RemoteVault):
        self._vault = vault
        self.vault_id = _RemoteId(vault.transport.origin)

    def now(self) -> datetime:
        """The *service's* clock (relative dates such as ``+90d`` are read against it)."""
        data = self._vault.transport.request("GET", "/v1/time")
        return datetime.fromisoformat(data["now"].replace("Z", "+00:00"))


def _wire(p: spec.Param, value):
    if value is None:
        return None
    if p.type == "when" and isinstance(value, datetime):
        return value.isoformat()
    if p.type == "duration" and isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
            if seconds and seconds % size == 0:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"
    if p.type == "strlist":
        return [str(v) for v in value]
    if hasattr(value, "__fspath__"):
        return os.fspath(value)
    return value


class RemoteLogin:
    """What ``users.login`` returns, rebuilt: ``token`` and ``as_dict()`` as the facade's."""

    def __init__(self, data: dict):
        self.token = data.pop("token")
        self._data = data

    def as_dict(self) -> dict:
        return dict(self._data)


class RemoteService:
    def __init__(self, vault: RemoteVault, name: str):
        self._vault = vault
        self._name = name
        for op in spec.OPERATIONS:
            if op.service == name:
                setattr(self, op.method, self._proxy(op))

    def _proxy(self, op: spec.Op):
        names = [p.name for p in op.params]

        def method(*args, **kwargs):
            if op.auth and args:
                args = args[1:]  # the principal: the service takes it from the token
            kwargs.pop("principal", None)
            for name in op.local_only:
                kwargs.pop(name, None)
            if len(args) > len(names):
                raise TypeError(f"{op.method}() takes {len(names)} arguments")
            given = dict(zip(names, args))
            for key, value in kwargs.items():
                if key not in names or key in given:
                    raise TypeError(f"{op.method}() got an unexpected argument {key!r}")
                given[key] = value
            body = {}
            for p in op.params:
                if p.name in given and not (given[p.name] is None and p.default not in (None,)):
                    body[p.name] = _wire(p, given[p.name])
            data = self._vault.transport.request("POST", op.path, body if op.params else None, auth=op.auth)
            return self._vault.decode(op, data)

        method.__name__ = op.method
        return method


class _Refused:
    def __init__(self, what: str):
        self._what = what

    def __getattr__(self, name):
        raise InvalidInput(
            f"{self._what} works on the vault's own host only, not in service mode "
            "(unset --addr / CVAULT_ADDR)"
        )


class RemoteVault:
    """The facade's surface over HTTPS (see the module docstring)."""

    unsealed = True  # the service is sealed or not; a sealed one answers vault_sealed (exit 8)

    def __init__(self, addr: str, cacert: str | None = None):
        self.transport = Transport(addr, cacert)
        self.ctx = RemoteContext(self)
        for name in spec.SERVICES:
            setattr(self, name, RemoteService(self, name))
        self.slots = _Refused("unseal slots")
        self.maintenance = _Refused("doctor")
        users, secrets, audit, sync = self.users, self.secrets, self.audit, self.sync
        users.resume = self._resume
        users.login = self._login(users.login)
        secrets.export = self._secrets_export
        audit.export = self._audit_export
        sync.sign_in = lambda *a, **k: _Refused("remote login (device code)").sign_in

    # --- results --------------------------------------------------------------------------------

    def decode(self, op: spec.Op, data):
        if op.result == "secret_record":
            from vault.records import SecretRecord

            return SecretRecord(**data)
        if op.result == "verify_result":
            from vault.audit.verify import VerifyResult

            return VerifyResult(**data)
        if op.result == "login":
            return RemoteLogin(data)
        if op.result == "none":
            return None
        return data

    # --- the methods with a local side ----------------------------------------------------------

    def _resume(self, token: str, *, origin: str = "cli"):
        """No request: the token goes with each call and the service checks it then."""
        from vault.principal import Principal

        self.transport.token = token
        return Principal(name=_session_user(token) or "(session)", origin="service")

    def _login(self, call):
        def login(name, password, *, totp=None, recovery_code=None, origin="cli"):
            result = call(name, password, totp=totp, recovery_code=recovery_code)
            self.transport.token = result.token
            return result

        return login

    def _secrets_export(self, principal, client_name, out):
        from vault.records.export import write_export

        return write_export(out, self.secrets.export_records(principal, client_name))

    def _audit_export(self, principal, format, *, out=None, write=None, details=True):
        from pathlib import Path

        if (out is None) == (write is None):
            raise InvalidInput("give an output file or a writer")
        fd = None
        if out is not None:  # refuse an existing file before the service does any work
            try:
                fd = os.open(Path(out), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise InvalidInput(f"{out} already exists; refusing to overwrite it") from None
            except OSError as exc:
                raise InvalidInput(f"cannot create {out}: {exc.strerror}") from None
        try:
            data = self.audit.export_lines(principal, format, details=details)
        except BaseException:
            if fd is not None:
                os.close(fd)
                os.unlink(out)
            raise
        if fd is not None:
            with os.fdopen(fd, "w", encoding="ascii", errors="backslashreplace", newline="\n") as fh:
                for line in data["lines"]:
                    fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            return {**data["result"], "file": str(Path(out))}
        for line in data["lines"]:
            write(line)
        return data["result"]

    def close(self) -> None:
        self.transport.close()


def _session_user(token: str) -> str | None:
    """The user name saved next to this token by ``cvault login`` (for messages only)."""
    try:
        from cli.session_file import session_path

        doc = json.loads(session_path().read_text(encoding="utf-8"))
    except (OSError, ValueError, ImportError):
        return None
    return doc.get("user") if isinstance(doc, dict) and doc.get("token") == token else None
