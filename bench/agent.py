"""``cvault secret get`` through a resident agent, as users run it (issue 20, docs/agent.md).

Measured interleaved in one run, on a vault of 10 records with the operator's session:

* the floor ``python -I -S -c pass`` (an interpreter that starts and does nothing);
* ``pass show`` (bash + gpg with a warm gpg-agent), when ``pass`` and ``gpg`` are installed
  (``bench/install-peers.sh``);
* ``cvault secret get`` through the agent with a **regular** install (``pip install --no-deps .``
  into a fresh venv: the console script with no editable-install import hook), and with the
  editable install of the working tree, which adds its import hook (~9-13 ms) to every start;
* ``cvault secret get`` without the agent (``CVAULT_NO_AGENT=1``), for reference.

Targets: agent (regular install) median <= ``pass show`` median and <= 2.5 x the floor.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import (
    Result,
    clean_env,
    compile_bytecode,
    cvault_argv,
    emit,
    interleaved,
    iqr,
    regular_install,
    time_command,
)

FLOOR = [sys.executable, "-I", "-S", "-c", "pass"]
FLOOR_DESC = "python -I -S -c pass"


def _pass_store(base: Path):
    if not (shutil.which("pass") and shutil.which("gpg")):
        return None
    from bench.peers import _run, init_pass_store

    env = clean_env(GNUPGHOME=str(base / "gnupg"), PASSWORD_STORE_DIR=str(base / "store"))
    init_pass_store(base, env)
    _run(["pass", "insert", "-m", "acme/rec/0"], env, b"pw-0\n")
    return env


def run(runs: int = 30) -> list[Result]:
    compile_bytecode()
    from bench.fixtures import ready_vault

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        ctx = ready_vault(base, records=10)
        run_dir = base / "run"
        run_dir.mkdir(mode=0o700)
        env = clean_env(**ctx.env, CVAULT_AGENT_SOCK=str(run_dir / "agent.sock"))
        editable = cvault_argv()
        regular = [str(regular_install(base, with_deps=False) / "cvault")]
        pass_env = _pass_store(base)
        started = subprocess.run(editable + ["agent", "start"], env=env, capture_output=True, text=True)
        if started.returncode != 0:
            raise RuntimeError(f"agent start failed: {started.stderr}")
        get = ["secret", "get", "acme", "rec/0", "--field", "password"]
        try:
            commands = [
                lambda: time_command(FLOOR, clean_env()),
                lambda: time_command(regular + get, env),
                lambda: time_command(editable + get, env),
                lambda: time_command(editable + get, {**env, "CVAULT_NO_AGENT": "1"}),
            ]
            if pass_env is not None:
                commands.append(lambda: time_command(["pass", "show", "acme/rec/0"], pass_env))
            samples = interleaved(runs, *commands)
        finally:
            subprocess.run(editable + ["agent", "stop"], env=env, capture_output=True)
            if pass_env is not None:
                subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=pass_env, capture_output=True)
    floor = statistics.median(samples[0])
    medians = [statistics.median(s) for s in samples]
    pass_median = medians[4] if pass_env is not None else None
    agent_regular = medians[1]
    results = [
        Result(
            "secret get via agent (regular install)",
            "s",
            agent_regular,
            iqr(samples[1]),
            floor,
            FLOOR_DESC,
            agent_regular / floor,
            "<= 2.5 x floor",
            agent_regular / floor <= 2.5,
        ),
        Result(
            "secret get via agent vs pass show",
            "s",
            agent_regular,
            iqr(samples[1]),
            pass_median,
            "pass show (bash + gpg, warm gpg-agent)",
            agent_regular / pass_median if pass_median else None,
            "<= 1.0 x pass show",
            agent_regular <= pass_median if pass_median else None,
            "" if pass_median else "pass/gpg not installed (bench/install-peers.sh)",
        ),
        Result(
            "secret get via agent (editable install)",
            "s",
            medians[2],
            iqr(samples[2]),
            floor,
            FLOOR_DESC,
            medians[2] / floor,
            "reported (the editable import hook adds to every start)",
            None,
        ),
        Result(
            "secret get without agent (editable install)",
            "s",
            medians[3],
            iqr(samples[3]),
            floor,
            FLOOR_DESC,
            medians[3] / floor,
            "reported",
            None,
        ),
    ]
    results += remote(runs)
    return [emit(r) for r in results]


def remote(runs: int) -> list[Result]:
    """Remote mode: the agent holds one kept-alive HTTPS connection to a real ``cvault serve``.

    Target (issue 20): median <= 2 x ``python -I -S -c pass`` + one loopback TLS round trip. The
    round trip is measured as a minimal request (``GET /v1/health``) on an already-open TLS
    connection to the same server, with the client the agent itself uses
    (``cli.service_client.transport.Transport``), interleaved round by round with the processes.
    Also reported: the same ``secrets/get`` as one request on a kept-alive connection (the
    service's own work for the read, audit fsync included) and what is left for the two
    processes and the agent once that is taken away."""
    import json
    import time

    from bench.service import prepare
    from cli.service_client.transport import Transport
    from tests.server.harness import start_service

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        vdir, token = prepare(base)
        service = start_service(vdir, base / "svc", "--sweep-interval", "0", "--outbox-interval", "0")
        try:
            session = base / "session.json"
            session.write_text(
                json.dumps(
                    {
                        "vault_id": f"service:{service.addr}",
                        "user": "eve",
                        "token": token,
                        "expires_at": "2099-01-01T00:00:00Z",
                    }
                )
            )
            session.chmod(0o600)
            run_dir = base / "run"
            run_dir.mkdir(mode=0o700)
            env = clean_env(
                CVAULT_ADDR=service.addr,
                CVAULT_CACERT=str(service.ca.ca_path),
                CVAULT_SESSION_FILE=str(session),
                CVAULT_AGENT_SOCK=str(run_dir / "agent.sock"),
            )
            regular = [str(regular_install(base, with_deps=False) / "cvault")]
            started = subprocess.run(
                cvault_argv() + ["agent", "start"], env=env, capture_output=True, text=True
            )
            if started.returncode != 0:
                raise RuntimeError(f"agent start failed: {started.stderr}")
            minimal = Transport(service.addr, str(service.ca.ca_path))
            reader = Transport(service.addr, str(service.ca.ca_path))
            reader.token = token
            body = {"client_name": "acme", "path": "rec/0"}

            def trip(transport: Transport, method: str, path: str, data: dict | None) -> float:
                start = time.perf_counter()
                transport.request(method, path, data, auth=data is not None)
                return time.perf_counter() - start

            get = ["secret", "get", "acme", "rec/0", "--field", "password"]
            floor, agent, rtt_s, read_s = interleaved(
                runs,
                lambda: time_command(FLOOR, clean_env()),
                lambda: time_command(regular + get, env),
                lambda: trip(minimal, "GET", "/v1/health", None),
                lambda: trip(reader, "POST", "/v1/secrets/get", body),
            )
            minimal.close()
            reader.close()
        finally:
            subprocess.run(cvault_argv() + ["agent", "stop"], env=env, capture_output=True)
            service.stop()
    f, a = statistics.median(floor), statistics.median(agent)
    rtt, read = statistics.median(rtt_s), statistics.median(read_s)
    rest = [x - y for x, y in zip(agent, read_s, strict=True)]  # round by round
    return [
        Result(
            "remote secret get via agent (regular install)",
            "s",
            a,
            iqr(agent),
            2 * f + rtt,
            f"2 x python -I -S -c pass + one loopback TLS round trip (GET /v1/health, {rtt * 1000:.2f} ms)",
            a / (2 * f + rtt),
            "<= 1.0 x (2 x floor + round trip)",
            a <= 2 * f + rtt,
        ),
        Result(
            "remote secret get via agent, the read's own request taken away",
            "s",
            statistics.median(rest),
            iqr(rest),
            f,
            f"{FLOOR_DESC} (the read alone on a kept-alive connection: {read * 1000:.2f} ms)",
            statistics.median(rest) / f,
            "reported: the client process, the Unix socket and the agent's click run, per floor",
            None,
        ),
    ]


if __name__ == "__main__":
    run()
