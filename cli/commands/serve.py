"""``cvault serve`` (service mode, docs/spec.md §11) and ``cvault operator unseal|status``."""

from __future__ import annotations

import os

import click

from cli.output import emit, json_option
from cli.state import host_only, read_secret_file
from vault.errors import InvalidInput

#: at most this many worker processes (``--workers``)
MAX_WORKERS = 64


class WorkerCount(click.ParamType):
    """``--workers``: a number of worker processes from 1 to :data:`MAX_WORKERS`, or ``auto``
    (resolved by :func:`auto_workers`)."""

    name = "auto|N"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        if text.isdigit() and 1 <= int(text) <= MAX_WORKERS:
            return int(text)
        self.fail(f"give 'auto' or a number of worker processes from 1 to {MAX_WORKERS}", param, ctx)


def auto_workers(argon2_queue: int, max_connections: int) -> int:
    """``--workers auto``, the default: one worker process per CPU this process may run on (its
    affinity mask), as docs/service.md "Worker processes" recommends, since one process stops
    scaling with connections (docs/performance.md, the "(1 worker)" rows); within what the
    other options allow (each worker queues at least one login, and needs a connection of its
    own), at most :data:`MAX_WORKERS`. 1 is the one-process service."""
    cpus = len(os.sched_getaffinity(0))
    return max(1, min(cpus, MAX_WORKERS, argon2_queue, max_connections - 1))


@host_only
@click.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (plain HTTP only on 127.0.0.0/8 or ::1).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8443, show_default=True)
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="Server certificate (PEM, with chain).")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="Its private key (PEM, 0600).")
@click.option("--insecure-http", is_flag=True, help="Plain HTTP, for tests and development on loopback only.")
@click.option(
    "--self-signed",
    is_flag=True,
    help="Development and first contact: make (or reuse) a CA and a certificate naming the bind "
    "address in <vault>/tls/, and print the CA file for CVAULT_CACERT. Production: --tls-cert.",
)
@click.option(
    "--san",
    "sans",
    multiple=True,
    metavar="NAME",
    help="With --self-signed: one more host name or address the certificate names (repeatable).",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False),
    envvar="CVAULT_KEY_FILE",
    help="Unseal at start with this key file (else sealed until 'cvault operator unseal').",
)
@click.option(
    "--sweep-interval",
    type=click.FloatRange(min=0),
    default=300,
    show_default=True,
    help="Seconds between SLA sweeps (0: off).",
)
@click.option(
    "--outbox-interval",
    type=click.FloatRange(min=0),
    default=60,
    show_default=True,
    help="Seconds between OneDrive outbox drains (0: off).",
)
@click.option(
    "--checkpoint-interval",
    type=click.FloatRange(min=0),
    default=300,
    show_default=True,
    help="Seconds between signed audit checkpoints (0: off).",
)
@click.option(
    "--backup-dir",
    type=click.Path(file_okay=False),
    default="",
    help="Folder for scheduled backups (daily, and after every shred or purge).",
)
@click.option("--backup-remote", is_flag=True, help="Also upload scheduled backups to the OneDrive replica.")
@click.option(
    "--backup-interval",
    type=click.FloatRange(min=60),
    default=86400,
    show_default=True,
    help="Seconds between scheduled backups.",
)
@click.option(
    "--backup-keep", type=click.IntRange(1, 1000), default=7, show_default=True, help="Backups kept."
)
@click.option(
    "--key-cache-seconds",
    type=click.FloatRange(min=0),
    default=900,
    show_default=True,
    help="How long unwrapped custody secrets and client keys stay in memory (0: not at all).",
)
@click.option(
    "--login-burst",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Login/enroll/unseal attempts per client address at once ...",
)
@click.option(
    "--login-per-minute",
    type=click.FloatRange(min=0.01),
    default=10,
    show_default=True,
    help="... then this many per minute.",
)
@click.option(
    "--webhook-burst",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Refused PSA webhook requests per source (and per claimed integration) at once ...",
)
@click.option(
    "--webhook-per-minute",
    type=click.FloatRange(min=0.01),
    default=10,
    show_default=True,
    help="... then this many per minute; past that 429 unread, summarised in the audit log.",
)
@click.option(
    "--webhook-summary-interval",
    type=click.FloatRange(min=1),
    default=60,
    show_default=True,
    help="Seconds between the audit events that summarise throttled webhook requests.",
)
@click.option(
    "--argon2-queue",
    type=click.IntRange(min=1, max=1024),
    default=16,
    show_default=True,
    help="Logins waiting for their Argon2id turn (one runs at a time); more are answered 503 busy.",
)
@click.option(
    "--head-timeout",
    type=click.FloatRange(min=0.1, max=300),
    default=10,
    show_default=True,
    help="Seconds a request head may take to arrive; then 408 and the connection is closed.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0.1, max=3600),
    default=120,
    show_default=True,
    help="Seconds a request body may take after its head; then 408 and closed.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1, max=100000),
    default=512,
    show_default=True,
    help="Connections served at once; more are answered 503 busy (keep below LimitNOFILE).",
)
@click.option(
    "--workers",
    type=WorkerCount(),
    default="auto",
    show_default=True,
    help="Worker processes serving the API: auto is one per CPU (1: this process serves). "
    "Limits, the seal state and the background jobs stay one for all.",
)
@click.option(
    "--unseal-socket",
    type=click.Path(dir_okay=False),
    help="The host's own unseal socket (default <vault>/unseal.sock; 'cvault operator unseal --local').",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
@click.pass_obj
def serve_cmd(
    state,
    host,
    port,
    tls_cert,
    tls_key,
    insecure_http,
    self_signed,
    sans,
    key_file,
    sweep_interval,
    outbox_interval,
    checkpoint_interval,
    backup_dir,
    backup_remote,
    backup_interval,
    backup_keep,
    key_cache_seconds,
    login_burst,
    login_per_minute,
    webhook_burst,
    webhook_per_minute,
    webhook_summary_interval,
    argon2_queue,
    head_timeout,
    body_timeout,
    max_connections,
    workers,
    unseal_socket,
    log_level,
):
    """Serve this vault over an HTTPS JSON API (docs/service.md)."""
    from vault.server.run import require_server_libraries, serve

    require_server_libraries()  # one line, before anything imports them
    from vault.server.app import ServiceSettings

    if workers == "auto":
        workers = auto_workers(argon2_queue, max_connections)

    if sans and not self_signed:
        raise InvalidInput("--san is for --self-signed")
    if self_signed:
        if tls_cert or tls_key or insecure_http:
            raise InvalidInput(
                "--self-signed makes its own certificate: leave out --tls-cert, --tls-key, --insecure-http"
            )
        import time

        from vault.server.tls import ensure_self_signed

        made = ensure_self_signed(state.home, host, tuple(sans), int(time.time()))
        tls_cert, tls_key = str(made.cert), str(made.key)
        first = made.names[0] if host in ("0.0.0.0", "::") and made.names else host
        shown = f"[{first}]" if ":" in first else first
        where = ", ".join(made.names + made.addresses)
        click.echo(
            f"cvault: {'new' if made.created else 'reusing the'} self-signed certificate for {where}",
            err=True,
        )
        if made.replaced:
            click.echo("cvault: a new CA: CLIs that trusted the older ca.pem need this one", err=True)
        click.echo("cvault: on each engineer's machine (copy the CA file there):", err=True)
        click.echo(f"  export CVAULT_CACERT={made.ca}", err=True)
        click.echo(f"  export CVAULT_ADDR=https://{shown}:{port}", err=True)

    from vault import crypto

    crypto.ARGON2_QUEUE = argon2_queue  # read at each call (vault.crypto.argon2_turn)
    settings = ServiceSettings(
        address_burst=login_burst,
        address_per_minute=login_per_minute,
        webhook_burst=webhook_burst,
        webhook_per_minute=webhook_per_minute,
        webhook_summary_interval=webhook_summary_interval,
        sweep_interval=sweep_interval,
        outbox_interval=outbox_interval,
        checkpoint_interval=checkpoint_interval,
        backup_dir=backup_dir,
        backup_remote=backup_remote,
        backup_interval=backup_interval,
        backup_keep=backup_keep,
        custody_cache_seconds=key_cache_seconds,
        head_timeout=head_timeout,
        body_timeout=body_timeout,
        max_connections=max_connections,
    )
    serve(
        state.home,
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        insecure_http=insecure_http,
        key_file=key_file,
        settings=settings,
        log_level=log_level,
        announce=lambda line: click.echo(line, err=True),
        unseal_socket=unseal_socket,
        workers=workers,
    )


@click.group("operator")
def operator():
    """Operate a running service (needs --addr or CVAULT_ADDR)."""


def _transport(state):
    from cli.service_client.transport import Transport

    if not state.addr:
        raise InvalidInput("give the service address with --addr URL or CVAULT_ADDR")
    return Transport(state.addr)


@operator.command("unseal")
@click.option(
    "--local",
    is_flag=True,
    help="Unseal the service running on this host through its unseal socket (never locked by "
    "network junk; run as the service's user).",
)
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False),
    help="With --local: the socket (default <vault>/unseal.sock, as cvault serve --unseal-socket).",
)
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False),
    help="Read the passphrase from this file (else a hidden prompt).",
)
@click.option(
    "--recovery-key-file",
    type=click.Path(dir_okay=False),
    help="Unseal with the recovery key kept in this file instead.",
)
@json_option
@click.pass_obj
def operator_unseal(state, local, socket_path, passphrase_file, recovery_key_file, as_json):
    """Send the passphrase (or recovery key) to a sealed service over HTTPS, or with --local
    through the service's unseal socket on this host."""
    import sys

    if passphrase_file and recovery_key_file:
        raise InvalidInput("use either --passphrase-file or --recovery-key-file")
    if socket_path and not local:
        raise InvalidInput("--socket is for --local")
    transport = None if local else _transport(state)
    if recovery_key_file:
        body = {"recovery_key": read_secret_file(recovery_key_file, "recovery key")}
    elif passphrase_file:
        body = {"passphrase": read_secret_file(passphrase_file, "passphrase")}
    elif os.environ.get("CVAULT_PASSPHRASE_FILE"):
        body = {"passphrase": read_secret_file(os.environ["CVAULT_PASSPHRASE_FILE"], "passphrase")}
    elif sys.stdin.isatty():
        body = {"passphrase": click.prompt("Vault passphrase", hide_input=True, err=True)}
    else:
        raise InvalidInput("no passphrase: use --passphrase-file or run in a terminal")
    if transport is None:
        from cli.service_client.transport import error_class
        from vault.server.host_unseal import default_socket, unseal_over_socket

        data = unseal_over_socket(socket_path or default_socket(state.home), body)
        if "error" in data:
            err = data["error"]
            raise error_class(str(err["code"]), int(err["exit_code"]))(str(err["message"]))
    else:
        data = transport.request("POST", "/v1/sys/unseal", body)
    emit(data, as_json, lambda d: click.echo("service unsealed" if not d["sealed"] else "still sealed"))


@operator.command("status")
@json_option
@click.pass_obj
def operator_status(state, as_json):
    """Is the service up, and is it sealed? (exit 8 when sealed)"""
    import sys

    data = _transport(state).request("GET", "/v1/health")
    emit(
        data,
        as_json,
        lambda d: click.echo(f"service {d['status']}, {'sealed' if d['sealed'] else 'unsealed'}"),
    )
    if data["sealed"]:
        sys.exit(8)
