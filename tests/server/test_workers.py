"""``cvault serve --workers 2`` (issue 20, the service target; docs/service.md "Worker processes").

Real ``cvault serve --workers 2`` subprocesses over loopback HTTPS: reads through both workers
write exactly one audit event each and the chain verifies; kill -9 of a worker mid-load leaves no
answered read without its durable event and the restarted worker serves unsealed; an unseal in
one worker unseals all; step-up guesses through both workers count exactly; background jobs run
once. The login, argon2 and unseal throttles across workers are the one-process attacks of
tests/identity/test_insider_attacks_http.py, parametrized there with ``--workers 2``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import OPERATOR_TOKEN, VaultDir, add_client, make_vault, operator
from tests.server.harness import Service, read_until_stopped, start_service


def worker_pids(service: Service) -> set[int]:
    """The supervisor's live child processes (its workers; not the dead ones yet unreaped), from /proc."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == service.proc.pid and state != "Z":
                pids.add(int(entry))
    return pids


def serving_pid(service: Service, client) -> int:
    """The worker process that holds the server side of ``client``'s connection: the socket's
    inode from /proc/net/tcp (the row whose remote port is the client's own), then the worker
    whose descriptors include it."""
    assert client.get("/v1/health")[0] == 200  # connected
    local_port = client.conn.sock.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        ours = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if ours == (service.port, local_port):
            inode = fields[9]
    assert inode is not None
    for pid in worker_pids(service):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError("no worker holds the connection")


def one_client_per_worker(service: Service, token: str | None = None, tries: int = 60) -> dict:
    """Connections until each worker holds one: {pid: client}."""
    found: dict = {}
    want = worker_pids(service)
    for _ in range(tries):
        client = service.client(token)
        pid = serving_pid(service, client)
        if pid in found:
            client.close()
        else:
            found[pid] = client
        if set(found) >= want:
            return found
    raise AssertionError(f"connections reached only workers {sorted(found)} of {sorted(want)}")


def wait_for_workers(service: Service, count: int, old: set[int] = frozenset()) -> set[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = worker_pids(service)
        if len(pids) == count and not (pids & set(old)):
            return pids
        time.sleep(0.05)
    raise AssertionError(f"expected {count} workers, have {sorted(worker_pids(service))}")


def _vault_with_records(tmp_path, n: int = 40):
    vdir = make_vault(tmp_path)
    v = vdir.open()
    add_client(v, "acme")
    paths = [f"rec/{i}" for i in range(n)]
    for p in paths:
        v.secrets.put(operator(), "acme", p, "note", {"text": p})
    before = v.ctx.audit.head()[0]
    v.close()
    return vdir, paths, before


def _durable_reads(vdir: VaultDir, before: int) -> Counter:
    v = vdir.open()
    try:
        events = v.audit.log(operator(), action="secret.get", limit=0)
    finally:
        v.close()
    return Counter(e["detail"] for e in events if e["seq"] > before and e["outcome"] == "allow")


def test_two_workers_serve_reads_with_one_audit_event_each_and_the_chain_verifies(tmp_path):
    vdir, paths, before = _vault_with_records(tmp_path)
    service = start_service(vdir, tmp_path / "svc", "--workers", "2")
    try:
        assert len(wait_for_workers(service, 2)) == 2
        clients = one_client_per_worker(service, OPERATOR_TOKEN)  # both workers serve reads
        answered: list[str] = []
        failures: list = []

        def reader(k: int, client) -> None:
            for i in range(60):
                path = paths[(k + 8 * i) % len(paths)]
                status, body = client.post("/v1/secrets/get", {"client_name": "acme", "path": path})
                if status == 200 and body["fields"]["text"] == path:
                    answered.append(path)
                else:
                    failures.append((status, body))
            client.close()

        readers = list(clients.values()) + [service.client(OPERATOR_TOKEN) for _ in range(6)]
        threads = [threading.Thread(target=reader, args=(k, c)) for k, c in enumerate(readers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        service.stop()
    assert not failures, failures[:3]
    assert len(answered) == 60 * len(readers)
    assert _durable_reads(vdir, before) == Counter(answered)  # exactly one event per read
    verify = vdir.cli("audit", "verify")
    assert verify.returncode == 0, verify.stderr


@pytest.mark.slow
def test_kill_9_of_a_worker_mid_load_leaves_no_answered_read_without_its_event(tmp_path):
    """Eight readers (reconnecting when their connection dies); one worker is killed with
    SIGKILL, then the other: every answered read has its durable audit event, the supervisor
    starts new workers, and they serve reads unsealed (the key handed to them, not re-read)."""
    vdir, paths, before = _vault_with_records(tmp_path)
    service = start_service(vdir, tmp_path / "svc", "--workers", "2")
    first = wait_for_workers(service, 2)
    answered: list[str] = []
    refused: list = []
    stop = threading.Event()

    def reader(k: int) -> None:
        read_until_stopped(service, OPERATOR_TOKEN, paths, k, answered, stop, refused=refused, reconnect=True)

    def until(count: int) -> None:
        deadline = time.monotonic() + 90
        while len(answered) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(answered) >= count, (len(answered), refused[:3])

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(8)]
    try:
        for t in threads:
            t.start()
        until(150)
        victim, other = sorted(first)
        os.kill(victim, signal.SIGKILL)  # kill -9, mid-flight
        wait_for_workers(service, 2, old={victim})
        until(len(answered) + 150)
        os.kill(other, signal.SIGKILL)
        third = wait_for_workers(service, 2, old={other})
        assert not (third & first)  # both replaced: what answers now was started after the unseal
        until(len(answered) + 150)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        service.stop()
    assert not refused, refused[:3]  # never 503 sealed from a restarted worker
    durable, got = _durable_reads(vdir, before), Counter(answered)
    missing = {p: n - durable[p] for p, n in got.items() if durable[p] < n}
    assert not missing, f"answered reads with no durable audit event: {missing}"
    verify = vdir.cli("audit", "verify")
    assert verify.returncode == 0, verify.stderr


def _passphrase_vault(tmp_path) -> VaultDir:
    from vault.facade import Vault

    home = tmp_path / "vault"
    v, _ = Vault.init(
        home,
        passphrase="operator passphrase 1",
        key_file=tmp_path / "vault.key",
        kdf_params={"memory_kib": 65536, "iterations": 1, "lanes": 4},
    )
    v.close()
    return VaultDir(home, tmp_path / "vault.key")


def test_an_unseal_through_one_worker_unseals_every_worker_and_their_restarts(tmp_path):
    vdir = _passphrase_vault(tmp_path)
    service = start_service(vdir, tmp_path / "svc", "--workers", "2", unsealed=False)
    try:
        wait_for_workers(service, 2)
        clients = one_client_per_worker(service)
        assert all(c.get("/v1/health")[1]["sealed"] for c in clients.values())
        one = next(iter(clients.values()))
        status, body = one.post("/v1/sys/unseal", {"passphrase": "operator passphrase 1"})
        assert (status, body) == (200, {"sealed": False})
        # the other worker answers unsealed at once: the key was handed out before the answer
        assert {pid: c.get("/v1/health")[1]["sealed"] for pid, c in clients.items()} == dict.fromkeys(
            clients, False
        )
        for c in clients.values():
            c.close()
        old = worker_pids(service)
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        wait_for_workers(service, 2, old=old)  # both replaced
        for pid, c in one_client_per_worker(service).items():
            assert c.get("/v1/health")[1]["sealed"] is False, pid
    finally:
        service.stop()
    assert service.proc.returncode in (0, -signal.SIGTERM)


def test_the_host_socket_unseals_every_worker(tmp_path):
    from vault.server.host_unseal import default_socket, unseal_over_socket

    vdir = _passphrase_vault(tmp_path)
    service = start_service(vdir, tmp_path / "svc", "--workers", "2", unsealed=False)
    try:
        wait_for_workers(service, 2)
        clients = one_client_per_worker(service)
        answer = unseal_over_socket(default_socket(vdir.home), {"passphrase": "operator passphrase 1"})
        assert answer == {"sealed": False}
        assert [c.get("/v1/health")[1]["sealed"] for c in clients.values()] == [False, False]
    finally:
        service.stop()


def test_parallel_stepup_guesses_through_two_workers_count_exactly(staff_template, tmp_path):
    """Twelve simultaneous wrong step-ups on one session, spread over both workers: five are
    evaluated (401), the rest refused (423) without being checked (the count is in the vault,
    shared by the workers)."""
    import sqlite3

    from tests.factories import person
    from tests.helpers import copy_vault
    from vault import api_spec as spec

    vdir = copy_vault(staff_template.vdir, tmp_path)
    v = vdir.open()
    try:
        p = person(v, "stepper", "engineer", real_password=True)
    finally:
        v.close()
    service = start_service(vdir, tmp_path / "svc", "--workers", "2")
    try:
        wait_for_workers(service, 2)
        status, login = service.client().post(
            spec.BY_NAME["users.login"].path, {"name": p.name, "password": p.password, "totp": p.code()}
        )
        assert status == 200
        clients = list(one_client_per_worker(service, login["token"]).values())
        clients += [service.client(login["token"]) for _ in range(12 - len(clients))]
        answers: list[int] = []
        barrier = threading.Barrier(12)

        def guess(client):
            barrier.wait()
            answers.append(client.post(spec.BY_NAME["users.step_up"].path, {"code": "000000"})[0])
            client.close()

        threads = [threading.Thread(target=guess, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        service.stop()
    assert sorted(answers) == [401] * 5 + [423] * 7, answers
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        reasons = [r[0] for r in db.execute("SELECT reason FROM audit_events WHERE action = 'auth.stepup'")]
    finally:
        db.close()
    assert any("throttled for this session" in r for r in reasons)


def test_login_buckets_are_global_across_workers(tmp_path):
    """Ten logins for one (unknown: no lockout behind the bucket) name from ten addresses, each
    on a new connection, so both workers get some: the name's bucket (5 at once) is the
    supervisor's, so five are checked (401) and five refused (429), as with one process."""
    from vault import api_spec as spec

    vdir, _, _ = _vault_with_records(tmp_path, 1)
    service = start_service(vdir, tmp_path / "svc", "--workers", "2", "--argon2-queue", "16")
    try:
        wait_for_workers(service, 2)
        statuses, served_by = [], set()
        for n in range(10):
            client = service.client(source=f"127.0.7.{n + 1}")
            served_by.add(serving_pid(service, client))
            body = {"name": "ghost", "password": "a guess of ten", "totp": "123456"}
            statuses.append(client.post(spec.BY_NAME["users.login"].path, body)[0])
            client.close()
    finally:
        service.stop()
    assert statuses == [401] * 5 + [429] * 5, statuses
    assert len(served_by) == 2  # both workers answered some: the count is not per worker


@pytest.mark.slow
def test_a_worker_killed_mid_login_leaves_no_login_in_flight(tmp_path):
    """Twelve logins for twelve names queue for the host's one Argon2id turn; the worker serving
    some of them is killed with SIGKILL while they wait. Their reservations were the supervisor's:
    it ends them (counted as failed) when the worker's socketpair closes, so each name can be
    tried again at once (401, checked), not 429 "a login for this name is in flight" forever."""
    from vault import api_spec as spec

    vdir, _, _ = _vault_with_records(tmp_path, 1)
    service = start_service(vdir, tmp_path / "svc", "--workers", "2")
    login = spec.BY_NAME["users.login"].path
    try:
        wait_for_workers(service, 2)
        names = [f"queued{n}" for n in range(12)]
        clients = [service.client(source=f"127.0.8.{n + 1}") for n in range(12)]
        pids = [serving_pid(service, c) for c in clients]
        victim = pids[-1]
        answers: list = []
        barrier = threading.Barrier(13)

        def attempt(n):
            barrier.wait()
            try:
                answers.append(
                    clients[n].post(login, {"name": names[n], "password": "x" * 12, "totp": "1"})[0]
                )
            except OSError:
                answers.append("killed")
            clients[n].close()

        threads = [threading.Thread(target=attempt, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        barrier.wait()
        deadline = time.monotonic() + 60
        while not answers and time.monotonic() < deadline:  # the first derivation is done
            time.sleep(0.01)
        os.kill(victim, signal.SIGKILL)
        for t in threads:
            t.join(120)
        cut = [names[n] for n in range(12) if pids[n] == victim]
        wait_for_workers(service, 2, old={victim})
        again = []
        for n, name in enumerate(cut):
            client = service.client(source=f"127.0.9.{n + 1}")
            again.append(client.post(login, {"name": name, "password": "x" * 12, "totp": "1"})[0])
            client.close()
    finally:
        service.stop()
    assert "killed" in answers, answers  # some logins were cut off with their worker
    assert again and set(again) == {401}, again


def test_a_key_rotation_in_one_worker_empties_every_workers_key_cache(tmp_path):
    """Both workers read a record (each caches the client's unwrapped key); the key is rotated
    through one of them, which destroys the old version: the other worker has dropped its cached
    copy before the rotation is answered (its log line counts the entries), and both still read.
    The same path runs for a shred (``forget_client_keys``), wherever it runs."""
    import re

    from vault import api_spec as spec

    vdir, paths, _ = _vault_with_records(tmp_path, 1)
    service = start_service(vdir, tmp_path / "svc", "--workers", "2", "--log-level", "info")
    read = {"client_name": "acme", "path": paths[0]}
    try:
        wait_for_workers(service, 2)
        clients = one_client_per_worker(service, OPERATOR_TOKEN)
        for c in clients.values():
            assert c.post("/v1/secrets/get", read)[0] == 200
        (rotator, first), (other, second) = sorted(clients.items())
        status, body = first.post(spec.BY_NAME["clients.rotate_key"].path, {"name": "acme"})
        assert status == 200, body
        dropped = [
            int(n) for n in re.findall(rf"worker {other} dropped (\d+) cached key entries", service.log())
        ]
        assert dropped and max(dropped) >= 1, service.log()[-2000:]
        for c in (first, second):
            assert c.post("/v1/secrets/get", read)[0] == 200
            c.close()
    finally:
        service.stop()


def test_the_connection_cap_holds_for_all_workers_together(tmp_path):
    """``--max-connections 3`` (uvicorn's limit counts the connection asking: one process serves
    two at once) with two workers: each serves one, so of eight kept-alive connections at most
    two are served (the rest answered 503 busy), however the kernel spread them, as with one
    process; not two per worker."""
    vdir, _, _ = _vault_with_records(tmp_path, 1)
    service = start_service(vdir, tmp_path / "svc", "--workers", "2", "--max-connections", "3")
    try:
        wait_for_workers(service, 2)
        clients = [service.client() for _ in range(8)]
        statuses = []
        for c in clients:  # one after another; the served ones stay open (keep-alive)
            deadline = time.monotonic() + 30
            while True:
                try:
                    statuses.append(c.get("/v1/health")[0])
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    c.close()  # a worker still starting: its backlog holds the connection
        for c in clients:
            c.close()
    finally:
        service.stop()
    assert set(statuses) <= {200, 503} and 1 <= statuses.count(200) <= 2, statuses


def test_workers_stop_when_the_supervisor_is_killed(tmp_path):
    """kill -9 of the supervisor: each worker sees its socketpair closed and stops (no orphan
    holding the root key)."""
    vdir, _, _ = _vault_with_records(tmp_path, 1)
    service = start_service(vdir, tmp_path / "svc", "--workers", "2")
    pids = wait_for_workers(service, 2)
    service.proc.kill()
    service.proc.wait(10)
    deadline = time.monotonic() + 30
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if Path(f"/proc/{p}").exists() and "Z" not in _state(p)}
        time.sleep(0.05)
    assert not alive, alive


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.slow
def test_background_jobs_run_once_not_once_per_worker(tmp_path):
    """The scheduled backup (its first round 5 s after the jobs start, then daily): with two
    workers exactly one backup is made, by the supervisor, however long both workers have run."""
    vdir, _, _ = _vault_with_records(tmp_path, 2)
    backups = tmp_path / "backups"
    backups.mkdir(mode=0o700)
    service = start_service(vdir, tmp_path / "svc", "--workers", "2", "--backup-dir", str(backups))
    try:
        wait_for_workers(service, 2)
        one_client_per_worker(service)  # both workers are up and serving (their lifespans ran)
        deadline = time.monotonic() + 60
        while not any(backups.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(backups.iterdir())
        time.sleep(8)  # past every worker's first job round, had it any
    finally:
        service.stop()
    files = sorted(p.name for p in backups.iterdir())
    assert len([f for f in files if not f.startswith(".")]) == 1, files


def test_bad_worker_options_are_one_line_and_create_nothing(tmp_path):
    """Refused before anything is bound or written: one line, exit 2 (a usage error) or exit 5 (no
    vault), no traceback, and no folder made where no vault is."""
    from tests.helpers import run_cli

    vdir, _, _ = _vault_with_records(tmp_path, 1)
    base = [
        "--home",
        str(vdir.home),
        "serve",
        "--insecure-http",
        "--port",
        "0",
        "--key-file",
        str(vdir.key_file),
    ]
    cases = [
        (["--workers", "2", "--argon2-queue", "1"], 2, "--argon2-queue must be at least --workers"),
        (["--workers", "2", "--max-connections", "2"], 2, "--max-connections must be more than --workers"),
        (["--workers", "0"], 2, "--workers"),
    ]
    for extra, code, words in cases:
        proc = run_cli(*base, *extra)
        assert proc.returncode == code, (extra, proc.stderr)
        assert words in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    missing = tmp_path / "no-vault-here"
    proc = run_cli("--home", str(missing), "serve", "--insecure-http", "--port", "0", "--workers", "2")
    assert proc.returncode == 5 and "no vault at" in proc.stderr and "Traceback" not in proc.stderr
    assert not missing.exists()


def test_workers_default_to_one_per_cpu_within_the_other_limits(tmp_path, monkeypatch):
    """``--workers auto`` is the default: one worker per CPU of the process's affinity mask, as
    docs/service.md recommends (one process stops scaling with connections: the bench's
    "(1 worker)" rows), bounded by what --argon2-queue and --max-connections allow; anything but
    auto or 1-64 is one line and exit 2."""
    from cli.commands.serve import WorkerCount, auto_workers, serve_cmd
    from tests.helpers import run_cli

    (option,) = [p for p in serve_cmd.params if p.name == "workers"]
    assert option.default == "auto" and WorkerCount().convert("auto", None, None) == "auto"
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    assert auto_workers(16, 512) == 8
    assert auto_workers(3, 512) == 3 and auto_workers(16, 3) == 2
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert auto_workers(16, 512) == 1  # a one-CPU host: the one-process service
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(100)))
    assert auto_workers(1024, 4096) == 64
    vdir, _, _ = _vault_with_records(tmp_path, 1)
    for bad in ("0", "65", "many", "-1"):
        proc = run_cli("--home", str(vdir.home), "serve", "--insecure-http", "--port", "0", "--workers", bad)
        assert proc.returncode == 2 and "--workers" in proc.stderr and "Traceback" not in proc.stderr, bad
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
