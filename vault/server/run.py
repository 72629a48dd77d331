"""Run the service with uvicorn: HTTPS, loopback by default, plain HTTP only on loopback.

``serve(...)`` is what ``cvault serve`` calls (click stays in ``cli.commands.serve``); the library
never prints: the line that says where the service listens goes to ``announce``.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from vault.errors import InvalidInput, VaultError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8443
#: seconds in-flight requests get after SIGTERM (docs/service.md, "Stopping")
GRACEFUL_SECONDS = 5


def is_loopback(host: str) -> bool:
    """127.0.0.0/8 and ::1 only (a name such as ``localhost`` could resolve anywhere)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, tls: bool, insecure_http: bool) -> None:
    if insecure_http:
        if not is_loopback(host):
            raise InvalidInput(
                f"refusing plain HTTP on {host}: --insecure-http is for 127.0.0.0/8 "
                "and ::1 only; give --tls-cert and --tls-key"
            )
        return
    if not tls:
        raise InvalidInput(
            "serving needs --tls-cert and --tls-key (HTTPS); plain HTTP "
            "(--insecure-http) is allowed on loopback only, for tests"
        )


def check_options(host: str, tls_cert: str | None, tls_key: str | None, insecure_http: bool) -> bool:
    """Refuse a bad combination of bind and TLS options in one line; returns whether TLS is on."""
    tls = bool(tls_cert and tls_key)
    if bool(tls_cert) != bool(tls_key):
        raise InvalidInput("give both --tls-cert and --tls-key")
    if tls and insecure_http:
        raise InvalidInput("--insecure-http and --tls-cert exclude each other")
    check_bind(host, tls=tls, insecure_http=insecure_http)
    for what, path in (("TLS certificate", tls_cert), ("TLS key", tls_key)):
        if path and not Path(path).is_file():
            raise InvalidInput(f"{what} file {path} not found")
    if tls_key:
        from vault.home import read_private_file

        read_private_file(tls_key, "TLS private key")  # refused when others can read it
    return tls


#: the service's own dependencies beyond uvicorn (pyproject.toml, docs/dependencies.md), loaded only
#: by ``cvault serve``: uvloop is its event loop (TLS and transports in C), httptools its HTTP/1.1
#: parser (llhttp, C)
SERVER_LIBRARIES = ("uvloop", "httptools")


def require_server_libraries() -> None:
    """Refuse in one line, before anything listens, when a library the service runs on is missing
    (a broken install): there is no fallback to a slower path."""
    import importlib

    for name in SERVER_LIBRARIES:
        try:
            importlib.import_module(name)
        except ImportError:
            raise VaultError(
                f"cvault serve needs the Python package {name}, a dependency of cvault that is not "
                "installed here: reinstall cvault (pip install client-config-vault)"
            ) from None


def setup_logging(log_level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def serve(
    home: Path | str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    insecure_http: bool = False,
    key_file: str | None = None,
    settings=None,
    log_level: str = "info",
    announce: Callable[[str], None] = lambda line: None,
    unseal_socket: str | None = None,
    workers: int = 1,
) -> None:
    """``workers`` > 1: a supervisor process and that many worker processes on one listener
    (:mod:`vault.server.workers`, docs/service.md "Worker processes"); 1: this process serves."""
    tls = check_options(host, tls_cert, tls_key, insecure_http)
    require_server_libraries()
    from vault.hardening import forbid_core_dumps

    forbid_core_dumps()  # before any passphrase or key is in this process (issue 11)
    if workers > 1:
        from vault.server.workers import supervise

        supervise(
            home,
            workers=workers,
            host=host,
            port=port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            key_file=key_file,
            settings=settings,
            log_level=log_level,
            announce=announce,
            unseal_socket=unseal_socket,
        )
        return
    from vault.server.pool import VaultPool

    setup_logging(log_level)
    pool = VaultPool(home, cache_seconds=settings.custody_cache_seconds if settings else 900.0)
    if key_file:
        pool.unseal("key_file", key_file)
    from vault.server.app import create_app

    app = create_app(pool, settings)
    from vault.server.host_unseal import HostUnseal, default_socket

    host_unseal = HostUnseal(pool, unseal_socket or default_socket(home))
    host_unseal.start()
    scheme = "https" if tls else "http"
    shown = f"[{host}]" if ":" in host else host
    state = "sealed: run cvault operator unseal" if pool.sealed else "unsealed"
    announce(f"cvault: serving {scheme}://{shown}:{port} ({state}); host unseal socket {host_unseal.path}")

    def stopped() -> None:
        host_unseal.stop()
        pool.close()

    server = make_server(
        app,
        settings,
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        log_level=log_level,
        on_shutdown=stopped,
    )
    try:
        server.run()
    finally:
        stopped()


def make_server(
    app,
    settings,
    *,
    host: str,
    port: int,
    tls_cert: str | None,
    tls_key: str | None,
    log_level: str,
    on_shutdown: Callable[[], None],
    max_connections: int | None = None,
):
    """The uvicorn server of the service (one process's): the service's HTTP protocol, deadlines,
    connection cap and SIGTERM handling. ``on_shutdown`` runs at the end of its shutdown."""
    import uvicorn  # heavy: only here
    from uvicorn.protocols.http import httptools_impl

    from vault.server.http import JsonErrorHttpToolsProtocol, OncePerMinute, json_service_unavailable

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        access_log=False,
        log_level=log_level,
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=30,
        # SIGTERM: stop accepting, give in-flight requests this long, then close what is left
        # (the process is gone within 10 s, issue 11; an Argon2id wait ends at its own timeout)
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        lifespan="on",
        loop="uvloop",  # its TLS and transports are C (Cython): less event-loop CPU per request
        ws="none",  # no WebSocket endpoint: an Upgrade request is an ordinary request
        # malformed requests answered in the API's error shape; half-sent ones 408 (review R3)
        http=JsonErrorHttpToolsProtocol.with_deadlines(
            settings.head_timeout if settings else 10.0, settings.body_timeout if settings else 120.0
        ),
        limit_concurrency=max_connections or (settings.max_connections if settings else 512),
    )
    httptools_impl.service_unavailable = json_service_unavailable  # uvicorn's 503, in the JSON shape
    logging.getLogger("asyncio").addFilter(OncePerMinute())
    from vault import crypto

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            # requests waiting for Argon2id answer 503 busy at once instead of holding the
            # process (each would wait its turn: seconds apiece); the running one finishes
            crypto.argon2_close()
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets=None) -> None:
            # here, not after run(): uvicorn re-raises the SIGTERM it handled once serve() ends,
            # so code after run() never runs on a signal
            await super().shutdown(sockets=sockets)
            on_shutdown()

    return Server(config)
