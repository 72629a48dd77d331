""":class:`ServiceVault`: a stand-in for the facade over HTTPS.

With ``--addr URL`` / ``CVAULT_ADDR``, ``CliState.vault()`` returns a ServiceVault instead of
opening a local vault. It has the facade's service attributes (``secrets``, ``clients``, ...) and
method signatures, generated from the one registry :mod:`vault.api_spec`; each call is one HTTPS
request (keep-alive), returns the facade's types (dicts and lists; ``SecretRecord``,
``VerifyResult`` rebuilt from JSON by the operation's result codec) and raises the facade's
``VaultError`` subclasses, found by the error ``code`` the service sends. So every command runs
unchanged, with the same output and exit codes. The ``principal`` argument is ignored: the
service derives the principal from the bearer token (the session token saved by ``cvault login``).
Dates and durations go as the text the user typed: the service reads them with its own clock.

A facade method the registry does not list is host-only (unseal slots, doctor, the replica's
configuration and sign-in): calling it raises one line, exit 2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cli.service_client.transport import Transport
from vault import api_spec as spec
from vault.errors import InvalidInput

if TYPE_CHECKING:
    from vault.api import (
        AccessAPI,
        AuditAPI,
        BackupsAPI,
        ClientsAPI,
        ContractsAPI,
        CustodyAPI,
        IntegrationsAPI,
        MaintenanceAPI,
        SecretsAPI,
        SlaAPI,
        SlotsAPI,
        SyncAPI,
        TeamsAPI,
        UsersAPI,
    )

HOST_ONLY = "works on the vault's own host only, not in service mode (unset --addr / CVAULT_ADDR)"


def _wire(p: spec.Param, value):
    """A facade argument as JSON: a library caller's datetime or timedelta becomes text."""
    if value is None:
        return None
    if p.type in ("when", "since") and isinstance(value, datetime):
        return value.isoformat()
    if p.type == "duration" and isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
            if seconds and seconds % size == 0:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"
    if p.type == "strlist":
        return [str(v) for v in value]
    if p.type == "bytes":
        import base64

        return base64.b64encode(value).decode()
    if hasattr(value, "__fspath__"):
        return os.fspath(value)
    return value


class ServiceLogin:
    """What ``users.login`` returns, rebuilt: ``token`` and ``as_dict()`` as the facade's."""

    def __init__(self, data: dict):
        self.token = data.pop("token")
        self._data = data

    def as_dict(self) -> dict:
        return dict(self._data)


def _record(data: dict):
    from vault.records import SecretRecord

    return SecretRecord(**data)


def _verify_result(data: dict):
    from vault.audit.verify import VerifyResult

    return VerifyResult(**data)


def _attachment(data: dict) -> dict:
    import base64

    return {**data, "data": base64.b64decode(data["data"])}


#: how each result codec of the registry is rebuilt from JSON
DECODERS: dict[str, Callable[[Any], Any]] = {
    "json": lambda data: data,
    "none": lambda data: None,
    "record": _record,
    "verify": _verify_result,
    "login": ServiceLogin,
    "attachment": _attachment,
}


def export_file(call: Callable, principal, client_name: str, out) -> dict:
    """``secrets.export``: the service decrypts, this side writes the new 0600 file."""
    from vault.records.export import write_export

    return write_export(out, call(principal, client_name))


def lines_to_file(
    call: Callable,
    principal,
    format: str,
    *,
    out=None,
    write=None,
    details: bool = True,
    after_seq: int | None = None,
    since=None,
):
    """``audit.export``: the service sends the lines, this side writes them (file or callback)."""
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
        data = call(principal, format, details=details, after_seq=after_seq, since=since)
    except BaseException:
        if fd is not None:
            os.close(fd)
            os.unlink(out)
        raise
    if fd is not None:
        from vault.audit.export import line_end

        end = line_end(format)
        with os.fdopen(fd, "w", encoding="ascii", errors="backslashreplace", newline="") as fh:
            for line in data["lines"]:
                fh.write(line + end)
            fh.flush()
            os.fsync(fh.fileno())
        return {**data["result"], "file": str(Path(out))}
    for line in data["lines"]:
        write(line)
    return data["result"]


#: the client-side adapters of the registry (``Op.client_side``)
ADAPTERS: dict[str, Callable] = {"export_file": export_file, "lines_to_file": lines_to_file}


class ServiceMethods:
    """One facade service over HTTPS: a proxy per registry operation of that service."""

    def __init__(self, vault: ServiceVault, name: str):
        self._vault = vault
        self._name = name
        for op in spec.OPERATIONS:
            if op.service == name:
                proxy = self._proxy(op)
                setattr(self, op.method, proxy)
                if op.client_side is not None:
                    method, adapter = op.client_side
                    setattr(self, method, _adapt(ADAPTERS[adapter], proxy))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        raise InvalidInput(f"{self._name} {name.replace('_', ' ')} {HOST_ONLY}")

    def _proxy(self, op: spec.Op):
        names = [p.name for p in op.params]
        transport = self._vault.transport

        def method(*args, **kwargs):
            if op.auth and args:
                args = args[1:]  # the principal: the service takes it from the token
            kwargs.pop("principal", None)
            if op.passes_origin:
                kwargs.pop("origin", None)  # the service records the caller's address
            for name in op.local_only:
                kwargs.pop(name, None)
            if len(args) > len(names):
                raise TypeError(f"{op.method}() takes {len(names)} arguments")
            given = dict(zip(names, args, strict=False))  # fewer positional arguments than parameters
            for key, value in kwargs.items():
                if key not in names or key in given:
                    raise TypeError(f"{op.method}() got an unexpected argument {key!r}")
                given[key] = value
            body = {}
            for p in op.params:
                if p.name in given and not (given[p.name] is None and p.default not in (None,)):
                    body[p.name] = _wire(p, given[p.name])
            data = transport.request("POST", op.path, body if op.params else None, auth=op.auth)
            result = DECODERS[op.result](data)
            if op.result == "login":
                transport.token = result.token  # this client's later calls act in the new session
            return result

        method.__name__ = op.method
        return method


def _adapt(adapter: Callable, call: Callable) -> Callable:
    def method(*args, **kwargs):
        return adapter(call, *args, **kwargs)

    method.__name__ = adapter.__name__
    return method


class ServiceUsers(ServiceMethods):
    def resume(self, token: str, *, origin: str = "cli"):
        """No request: the token goes with each call and the service checks it then."""
        from vault.principal import Principal

        self._vault.transport.token = token
        return Principal(name=_session_user(token) or "(session)", origin="service")


class _HostOnly:
    def __init__(self, what: str):
        self._what = what

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        raise InvalidInput(f"{self._what} {HOST_ONLY}")


class ServiceVault:
    """The facade's surface over HTTPS (see the module docstring). The services are built from
    the registry at run time; these annotations say what they provide (``vault.api``), and
    ``tests/server/test_registry.py`` checks the proxies against the facade."""

    unsealed = True  # the service is sealed or not; a sealed one answers vault_sealed (exit 8)
    users: UsersAPI
    access: AccessAPI
    teams: TeamsAPI
    contracts: ContractsAPI
    integrations: IntegrationsAPI
    clients: ClientsAPI
    secrets: SecretsAPI
    sla: SlaAPI
    audit: AuditAPI
    sync: SyncAPI
    slots: SlotsAPI
    maintenance: MaintenanceAPI
    custody: CustodyAPI
    backups: BackupsAPI

    def __init__(self, addr: str, cacert: str | None = None):
        self.transport = Transport(addr, cacert)
        for name in spec.SERVICES:
            setattr(self, name, (ServiceUsers if name == "users" else ServiceMethods)(self, name))
        # facade services with no operation in the registry
        self.slots = cast("SlotsAPI", _HostOnly("unseal slots"))
        self.maintenance = cast("MaintenanceAPI", _HostOnly("doctor"))
        self.custody = cast("CustodyAPI", _HostOnly("custody"))
        self.backups = cast("BackupsAPI", _HostOnly("backup"))

    def unseal_key_file(self, path: Path | str) -> None:
        raise InvalidInput(f"unsealing {HOST_ONLY}; the operator unseals the service")

    def unseal_passphrase(self, passphrase: str) -> None:
        raise InvalidInput(f"unsealing {HOST_ONLY}; the operator unseals the service")

    @property
    def session_scope(self) -> str:
        """What a session file is bound to: this service's address."""
        return f"service:{self.transport.origin}"

    def close(self) -> None:
        self.transport.close()


def _session_user(token: str) -> str | None:
    """The user name saved next to this token by ``cvault login`` (for messages only)."""
    try:
        from cli.session_file import session_file

        with open(session_file(), encoding="utf-8") as fh:  # a str path: no pathlib on this path
            doc = json.loads(fh.read())
    except (OSError, ValueError, ImportError):
        return None
    return doc.get("user") if isinstance(doc, dict) and doc.get("token") == token else None
