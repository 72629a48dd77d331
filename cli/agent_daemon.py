"""``cvault agent``'s resident process: holds the unsealed vault (or a kept-alive connection to the
service) and runs this user's ``secret get|list|search`` on a Unix socket (docs/agent.md).

It never hands out keys: a request is a CLI command line, run here through the very click
commands, facade, policy, step-up and audit the CLI uses (the audit origin is ``agent``), and the
reply is that command's output and exit code. One request at a time, in the one thread that owns
the vault's SQLite connection.

Refused or declined:
- a peer whose uid is not ours (``SO_PEERCRED``): the connection is closed with exit 4;
- a command for another vault or service than the one held, or one that would prompt (a step-up
  code typed on the terminal): ``fallback``, and the client runs the CLI itself;
- after the idle time or ``cvault agent lock``: the root key is forgotten and commands answer
  "agent locked" with exit 8 until ``cvault agent start`` unlocks it again.

Started by ``cvault agent start`` (``python -m cli.agent_daemon``) in a new session with its
standard streams on /dev/null; core dumps are off before anything is unsealed.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli import agent_protocol
from cli.launcher import ENV_NAMES, agent_eligible
from cli.state import CliState
from vault.errors import EXIT_DENIED, InvalidInput, StepUpRequired, VaultError, VaultSealed

DEFAULT_IDLE_SECONDS = 15 * 60
SESSION_CHECK_SECONDS = 2.0
LOCKED_MESSAGE = "cvault: agent locked: run cvault agent start to unlock it\n"


class AgentFallback(BaseException):
    """The agent cannot run this command as the CLI would; the client runs it itself.

    A BaseException so that no ``except Exception`` on the way (the CLI's one error handler, click)
    turns it into an error line."""


def disable_core_dumps() -> None:
    """No core file and no ptrace attach by other processes of the user (Linux: not dumpable)."""
    from vault.hardening import forbid_core_dumps

    forbid_core_dumps()


class _Stream(io.TextIOWrapper):
    """A text stream over a byte buffer that answers ``isatty`` as the client's terminal does."""

    def __init__(self, tty: bool, encoding: str = "utf-8", errors: str = "strict", data: bytes = b""):
        super().__init__(io.BytesIO(data), encoding=encoding, errors=errors, write_through=True)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")

    def value(self) -> bytes:
        self.flush()
        buffer = self.buffer
        assert isinstance(buffer, io.BytesIO)
        return buffer.getvalue()


class _TerminalInput(_Stream):
    """The client's standard input as the agent sees it: empty; reading it means a prompt."""

    def read(self, size: int | None = -1) -> str:
        if self._tty:
            raise AgentFallback
        return ""

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        return self.read()


class AgentState(CliState):
    """The CLI's per-command state inside the agent: the held vault instead of opening one."""

    origin = "agent"

    def __init__(self, agent: Agent, stdin_tty: bool):
        super().__init__(home=None, addr=None, json=False, debug=False)
        self.agent = agent
        self.stdin_tty = stdin_tty

    def vault(self, *, unseal: bool = True, upgrade: bool = False, upgrade_digest: str | None = None):
        agent = self.agent
        if not agent.serves(self.addr, None if self.addr else self.home):
            raise AgentFallback
        if agent.vault is None:
            raise VaultSealed(LOCKED_MESSAGE.removeprefix("cvault: ").rstrip("\n"))
        return agent.vault

    def with_stepup(self, operation, totp: str | None = None):
        principal = self.principal()
        try:
            return operation(principal)
        except StepUpRequired as exc:
            if totp is None:
                if self.stdin_tty:
                    raise AgentFallback from None  # the CLI asks for the code on the terminal
                raise StepUpRequired(f"{exc.message}; pass --totp CODE") from None
            self.vault().users.step_up(principal, totp)
        return operation(principal)

    def close(self) -> None:  # the agent keeps its vault; only this command's principal goes
        self._principal = None


class Agent:
    """The resident state: what is held, since when, and the request loop."""

    def __init__(
        self,
        *,
        home: Path | None,
        addr: str | None,
        cacert: str | None,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        session_leader: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        owner_uid: int | None = None,
    ):
        self.home = home.resolve() if home is not None else None
        self.addr = addr
        self.cacert = cacert
        self.idle_seconds = idle_seconds
        self.session_leader = session_leader
        self.clock = clock
        #: the one uid served: this process's own (a test gives another to see the refusal)
        self.owner_uid = os.getuid() if owner_uid is None else owner_uid
        self.vault: Any = None
        self.last_used = clock()
        self.stopping = False
        self.served = 0  # commands run (status shows it)

    # --- what this agent serves -----------------------------------------------------------------

    def serves(self, addr: str | None, home: Path | None) -> bool:
        if self.addr is not None:
            # the agent holds the CA file's absolute path; a command's may be relative to its folder
            cacert = os.environ.get("CVAULT_CACERT")
            return addr == self.addr and (os.path.abspath(cacert) if cacert else None) == self.cacert
        return addr is None and home is not None and home.resolve() == self.home

    def unlock(self, kind: str, secret: str) -> None:
        """Open and unseal the vault (embedded) or connect to the service (remote)."""
        if self.vault is not None:
            return
        if self.addr is not None:
            from cli.service_client.client import ServiceVault

            self.vault = ServiceVault(self.addr, self.cacert)
            return
        from vault.facade import Vault

        assert self.home is not None
        vault = Vault.open(self.home)
        try:
            if kind == "key-file":
                vault.unseal_key_file(secret)
            elif kind == "passphrase":
                vault.unseal_passphrase(secret)
            else:
                raise InvalidInput(f"unknown unseal kind {kind!r}")
        except BaseException:
            vault.close()
            raise
        self.vault = vault
        self.last_used = self.clock()

    def lock(self) -> None:
        """Forget the root key (embedded) or drop the connection (remote)."""
        vault, self.vault = self.vault, None
        if vault is not None:
            vault.close()

    def tick(self) -> None:
        """Lock when idle too long; stop when the login session it belongs to has ended."""
        if self.vault is not None and self.clock() - self.last_used >= self.idle_seconds:
            self.lock()
        if self.session_leader is not None and not _alive(self.session_leader):
            self.stopping = True

    def status(self) -> str:
        mode = f"service {self.addr}" if self.addr else f"vault {self.home}"
        state = "unlocked" if self.vault is not None else "locked"
        idle_left = max(0, int(self.idle_seconds - (self.clock() - self.last_used))) if self.vault else 0
        return (
            f"state={state}\nmode={mode}\npid={os.getpid()}\nidle_lock_in={idle_left}\nserved={self.served}\n"
        )

    # --- requests ---------------------------------------------------------------------------------

    def handle(self, conn: socket.socket) -> None:
        """One connection: the peer's uid checked (``SO_PEERCRED``) before a byte is read."""
        if agent_protocol.peer_uid(conn) != self.owner_uid:
            conn.sendall(agent_protocol.encode_reply(EXIT_DENIED, err=b"cvault: agent: not your agent\n"))
            return
        try:
            op, fields = agent_protocol.decode_request(agent_protocol.recv_request(conn))
        except (ValueError, ConnectionError, OSError):
            return
        conn.sendall(self.dispatch(op, fields))

    def dispatch(self, op: str, fields: list[str]) -> bytes:
        reply = agent_protocol.encode_reply
        if op == "run":
            return self.run(fields)
        if op == "status":
            return reply(0, self.status().encode())
        if op == "lock":
            self.lock()
            return reply(0, b"agent locked\n")
        if op == "stop":
            self.lock()
            self.stopping = True
            return reply(0, b"agent stopped\n")
        if op == "unlock" and len(fields) == 2:
            try:
                self.unlock(fields[0], fields[1])
            except VaultError as exc:
                return reply(exc.exit_code, err=f"cvault: {exc.message}\n".encode())
            return reply(0, b"agent unlocked\n")
        return reply(2, err=b"cvault: agent: unknown request\n")

    def run(self, fields: list[str]) -> bytes:
        """Run one CLI command line as the client would have, and return its reply frame."""
        try:
            cwd, ttys, encoding, count = fields[:4]
            n = int(count)
            pairs, argv = fields[4 : 4 + n], fields[4 + n :]
            enc, _, errors = encoding.partition(":")
        except (ValueError, IndexError):
            return agent_protocol.encode_reply(2, err=b"cvault: agent: malformed request\n")
        if not agent_eligible(argv):
            # the client decides what it sends, and any process of this uid can be the client:
            # only the commands the agent is for (cli.launcher.AGENT_COMMANDS) run here, never
            # slot, user, client or vault administration (which could mint a lasting key)
            refusal = b"cvault: agent: this command is not served by the agent\n"
            return agent_protocol.encode_reply(2, err=refusal)
        env = {
            k: v
            for k, v in (p.split("=", 1) for p in pairs if "=" in p)
            if k in ENV_NAMES or k.startswith("CVAULT_")
        }
        stdin, stdout, stderr = (
            _TerminalInput(ttys[0:1] == "1"),
            _Stream(ttys[1:2] == "1", enc or "utf-8", errors or "strict"),
            _Stream(ttys[2:3] == "1", enc or "utf-8", "backslashreplace"),
        )
        from cli.main import run

        # only the variables a command may depend on are the client's, set and put back one by one:
        # copying and rebuilding the whole environment was a fifth of the agent's CPU per read
        saved_env = {k: os.environ.get(k) for k in _relevant(os.environ.keys() | env.keys())}
        saved_streams = (sys.stdin, sys.stdout, sys.stderr)
        try:
            _set_environment(env, saved_env)
            os.chdir(cwd)
            sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
            code = run(argv, obj=AgentState(self, stdin.isatty()))
            self.served += 1
        except AgentFallback:
            return agent_protocol.encode_reply(0, fallback=True)
        except OSError:  # the client's folder is gone: let it run the command itself
            return agent_protocol.encode_reply(0, fallback=True)
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            # and whatever the command set (cli.main sets CVAULT_PROFILE) goes too
            after = {k: None for k in _relevant(os.environ.keys()) if k not in saved_env}
            _set_environment({k: v for k, v in saved_env.items() if v is not None}, {**saved_env, **after})
            os.chdir("/")
            self.last_used = self.clock()
        return agent_protocol.encode_reply(code, stdout.value(), stderr.value())

    def serve_forever(self, listener: socket.socket) -> None:
        listener.settimeout(SESSION_CHECK_SECONDS)
        while not self.stopping:
            self.tick()
            if self.stopping:
                break
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(30)
                with contextlib.suppress(OSError):
                    self.serve(conn)
        self.lock()

    def serve(self, conn: socket.socket) -> None:
        """One accepted connection. The idle time and the login session are judged again now:
        accept() may have waited up to SESSION_CHECK_SECONDS past them, and a request that comes
        after the idle time must find the agent locked (one after the session: no answer)."""
        self.tick()
        if not self.stopping:
            self.handle(conn)


def _relevant(names) -> list[str]:
    """The environment names a command may depend on (cli.launcher.ENV_NAMES and CVAULT_*)."""
    return [k for k in names if k in ENV_NAMES or k.startswith("CVAULT_")]


def _set_environment(wanted: dict[str, str], names: dict[str, str | None]) -> None:
    """Make each of ``names`` what ``wanted`` says (absent when it has none), touching only those."""
    for name in names:
        value = wanted.get(name)
        if value is None:
            os.environ.pop(name, None)
        elif os.environ.get(name) != value:
            os.environ[name] = value


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def bind(path: str) -> socket.socket:
    """Listen on ``path`` in a private folder (created 0700), the socket itself 0600."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    agent_protocol.check_private_folder(folder)
    try:
        probe = agent_protocol.connect(path, timeout=2)
    except agent_protocol.AgentUnavailable:
        pass
    else:
        probe.close()
        raise InvalidInput(f"an agent is already running on {path}")
    if os.path.lexists(path):
        os.unlink(path)  # a stale socket of an agent that died
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(16)
    return listener


def main() -> None:
    """``python -m cli.agent_daemon``: arguments come on standard input, one per line (never argv).

    Lines: socket path, home (or empty), service address (or empty), CA file (or empty), idle
    seconds, session leader pid (or empty). The parent reads "ready" or one error line from our
    standard output, then sends the unseal material over the socket (op ``unlock``)."""
    disable_core_dumps()
    os.umask(0o077)
    lines = sys.stdin.read().split("\n")
    path, home, addr, cacert, idle, leader = (lines + [""] * 6)[:6]
    try:
        agent = Agent(
            home=Path(home) if home else None,
            addr=addr or None,
            cacert=cacert or None,
            idle_seconds=float(idle or DEFAULT_IDLE_SECONDS),
            session_leader=int(leader) if leader else None,
        )
        listener = bind(path)
    except (VaultError, OSError, agent_protocol.AgentUnavailable, ValueError) as exc:
        message = exc.message if isinstance(exc, VaultError) else str(exc)
        print(f"error {message}", flush=True)
        os._exit(1)
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.chdir("/")
    try:
        agent.serve_forever(listener)
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    os._exit(0)


if __name__ == "__main__":
    main()
