"""``cvault serve --workers N``: a supervisor process and N worker processes on one vault.

One Python process never uses both cores of the service host (its GIL: docs/performance.md), so
the service can run several. docs/service.md "Worker processes" has the design; in short:

* The **supervisor** (the process ``cvault serve`` started) binds the TCP listener and the host
  unseal socket, then starts each worker as a fresh interpreter (``subprocess``, not ``fork``:
  nothing of a process with threads and open SQLite connections is copied; isolated and started
  in "/" by :func:`vault.hardening.python_argv`, so never a module of the folder the service was
  started in: review6 R6-3) that inherits the listener and three ``SOCK_SEQPACKET`` socketpairs
  (its calls, the supervisor's pushes, its unseals), and restarts a worker that dies. SIGTERM
  stops all. It serves no HTTP itself.
* Each **worker** runs the usual uvicorn server (:func:`vault.server.run.make_server`) on the
  inherited listener: the kernel hands each new connection to one of them.
* **One seal state.** Every unseal (the API's ``sys/unseal`` in any worker, the host socket, the
  key file at start) is run by the supervisor, with its one-at-a-time lock and its failure
  throttle; the supervisor then hands the root key to every worker over its socketpair and waits
  for each to take it before the unseal is answered. A worker started later (a restart) gets it
  before it serves. The key travels only over these inherited sockets: never a file, argv, the
  environment or a log line.
* **Global limits.** The login/enroll/unseal token buckets, "one login per user name at a time"
  (review R4), the PSA webhook's refusal buckets and their drop counts (review S5) and the
  attachment upload slots live in the supervisor; a worker asks it
  (:class:`SharedLimits`, :class:`SharedSlots`: one small request and answer on its socketpair).
  The Argon2id turn is host-wide (an ``flock``: :func:`vault.crypto.argon2_share_host`) and its
  queue bound and ``--max-connections`` are divided between the workers, so their sums stay the
  configured bounds.
* **Background jobs** run in the supervisor only (:class:`vault.server.jobs.BackgroundJobs`).
* **Writes queue across processes**: every process's pool takes a host-wide write lock
  (:class:`vault.locks.HostWriteLock`) before ``BEGIN IMMEDIATE``.
* **One audit group commit**: the requests' audit events of every worker are committed by the
  supervisor's one writer (:mod:`vault.server.shared_audit`), a batch of all workers' events per
  transaction; a request waits for its own event's answer, and fails closed without one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from vault.errors import VaultError, VaultSealed, error_class
from vault.hardening import CHILD_CWD, python_argv
from vault.server.errors import RateLimited
from vault.server.limits import RateLimiter, Slots
from vault.server.routes import Limits

log = logging.getLogger("cvault.server")

#: the most one message on a socketpair holds (an unseal request: a passphrase, as JSON)
MESSAGE_MAX = 64 * 1024
#: the environment variable that tells a worker its inherited descriptors (listener, calls,
#: pushes, unseal calls, audit events); popped at once
FDS_VARIABLE = "CVAULT_WORKER_FDS"
#: a worker that dies this soon after its start, this many times in a row, ends the service (a
#: configuration that cannot work: restarting it forever would hide that)
QUICK_DEATH_SECONDS = 5.0
QUICK_DEATHS_MAX = 5
#: seconds the supervisor waits for the workers after SIGTERM (each has GRACEFUL_SECONDS for its
#: requests) before it kills what is left
STOP_WAIT_SECONDS = 9.0
#: seconds a worker may take to take the root key
PUSH_TIMEOUT = 60.0
#: seconds a worker waits for the supervisor's answer (an unseal: its lock, then Argon2id)
CALL_TIMEOUT = 120.0

_ROOT, _SEALED, _CONFIG, _ACK, _FORGET = b"R", b"S", b"C", b"k", b"F"


# --- the worker's side -----------------------------------------------------------------------------


class Channel:
    """A worker's requests to the supervisor: one at a time per worker, each answered."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.settimeout(CALL_TIMEOUT)
        self._lock = threading.Lock()
        self._broken = False

    def call(self, *message):
        data = json.dumps(message).encode()
        with self._lock:
            answer = b""
            if not self._broken:
                try:
                    self.sock.send(data)
                    answer = self.sock.recv(MESSAGE_MAX)
                except OSError:  # gone, or no answer in time: a late one would answer the next
                    self._broken = True
                    log.warning("no answer from the supervisor: this worker stops")
                    os.kill(os.getpid(), signal.SIGTERM)  # the supervisor starts another
        if not answer:
            # fail closed: without the supervisor there are no global limits to check
            raise VaultSealed("the service is stopping (its supervisor is gone)")
        reply = json.loads(answer)
        if "wait" in reply:
            raise RateLimited(float(reply["wait"]))
        if "error" in reply:
            err = reply["error"]
            raise error_class(str(err["code"]), int(err["exit_code"]))(str(err["message"]))
        return reply.get("ok")

    def unseal(self, how: str, secret: str, origin: str | None, source: str | None) -> None:
        self.call("unseal", how, secret, origin, source)


class SharedRateLimiter(RateLimiter):
    """A :class:`RateLimiter` kept by the supervisor (the same ``take``/``give_back``/``wait``)."""

    def __init__(self, channel: Channel, which: str):
        super().__init__(1, 1.0)  # unused here: the supervisor's buckets count
        self.channel = channel
        self.which = which

    def take(self, key: str) -> float:
        return float(self.channel.call("take", self.which, key))

    def give_back(self, key: str) -> None:
        self.channel.call("give_back", self.which, key)

    def wait(self, key: str) -> float:
        return float(self.channel.call("wait", self.which, key))


class SharedLimits(Limits):
    """:class:`vault.server.routes.Limits` whose buckets and in-flight logins are the supervisor's,
    so N workers still allow the configured attempts in all, not N times them."""

    def __init__(self, channel: Channel):
        super().__init__(
            SharedRateLimiter(channel, "address"),
            SharedRateLimiter(channel, "user"),
            SharedRateLimiter(channel, "webhook"),
        )
        self.channel = channel

    def begin(self, source: str, name: str) -> None:
        self.channel.call("begin", source, name)

    # one call each (the supervisor checks, spends and counts the drop at once)
    def webhook_admit(self, source: str) -> None:
        self.channel.call("webhook_admit", source)

    def webhook_refused(self, source: str, integration: str, verified: bool = False) -> bool:
        return bool(self.channel.call("webhook_refused", source, integration, verified))

    def webhook_alarm(self, alarm: str) -> bool:
        return bool(self.channel.call("webhook_alarm", alarm))

    def end(self, source: str, name: str, failed: bool) -> None:
        self.channel.call("end", source, name, failed)


class SharedSlots(Slots):
    """The attachment upload slots (:class:`vault.server.limits.Slots`), counted by the supervisor."""

    def __init__(self, channel: Channel):
        super().__init__(0)
        self.channel = channel

    def take(self) -> bool:
        return bool(self.channel.call("slot_take"))

    def give_back(self) -> None:
        self.channel.call("slot_give")


def _take_state(message: bytes, pool) -> None:
    if message[:1] == _ROOT:
        pool.load_root(message[1:])
    elif message[:1] != _SEALED:
        raise RuntimeError("unexpected message from the supervisor")


def _follow(push: socket.socket, pool) -> None:
    """The worker's thread for what the supervisor sends: the root key after an unseal. When the
    supervisor is gone (its end closed), the worker stops too."""
    while True:
        try:
            message = push.recv(MESSAGE_MAX)
        except OSError:
            message = b""
        if not message:
            log.warning("the supervisor is gone: this worker stops")
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if message[:1] == _FORGET:
            dropped = pool.forget_here(message[1:].decode())
            log.info("worker %d dropped %d cached key entries of a forgotten client", os.getpid(), dropped)
        else:
            _take_state(message, pool)
        with contextlib.suppress(OSError):
            push.send(_ACK)


def worker_main() -> None:
    """The entry of a worker process (started by :class:`Supervisor`)."""
    from vault.hardening import forbid_core_dumps

    forbid_core_dumps()  # before the root key is in this process
    listen_fd, call_fd, push_fd, unseal_fd, audit_fd = (
        int(x) for x in os.environ.pop(FDS_VARIABLE).split(",")
    )
    push = socket.socket(fileno=push_fd)
    channel = Channel(socket.socket(fileno=call_fd))
    config = push.recv(MESSAGE_MAX)
    if config[:1] != _CONFIG:
        raise SystemExit("cvault worker: no configuration from the supervisor")
    cfg = json.loads(config[1:])
    state = push.recv(MESSAGE_MAX)  # unsealed or not: taken before this worker serves anything
    push.send(_ACK)
    from vault import crypto
    from vault.home import VaultHome
    from vault.server.app import ServiceSettings, create_app
    from vault.server.pool import VaultPool
    from vault.server.run import make_server, setup_logging
    from vault.server.shared_audit import SharedAuditWriter

    setup_logging(cfg["log_level"])
    crypto.ARGON2_QUEUE = int(cfg["argon2_queue"])
    crypto.argon2_share_host(os.path.join(VaultHome(cfg["home"]).locks, "argon2"))
    settings = ServiceSettings(**cfg["settings"])
    settings.background = False  # the supervisor runs the background jobs, once
    pool = VaultPool(
        cfg["home"],
        cache_seconds=settings.custody_cache_seconds,
        host_write_lock=True,
        # the requests' audit events are committed by the supervisor, for all workers at once
        audit_group=SharedAuditWriter(socket.socket(fileno=audit_fd)),
    )
    # an unseal (seconds: its lock, then Argon2id) on a socketpair of its own, so the limits'
    # quick calls of this worker's other requests never wait behind it
    pool.unseal_via = Channel(socket.socket(fileno=unseal_fd)).unseal
    pool.on_forget = lambda client_id: channel.call("forget", client_id)
    _take_state(state, pool)
    del state
    threading.Thread(target=_follow, args=(push, pool), name="cvault-worker-state", daemon=True).start()
    app = create_app(pool, settings, limits=SharedLimits(channel), slots=SharedSlots(channel))
    server = make_server(
        app,
        settings,
        host=cfg["host"],
        port=cfg["port"],
        tls_cert=cfg["tls_cert"],
        tls_key=cfg["tls_key"],
        log_level=cfg["log_level"],
        on_shutdown=pool.close,
        max_connections=int(cfg["max_connections"]),
    )
    try:
        server.run(sockets=[socket.socket(fileno=listen_fd)])
    finally:
        pool.close()


# --- the supervisor ----------------------------------------------------------------------------------


class _Held:
    """What one worker holds in the supervisor's limits: logins in flight, upload slots."""

    def __init__(self) -> None:
        from collections import Counter

        self.logins: Counter[tuple[str, str]] = Counter()
        self.slots = 0


class _Worker:
    def __init__(self, slot: int, proc: subprocess.Popen, *sockets: socket.socket):
        calls, push, unseals, audit = sockets
        self.slot = slot
        self.proc = proc
        self.calls = calls
        self.push = push
        self.unseals = unseals
        self.audit = audit
        self.started = time.monotonic()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """What the supervisor closes when the worker is gone (its audit socket is the writer's)."""
        return (self.calls, self.push, self.unseals)


class Supervisor:
    """Starts, feeds, watches and stops the workers (see the module's docstring)."""

    def __init__(
        self, pool, limits: Limits, slots: Slots, listeners: list[socket.socket], config: dict, count: int
    ):
        self.pool = pool
        self.limits = limits
        self.slots = slots
        self.listeners = listeners
        self.config = config
        self.count = count
        self.workers: dict[int, _Worker] = {}
        #: held while a worker is started and while the root key is handed out, so a worker
        #: started during an unseal gets the key exactly once
        self._state_lock = threading.Lock()
        self.stopping = threading.Event()
        pool.on_unsealed = self._hand_out
        pool.on_forget = self._forget_everywhere
        from vault.server.shared_audit import AuditWriter

        #: the workers' requests' audit events, one group commit for all (vault.server.shared_audit)
        self.audit = AuditWriter(pool)

    # the root key -------------------------------------------------------------------------------

    def _give_state(self, worker: _Worker, root: bytes | None) -> None:
        try:
            worker.push.settimeout(PUSH_TIMEOUT)
            worker.push.send(_ROOT + root if root is not None else _SEALED)
            worker.push.recv(1)  # the worker took it (or died: then it gets it when restarted)
        except OSError:
            log.warning("worker %d did not take the seal state; it is restarted", worker.slot)
            with contextlib.suppress(OSError):
                worker.proc.kill()

    def _hand_out(self, root: bytes) -> None:
        with self._state_lock:
            for worker in list(self.workers.values()):
                if worker.proc.poll() is None:
                    self._give_state(worker, root)

    def _forget_everywhere(self, client_id: str) -> None:
        """A shred or a key rotation forgot a client's cached keys in one process: every worker
        drops its copies (and acknowledges) before that process goes on destroying."""
        with self._state_lock:
            for worker in list(self.workers.values()):
                if worker.proc.poll() is not None:
                    continue
                try:
                    worker.push.settimeout(PUSH_TIMEOUT)
                    worker.push.send(_FORGET + client_id.encode())
                    worker.push.recv(1)
                except OSError:
                    log.warning(
                        "worker %d did not drop a forgotten client's keys; it is restarted", worker.slot
                    )
                    with contextlib.suppress(OSError):
                        worker.proc.kill()

    # requests of the workers ----------------------------------------------------------------------

    def _answer(self, message: list, held: _Held) -> dict:
        op, args = message[0], message[1:]
        try:
            if op in ("take", "give_back", "wait"):
                bucket: RateLimiter = {
                    "address": self.limits.by_address,
                    "webhook": self.limits.by_webhook,
                }.get(str(args[0]), self.limits.by_user)
                return {"ok": getattr(bucket, op)(str(args[1]))}
            if op == "webhook_admit":
                self.limits.webhook_admit(str(args[0]))
                return {"ok": None}
            if op == "webhook_refused":
                return {"ok": self.limits.webhook_refused(str(args[0]), str(args[1]), bool(args[2]))}
            if op == "webhook_alarm":
                return {"ok": self.limits.webhook_alarm(str(args[0]))}
            if op == "begin":
                self.limits.begin(str(args[0]), str(args[1]))
                held.logins[(str(args[0]), str(args[1]))] += 1
                return {"ok": None}
            if op == "end":
                key = (str(args[0]), str(args[1]))
                if held.logins[key] > 0:  # only what this worker reserved
                    held.logins[key] -= 1
                    self.limits.end(*key, bool(args[2]))
                return {"ok": None}
            if op == "slot_take":
                taken = self.slots.take()
                held.slots += taken
                return {"ok": taken}
            if op == "slot_give":
                if held.slots > 0:
                    held.slots -= 1
                    self.slots.give_back()
                return {"ok": None}
            if op == "forget":
                self.pool.forget_here(str(args[0]))  # the supervisor's own copies (its jobs')
                self._forget_everywhere(str(args[0]))
                return {"ok": None}
            if op == "unseal":
                how, secret, origin, source = args
                if how == "key_file":
                    raise ValueError("a worker cannot unseal with a key file")
                self.pool.unseal(how, str(secret), origin=origin, source=source)
                return {"ok": {"sealed": self.pool.sealed}}
            raise ValueError("unknown request")
        except RateLimited as exc:
            return {"wait": exc.retry_after}
        except VaultError as exc:
            return {"error": {"code": exc.code, "message": exc.message, "exit_code": exc.exit_code}}
        except Exception as exc:  # noqa: BLE001 - a worker's bad request never stops the supervisor
            log.warning("worker request %s failed (%s)", str(op)[:40], type(exc).__name__)
            return {"error": {"code": "error", "message": "internal error in the service", "exit_code": 1}}

    def _serve_calls(self, calls: socket.socket) -> None:
        held = _Held()
        try:
            while True:
                try:
                    data = calls.recv(MESSAGE_MAX)
                except OSError:
                    return
                if not data:
                    return  # the worker is gone
                try:
                    message = json.loads(data)
                    answer = self._answer(message if isinstance(message, list) and message else [None], held)
                except ValueError:
                    answer = {"error": {"code": "error", "message": "bad request", "exit_code": 1}}
                try:
                    calls.send(json.dumps(answer).encode())
                except OSError:
                    return
        finally:
            # a worker that died (kill -9) mid-login or mid-upload: its logins count as failed
            # (their tokens stay spent) and are no longer in flight; its upload slots are free
            for (source, name), count in held.logins.items():
                for _ in range(count):
                    self.limits.end(source, name, True)
            for _ in range(held.slots):
                self.slots.give_back()

    # the workers' lives ---------------------------------------------------------------------------

    def start(self, slot: int) -> _Worker:
        calls, worker_calls = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        push, worker_push = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        unseals, worker_unseals = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        audit, worker_audit = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fds = (
            self.listeners[slot].fileno(),
            worker_calls.fileno(),
            worker_push.fileno(),
            worker_unseals.fileno(),
            worker_audit.fileno(),
        )
        env = dict(os.environ)
        env[FDS_VARIABLE] = ",".join(str(fd) for fd in fds)
        with self._state_lock:
            # isolated, in "/" (review6 R6-3): never a module of the folder the service started in
            proc = subprocess.Popen(  # noqa: S603 - this interpreter, a constant program (python_argv)
                python_argv(code="from vault.server.workers import worker_main; worker_main()"),
                pass_fds=fds,
                env=env,
                close_fds=True,
                cwd=CHILD_CWD,
            )
            for s in (worker_calls, worker_push, worker_unseals, worker_audit):
                s.close()
            worker = _Worker(slot, proc, calls, push, unseals, audit)
            self.workers[slot] = worker
            for what, sock in (("calls", calls), ("unseals", unseals)):
                threading.Thread(
                    target=self._serve_calls, args=(sock,), name=f"cvault-worker-{slot}-{what}", daemon=True
                ).start()
            self.audit.add(audit)  # the writer reads it, and closes it when the worker is gone
            with contextlib.suppress(OSError):  # it died at once: restarted by the watch loop
                push.send(_CONFIG + json.dumps({**self.config, "slot": slot}).encode())
            self._give_state(worker, self.pool.root)
        return worker

    def watch(self) -> int:
        """Restart workers that die until :attr:`stopping` is set; 1 when they keep dying at start."""
        quick = 0
        while not self.stopping.is_set():
            for slot, worker in list(self.workers.items()):
                code = worker.proc.poll()
                if code is None or self.stopping.is_set():
                    continue
                lived = time.monotonic() - worker.started
                quick = quick + 1 if lived < QUICK_DEATH_SECONDS else 0
                for s in worker.sockets:
                    s.close()
                if quick >= QUICK_DEATHS_MAX:
                    log.error("workers keep exiting at start (%s); the service stops", code)
                    return 1
                log.warning("worker %d (pid %d) exited (%s); starting another", slot, worker.proc.pid, code)
                self.start(slot)
            self.stopping.wait(0.1)
        return 0

    def stop(self) -> None:
        self.stopping.set()
        for worker in self.workers.values():
            with contextlib.suppress(OSError):
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        for worker in self.workers.values():
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait(5)
        for worker in self.workers.values():
            for s in worker.sockets:
                s.close()
        self.audit.stop()


def _listen(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listeners on one address, ``SO_REUSEPORT``: the kernel spreads new connections
    over them by a hash of the addresses, so each worker (one listener each) gets its share even
    when all are idle (one shared listener went to whichever worker woke first: nearly always
    the same one). Linux lets only processes of this user join the group. The supervisor keeps
    them open, so connections for a worker being restarted wait in its backlog."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host.strip("[]"), port))
            port = sock.getsockname()[1]  # --port 0: the others join the port the first got
            sock.listen(2048)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        from vault.errors import InvalidInput

        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sockets


def _absolute(path: str | None) -> str | None:
    """``path`` made absolute ("" and None as they are): a worker starts in "/"."""
    return os.path.abspath(path) if path else path


def supervise(
    home: Path | str,
    *,
    workers: int,
    host: str,
    port: int,
    tls_cert: str | None,
    tls_key: str | None,
    key_file: str | None,
    settings,
    log_level: str,
    announce: Callable[[str], None],
    unseal_socket: str | None,
) -> None:
    """The supervisor's life (called by :func:`vault.server.run.serve` with ``workers`` > 1)."""
    from vault import crypto
    from vault.home import VaultHome
    from vault.server.app import ServiceSettings
    from vault.server.host_unseal import HostUnseal, default_socket
    from vault.server.jobs import BackgroundJobs
    from vault.server.limits import MAX_LARGE_BODIES
    from vault.server.pool import VaultPool
    from vault.server.run import setup_logging

    settings = settings or ServiceSettings()
    from vault.errors import InvalidInput

    # the bounds are divided between the workers, at least one each: their sums stay the bounds
    if workers > crypto.ARGON2_QUEUE:
        raise InvalidInput("--argon2-queue must be at least --workers (each worker queues one or more)")
    if settings.max_connections <= workers:
        raise InvalidInput("--max-connections must be more than --workers")
    setup_logging(log_level)
    pool = VaultPool(home, cache_seconds=settings.custody_cache_seconds, host_write_lock=True)
    # (after the pool: a missing vault is refused as without workers; the pool made locks/)
    crypto.argon2_share_host(os.path.join(VaultHome(home).locks, "argon2"))  # its unseals too
    if key_file:
        pool.unseal("key_file", key_file)
    limits = Limits.from_settings(settings)
    host_unseal = HostUnseal(pool, unseal_socket or default_socket(home))
    host_unseal.start()  # refuses a second service on this vault before anything is bound
    listeners: list[socket.socket] = []
    jobs = BackgroundJobs(pool, settings, limits)
    supervisor = None
    caught: list[int] = []
    try:
        listeners = _listen(host, port, workers)
        port = listeners[0].getsockname()[1]
        config = {
            # the workers start in "/" (vault.hardening.CHILD_CWD): every path absolute
            "home": os.path.abspath(home),
            "host": host,
            "port": port,
            "tls_cert": _absolute(tls_cert),
            "tls_key": _absolute(tls_key),
            "log_level": log_level,
            "settings": {**asdict(settings), "backup_dir": _absolute(settings.backup_dir)},
            # the bounds divided between the workers: their sums stay the configured ones
            "argon2_queue": max(1, crypto.ARGON2_QUEUE // workers),
            # uvicorn's limit counts the connection asking: a limit of L serves L - 1 at once
            "max_connections": (settings.max_connections - 1) // workers + 1,
        }
        supervisor = Supervisor(pool, limits, Slots(MAX_LARGE_BODIES), listeners, config, workers)

        stopping = supervisor.stopping

        def stop_on(sig, frame) -> None:
            caught.append(sig)
            stopping.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop_on)
        for slot in range(workers):
            supervisor.start(slot)
        if settings.background:
            jobs.start()
        scheme = "https" if tls_cert else "http"
        shown = f"[{host}]" if ":" in host else host
        state = "sealed: run cvault operator unseal" if pool.sealed else "unsealed"
        announce(
            f"cvault: serving {scheme}://{shown}:{port} ({state}) with {workers} worker processes;"
            f" host unseal socket {host_unseal.path}"
        )
        failed = supervisor.watch()
    finally:
        if supervisor is not None:
            supervisor.stop()
        jobs.stop()
        host_unseal.stop()
        pool.close()
        for sock in listeners:
            sock.close()
    if failed:
        raise InvalidInput("cvault serve: the worker processes could not start (see the log above)")
    if caught:
        # exit as the signal did, as the one-process service does (uvicorn re-raises it): systemd
        # counts SIGTERM as a clean stop
        signal.signal(caught[0], signal.SIG_DFL)
        os.kill(os.getpid(), caught[0])
