"""``cvault agent``: the resident per-user agent and the import-light client path (docs/agent.md).

Real parts: a real vault folder, the agent as a real daemon process started by ``cvault agent
start``, the console script's entry (``python -m cli.launcher``) in real subprocesses, a real Unix
socket. The idle lock uses an injected clock; the foreign-uid test forks a child that becomes
``nobody`` (root only, as CI runs).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli import agent_protocol
from tests.helpers import ROOT, add_client, make_vault, run_cli
from vault.errors import StepUpRequired


def launcher(*args: str, env: dict, input: str | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, env=env, input=input, module="cli.launcher")


@pytest.fixture
def vault_with_records(tmp_path):
    vdir = make_vault(tmp_path)
    v = vdir.open()
    try:
        add_client(v, "acme")
        add_client(v, "globex")
        from tests.helpers import operator

        firewall = {"host": "10.0.0.1", "password": "pw\t1"}
        v.secrets.put(operator(), "acme", "office/firewall", "access", firewall)
        wifi = {"wifi_ssid": "ACME", "wifi_key": "k3y-of-acme"}
        v.secrets.put(operator(), "acme", "office/wifi", "network", wifi)
    finally:
        v.close()
    return vdir


@pytest.fixture
def agent_env(vault_with_records, tmp_path):
    """The operator's environment with a private agent socket folder; the agent is stopped after."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = vault_with_records.env(CVAULT_AGENT_SOCK=str(run / "agent.sock"))
    yield env
    launcher("agent", "stop", env=env)


def start(env: dict, *extra: str) -> None:
    proc = launcher("agent", "start", *extra, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "agent started" in proc.stdout or "agent unlocked" in proc.stdout


def agent_events(vdir) -> int:
    with sqlite3.connect(vdir.home / "vault.db") as db:
        return db.execute("SELECT count(*) FROM audit_events WHERE origin = 'agent'").fetchone()[0]


COMMANDS = [
    ("secret", "get", "acme", "office/firewall"),
    ("secret", "get", "acme", "office/firewall", "--field", "password"),
    ("--json", "secret", "get", "acme", "office/firewall"),
    ("secret", "list", "acme"),
    ("secret", "list", "acme", "--json"),
    ("secret", "get", "acme", "no/such"),  # exit 5
    ("secret", "get", "nosuch", "x"),  # exit 5
    ("secret", "get", "acme"),  # usage error, exit 2
]


def test_agent_answers_exactly_as_the_cli(vault_with_records, agent_env):
    without = {args: launcher(*args, env={**agent_env, "CVAULT_NO_AGENT": "1"}) for args in COMMANDS}
    start(agent_env)
    before = agent_events(vault_with_records)
    for args in COMMANDS:
        got = launcher(*args, env=agent_env)
        want = without[args]
        assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr), args
    assert {without[a].returncode for a in COMMANDS} >= {0, 2, 5}
    # the reads went through the agent: audited with origin "agent"
    assert agent_events(vault_with_records) > before


def test_client_path_imports_no_heavy_module(vault_with_records, agent_env):
    start(agent_env)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from cli.launcher import main; main()"]
        + ["secret", "get", "acme", "office/firewall"],
        env=agent_env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pw\\t1" in proc.stdout or "pw" in proc.stdout
    imported = {
        line.split("|")[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "cli.launcher" in imported and "cli.agent_protocol" in imported
    heavy_roots = {"click", "cryptography", "sqlite3", "_sqlite3", "vault"}
    heavy = {m for m in imported if m.split(".")[0] in heavy_roots}
    assert not heavy, heavy
    assert "socket" not in imported  # _socket only: the enums of socket cost 2.5 ms


def test_locked_agent_answers_locked_and_start_unlocks(vault_with_records, agent_env):
    start(agent_env)
    assert launcher("agent", "lock", env=agent_env).returncode == 0
    status = launcher("agent", "status", "--json", env=agent_env)
    assert '"state": "locked"' in status.stdout
    got = launcher("secret", "get", "acme", "office/firewall", "--field", "password", env=agent_env)
    assert got.returncode == 8 and got.stdout == ""
    assert got.stderr == "cvault: agent locked: run cvault agent start to unlock it\n"
    start(agent_env)
    got = launcher("secret", "get", "acme", "office/firewall", "--field", "password", env=agent_env)
    assert (got.returncode, got.stdout) == (0, "pw\t1\n")


def test_refusals_are_the_same_through_the_agent(staff, tmp_path):
    """A revoked assignment and an expired session are refused through the agent exactly as without."""
    from vault.clock import SystemClock

    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    v = staff.vdir.open()
    try:
        bob_file = staff.bob.session_file(tmp_path / "bob.json", vault=v)
        old = SystemClock().now().replace(year=2025)  # past the 8 h absolute limit
        # two expired sessions: the first refusal ends the session it names
        carl_files = [staff.carl.session_file(tmp_path / f"carl-{i}.json", vault=v, at=old) for i in (1, 2)]
        staff.bob.vault = None
    finally:
        v.close()
    base = staff.vdir.env(CVAULT_AGENT_SOCK=str(run / "agent.sock"))
    bob = {**base, "CVAULT_SESSION_FILE": str(bob_file)}
    carl = [{**base, "CVAULT_SESSION_FILE": str(f)} for f in carl_files]
    try:
        start(bob)
        ok = launcher("secret", "list", "acme", env=bob)
        assert ok.returncode == 0, ok.stderr
        v = staff.vdir.open()
        try:
            v.access.unassign(staff.amy.principal(v), "acme", "bob")
        finally:
            v.close()
        for env, again in ((bob, bob), (carl[0], carl[1])):
            through = launcher("secret", "list", "acme", env=env)
            direct = launcher("secret", "list", "acme", env={**again, "CVAULT_NO_AGENT": "1"})
            assert through.returncode in (3, 4), through.stderr
            assert (through.returncode, through.stdout, through.stderr) == (
                direct.returncode,
                direct.stdout,
                direct.stderr,
            )
    finally:
        launcher("agent", "stop", env=bob)


def test_agent_for_another_vault_falls_back_to_the_cli(vault_with_records, agent_env, tmp_path):
    start(agent_env)
    other = make_vault(tmp_path / "other")
    v = other.open()
    try:
        from tests.helpers import operator

        add_client(v, "initech")
        v.secrets.put(operator(), "initech", "db", "account", {"username": "sa", "password": "other-vault"})
    finally:
        v.close()
    env = other.env(CVAULT_AGENT_SOCK=agent_env["CVAULT_AGENT_SOCK"])
    before = agent_events(other)
    got = launcher("secret", "get", "initech", "db", "--field", "password", env=env)
    assert (got.returncode, got.stdout) == (0, "other-vault\n")
    assert agent_events(other) == before  # the CLI itself answered


def test_socket_folder_of_wrong_mode_is_not_used(vault_with_records, tmp_path):
    """A folder others can enter may hold somebody else's socket: the client never talks to it."""
    run = tmp_path / "open-run"
    run.mkdir(mode=0o755)
    os.chmod(run, 0o755)
    with pytest.raises(agent_protocol.AgentUnavailable, match="private folder"):
        agent_protocol.connect(str(run / "agent.sock"))
    env = vault_with_records.env(CVAULT_AGENT_SOCK=str(run / "agent.sock"))
    started = launcher("agent", "start", env=env)
    assert started.returncode == 1 and "private folder" in started.stderr
    got = launcher("secret", "get", "acme", "office/firewall", "--field", "password", env=env)
    assert (got.returncode, got.stdout) == (0, "pw\t1\n")  # the CLI itself, no agent


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user (CI runs as root)")
def test_another_uid_is_refused(vault_with_records, tmp_path):
    """Even with the socket reachable (folder and socket opened up), another uid gets nothing."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="cvault-agent-test-", dir="/tmp")  # every parent enterable
    path = os.path.join(folder, "agent.sock")
    agent_env = vault_with_records.env(CVAULT_AGENT_SOCK=path)
    try:
        _refuse_other_uid(agent_env, path)
    finally:
        launcher("agent", "stop", env=agent_env)
        shutil.rmtree(folder, ignore_errors=True)


def _refuse_other_uid(agent_env: dict, path: str) -> None:
    start(agent_env)
    os.chmod(os.path.dirname(path), 0o755)
    os.chmod(path, 0o666)
    request = agent_protocol.encode_request(
        "run", ["/", "000", "utf-8:strict", "0", "secret", "get", "acme", "office/firewall"]
    )
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, connect, report the reply
        try:
            os.close(read_fd)
            os.setgid(65534)
            os.setuid(65534)
            import _socket

            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(path)
            with contextlib.suppress(
                BrokenPipeError
            ):  # the agent refused before reading: its reply is buffered
                sock.sendall(request)
            code, out, err, _ = agent_protocol.recv_reply(sock)
            os.write(write_fd, f"{code}|".encode() + out + b"|" + err)
        except BaseException as exc:  # noqa: BLE001 - the child reports whatever happened
            os.write(write_fd, f"error|{type(exc).__name__}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        answer = fh.read()
    os.waitpid(pid, 0)
    assert answer.startswith(b"4|"), answer
    assert b"pw" not in answer and b"not your agent" in answer
    # and the owner is still served (the folder made private again)
    os.chmod(os.path.dirname(path), 0o700)
    got = launcher("secret", "get", "acme", "office/firewall", "--field", "password", env=agent_env)
    assert (got.returncode, got.stdout) == (0, "pw\t1\n")


def test_idle_lock_with_an_injected_clock(vault_with_records):
    from cli.agent_daemon import Agent

    now = [1000.0]
    agent = Agent(home=vault_with_records.home, addr=None, cacert=None, idle_seconds=60, clock=lambda: now[0])
    agent.unlock("key-file", str(vault_with_records.key_file))
    try:
        now[0] += 59
        agent.tick()
        assert agent.vault is not None
        now[0] += 1
        agent.tick()
        assert agent.vault is None  # the root key is forgotten
        assert "state=locked" in agent.status()
    finally:
        agent.lock()


def test_stepup_needing_a_terminal_falls_back(vault_with_records):
    from cli.agent_daemon import Agent, AgentFallback, AgentState

    agent = Agent(home=vault_with_records.home, addr=None, cacert=None)
    state = AgentState(agent, stdin_tty=True)
    state._principal = object()  # type: ignore[assignment]

    def needs_stepup(principal):
        raise StepUpRequired("step-up required")

    with pytest.raises(AgentFallback):
        state.with_stepup(needs_stepup)
    piped = AgentState(agent, stdin_tty=False)
    piped._principal = object()  # type: ignore[assignment]
    with pytest.raises(StepUpRequired, match="pass --totp CODE"):
        piped.with_stepup(needs_stepup)


def test_exit_with_session(vault_with_records, agent_env):
    """--exit-with-session: the agent stops when the session leader that started it is gone."""
    leader = subprocess.Popen(
        [
            "sh",
            "-c",
            f'"{sys.executable}" -m cli.launcher agent start --exit-with-session >/dev/null'
            " && exec sleep 120",
        ],
        env=agent_env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while launcher("agent", "status", env=agent_env).returncode != 0:
            assert time.monotonic() < deadline, "agent did not start"
            time.sleep(0.2)
    finally:
        leader.kill()
        leader.wait()
    deadline = time.monotonic() + 30
    while launcher("agent", "status", env=agent_env).returncode == 0:
        assert time.monotonic() < deadline, "agent outlived its session"
        time.sleep(0.2)
    assert not Path(agent_env["CVAULT_AGENT_SOCK"]).exists()


def test_core_dumps_are_off_in_the_agent(vault_with_records, agent_env):
    import json

    start(agent_env)
    pid = json.loads(launcher("agent", "status", "--json", env=agent_env).stdout)["pid"]
    limits = Path(f"/proc/{pid}/limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"], core


def test_disable_core_dumps_makes_the_process_not_dumpable():
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            import ctypes

            from cli.agent_daemon import disable_core_dumps

            disable_core_dumps()
            dumpable = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
            os.write(write_fd, str(dumpable).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        answer = fh.read()
    os.waitpid(pid, 0)
    assert answer == b"0"


def test_remote_mode_agent_answers_exactly_as_the_remote_cli(vault_with_records, tmp_path):
    """With CVAULT_ADDR the agent holds one kept-alive HTTPS connection to the service."""
    import json

    from tests.helpers import OPERATOR_TOKEN
    from tests.server.harness import start_service

    service = start_service(vault_with_records, tmp_path / "svc")
    run = tmp_path / "remote-run"
    run.mkdir(mode=0o700)
    session = tmp_path / "remote-session.json"
    from tests.factories import write_session_file

    write_session_file(session, f"service:{service.addr}", "operator", OPERATOR_TOKEN)
    env = {
        k: v
        for k, v in vault_with_records.env(
            CVAULT_ADDR=service.addr,
            CVAULT_CACERT=str(service.ca.ca_path),
            CVAULT_SESSION_FILE=str(session),
            CVAULT_AGENT_SOCK=str(run / "agent.sock"),
        ).items()
        if k not in ("CVAULT_HOME", "CVAULT_KEY_FILE")
    }
    try:
        start(env)
        status = launcher("agent", "status", "--json", env=env)
        assert f"service {service.addr}" in status.stdout
        for args in COMMANDS[:5]:
            got = launcher(*args, env=env)
            want = launcher(*args, env={**env, "CVAULT_NO_AGENT": "1"})
            assert got.returncode == 0, got.stderr
            assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)
        served = json.loads(launcher("agent", "status", "--json", env=env).stdout)["served"]
        assert served == 5  # the five went through the agent (its one connection to the service)
    finally:
        launcher("agent", "stop", env=env)
        service.stop()


def test_a_same_uid_client_cannot_make_the_agent_run_administration(vault_with_records, agent_env, tmp_path):
    """Independent review F2: the allow-list was only applied by the client, so any process of
    the user could send ``slot add --kind keyfile`` to an unlocked agent and mint a lasting key
    that survives the idle lock. The agent itself refuses every command it is not for."""

    def slots() -> int:
        with sqlite3.connect(vault_with_records.home / "vault.db") as db:
            return db.execute("SELECT count(*) FROM unseal_slots").fetchone()[0]

    before = slots()
    start(agent_env)
    sock = agent_env["CVAULT_AGENT_SOCK"]
    key_file = tmp_path / "minted.key"
    env_pairs = [f"CVAULT_HOME={agent_env['CVAULT_HOME']}"]
    for argv in (
        ["slot", "add", "--kind", "keyfile", "--key-file", str(key_file)],
        ["slot", "add", "--kind", "recovery"],
        ["user", "list"],
        ["--json", "secret", "get", "acme", "office/firewall", "--copy"],
    ):
        fields = [str(tmp_path), "000", "utf-8:strict", str(len(env_pairs)), *env_pairs, *argv]
        code, out, err, fallback = agent_protocol.call("run", fields, sock)
        assert (code, fallback) == (2, False), (argv, out, err)
        assert b"not served by the agent" in err
    assert not key_file.exists()
    assert slots() == before


def test_peer_check_refuses_another_uid_without_root(vault_with_records):
    """The daemon's own check, on a real Unix socket pair (SO_PEERCRED gives our uid): an agent
    that serves another uid than the peer's answers exit 4 and reads nothing. Runs without root;
    ``test_another_uid_is_refused`` is the real second user."""
    import socket

    from cli.agent_daemon import Agent

    for owner, want in ((os.getuid() + 1, 4), (os.getuid(), 0)):
        agent = Agent(home=vault_with_records.home, addr=None, cacert=None, owner_uid=owner)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours, theirs:
            theirs.sendall(agent_protocol.encode_request("status", []))
            agent.handle(ours)
            code, out, err, fallback = agent_protocol.recv_reply(theirs)
        assert (code, fallback) == (want, False)
        if want == 4:
            assert (out, err) == (b"", b"cvault: agent: not your agent\n")
        else:
            assert b"state=locked" in out


def test_client_refuses_an_agent_of_another_uid(tmp_path, monkeypatch):
    """The client checks the agent's uid too: a socket served by another uid is not its agent."""
    import socket

    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    path = str(run / "agent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with listener:
        listener.bind(path)
        listener.listen(1)
        with contextlib.closing(agent_protocol.connect(path)):
            pass  # our own uid: accepted
        monkeypatch.setattr(agent_protocol, "peer_uid", lambda sock: os.getuid() + 1)
        with pytest.raises(agent_protocol.AgentUnavailable, match="belongs to another user"):
            agent_protocol.connect(path)


def test_a_request_after_the_idle_time_finds_the_agent_locked(vault_with_records):
    """The idle time is judged when a request arrives, not only between accept timeouts (accept
    waits up to 2 s): the first request after it is answered "locked" (injected clock, the
    loop's own per-connection step on a real socket pair)."""
    import socket

    from cli.agent_daemon import LOCKED_MESSAGE, Agent

    now = [1000.0]
    agent = Agent(home=vault_with_records.home, addr=None, cacert=None, idle_seconds=60, clock=lambda: now[0])
    agent.unlock("key-file", str(vault_with_records.key_file))
    env = [f"{k}={v}" for k, v in vault_with_records.env().items() if k.startswith("CVAULT_")]
    request = ["/", "000", "utf-8:strict", str(len(env)), *env, "secret", "get", "acme", "office/firewall"]

    def get() -> tuple[int, bytes, bytes, bool]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours, theirs:
            theirs.sendall(agent_protocol.encode_request("run", [*request, "--field", "password"]))
            agent.serve(ours)
            return agent_protocol.recv_reply(theirs)

    try:
        now[0] += 59
        assert get()[:2] == (0, b"pw\t1\n")
        now[0] += 60  # no tick in between: the request itself comes after the idle time
        assert get() == (8, b"", LOCKED_MESSAGE.encode(), False)
        assert agent.vault is None
    finally:
        agent.lock()


def test_idle_option_reaches_the_daemon(vault_with_records, agent_env):
    import json

    start(agent_env, "--idle", "90s")
    status = json.loads(launcher("agent", "status", "--json", env=agent_env).stdout)
    assert status["state"] == "unlocked"
    assert 0 < status["idle_lock_in_seconds"] <= 90


def test_agent_environment_is_the_clients_per_command_and_put_back(vault_with_records, monkeypatch):
    """Each command sees exactly the client's CVAULT_* and ENV_NAMES values; after it the agent's
    own environment is as before (also a variable the command set itself: CVAULT_PROFILE)."""
    from cli import agent_daemon

    monkeypatch.setenv("CVAULT_AGENT_ONLY", "agent's")
    monkeypatch.setenv("TERM", "agent-term")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("UNRELATED", "kept")
    before = dict(os.environ)
    seen = {}

    def fake_run(argv, obj):
        seen.update({k: os.environ.get(k) for k in ("CVAULT_AGENT_ONLY", "TERM", "NO_COLOR", "UNRELATED")})
        os.environ["CVAULT_PROFILE"] = "set-by-the-command"
        return 0

    monkeypatch.setattr("cli.main.run", fake_run)
    monkeypatch.chdir(vault_with_records.home)  # the agent leaves each command in /
    agent = agent_daemon.Agent(home=vault_with_records.home, addr=None, cacert=None)
    pairs = ["TERM=client-term", "NO_COLOR=1"]
    reply = agent.run(["/", "000", "utf-8:strict", str(len(pairs)), *pairs, "secret", "list", "acme"])
    assert reply.startswith(b"0 ")
    assert seen == {"CVAULT_AGENT_ONLY": None, "TERM": "client-term", "NO_COLOR": "1", "UNRELATED": "kept"}
    assert dict(os.environ) == before


def test_a_kept_alive_connection_the_service_closed_is_opened_again(tmp_path):
    """The service closes a keep-alive connection after 30 s without a request; a resident agent
    in remote mode then sent its next read on the dead connection and answered exit 9 ("cannot
    reach the cvault service"). The transport sees the close and connects again. Here a real
    HTTPS server closes each connection after one answer (without ``Connection: close``), as the
    idle timeout does."""
    import threading

    from cli.service_client.transport import Transport
    from tests.fakes.https import HTTPSService, QuietHandler, make_test_ca

    closed = threading.Event()
    connections = []

    class OneAnswer(QuietHandler):
        def do_GET(self):
            connections.append(self.client_address)
            self.send_bytes(200, b'{"status": "ok"}')
            self.close_connection = True

        def finish(self):
            super().finish()
            self.connection.close()
            closed.set()

    ca = make_test_ca(tmp_path / "tls")
    server = HTTPSService(OneAnswer, ca.server_context(), None, "one-answer").start()
    transport = Transport(server.origin, str(ca.ca_path))
    try:
        for _ in range(3):
            closed.clear()
            assert transport.request("GET", "/v1/health") == {"status": "ok"}
            assert closed.wait(30)  # the server has closed this connection
        assert len(connections) == 3
    finally:
        transport.close()
        server.stop()


def test_remote_mode_refusals_and_lock_are_the_same_through_the_agent(staff, tmp_path):
    """Service mode: a revoked assignment and an expired session are refused through the agent
    exactly as by the remote CLI without it (the service decides; the agent holds only the
    connection), and a locked agent answers "locked", exit 8."""
    import json

    from cli.agent_daemon import LOCKED_MESSAGE
    from tests.factories import write_session_file
    from tests.server.harness import start_service
    from vault.clock import SystemClock

    service = start_service(staff.vdir, tmp_path / "svc")
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    scope = f"service:{service.addr}"
    v = staff.vdir.open()
    try:
        bob_file = write_session_file(tmp_path / "bob.json", scope, "bob", staff.bob.token(v))
        old = SystemClock().now().replace(year=2025)  # past the 8 h absolute limit
        carl_files = [
            write_session_file(tmp_path / f"carl-{i}.json", scope, "carl", staff.carl.token(v, at=old))
            for i in (1, 2)
        ]
        staff.bob.vault = staff.carl.vault = None
    finally:
        v.close()
    base = {
        k: v
        for k, v in staff.vdir.env(
            CVAULT_ADDR=service.addr,
            CVAULT_CACERT=str(service.ca.ca_path),
            CVAULT_AGENT_SOCK=str(run / "agent.sock"),
        ).items()
        if k not in ("CVAULT_HOME", "CVAULT_KEY_FILE", "CVAULT_SESSION_FILE")
    }
    bob = {**base, "CVAULT_SESSION_FILE": str(bob_file)}
    carl = [{**base, "CVAULT_SESSION_FILE": str(f)} for f in carl_files]
    try:
        start(bob)
        ok = launcher("secret", "list", "acme", env=bob)
        assert ok.returncode == 0, ok.stderr
        v = staff.vdir.open()
        try:
            v.access.unassign(staff.amy.principal(v), "acme", "bob")
        finally:
            v.close()
        served = json.loads(launcher("agent", "status", "--json", env=bob).stdout)["served"]
        for env, again in ((bob, bob), (carl[0], carl[1])):
            through = launcher("secret", "list", "acme", env=env)
            direct = launcher("secret", "list", "acme", env={**again, "CVAULT_NO_AGENT": "1"})
            assert through.returncode in (3, 4), through.stderr
            assert (through.returncode, through.stdout, through.stderr) == (
                direct.returncode,
                direct.stdout,
                direct.stderr,
            )
        after = json.loads(launcher("agent", "status", "--json", env=bob).stdout)["served"]
        assert after == served + 2  # both refusals came from the agent, not from a fallback
        assert launcher("agent", "lock", env=bob).returncode == 0
        locked = launcher("secret", "list", "acme", env=bob)
        assert (locked.returncode, locked.stdout, locked.stderr) == (8, "", LOCKED_MESSAGE)
    finally:
        launcher("agent", "stop", env=bob)
        service.stop()


def _in(folder, *args: str, env: dict) -> subprocess.CompletedProcess:
    """The console script (bin/cvault: cli.launcher) run in ``folder``: relative paths are its."""
    argv = [sys.executable, str(ROOT / "bin" / "cvault"), *args]
    return subprocess.run(argv, env=env, cwd=folder, capture_output=True, text=True, timeout=60)


def test_relative_paths_given_to_agent_start_still_work(vault_with_records, tmp_path):
    """The daemon starts in "/" (review6 R6-4, vault.hardening.CHILD_CWD): the vault folder and
    the socket path a command names relative to its own folder are made absolute before."""
    (tmp_path / "run").mkdir(mode=0o700)
    env = vault_with_records.env(
        CVAULT_HOME="vault", CVAULT_KEY_FILE="vault.key", CVAULT_AGENT_SOCK="run/agent.sock"
    )
    assert vault_with_records.home == tmp_path / "vault"
    try:
        started = _in(tmp_path, "agent", "start", env=env)
        assert started.returncode == 0, started.stderr
        got = _in(tmp_path, "secret", "get", "acme", "office/wifi", "--field", "wifi_key", env=env)
        assert (got.returncode, got.stdout.strip()) == (0, "k3y-of-acme"), got.stderr
        status = json.loads(_in(tmp_path, "agent", "status", "--json", env=env).stdout)
        assert status["served"] == 1 and status["mode"] == f"vault {tmp_path / 'vault'}"
    finally:
        _in(tmp_path, "agent", "stop", env=env)


def test_a_relative_ca_file_given_to_a_remote_agent_still_works(vault_with_records, tmp_path):
    from tests.factories import write_session_file
    from tests.helpers import OPERATOR_TOKEN
    from tests.server.harness import start_service

    service = start_service(vault_with_records, tmp_path / "svc")
    run = tmp_path / "remote-run"
    run.mkdir(mode=0o700)
    session = tmp_path / "remote-session.json"
    write_session_file(session, f"service:{service.addr}", "operator", OPERATOR_TOKEN)
    env = vault_with_records.env(
        CVAULT_ADDR=service.addr,
        CVAULT_CACERT=os.path.relpath(service.ca.ca_path, tmp_path),
        CVAULT_SESSION_FILE=str(session),
        CVAULT_AGENT_SOCK=str(run / "agent.sock"),
    )
    env = {k: v for k, v in env.items() if k not in ("CVAULT_HOME", "CVAULT_KEY_FILE")}
    try:
        started = _in(tmp_path, "agent", "start", env=env)
        assert started.returncode == 0, started.stderr
        got = _in(tmp_path, "secret", "get", "acme", "office/wifi", "--field", "wifi_key", env=env)
        assert (got.returncode, got.stdout.strip()) == (0, "k3y-of-acme"), got.stderr
        assert json.loads(_in(tmp_path, "agent", "status", "--json", env=env).stdout)["served"] == 1
    finally:
        _in(tmp_path, "agent", "stop", env=env)
        service.stop()
