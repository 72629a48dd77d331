"""What the key-rotation concurrency fix (issue 13 items 1-2, commit c024bb1) costs, before and
after, measured in the same run.

Three trees run side by side, each from its own source (``git archive`` of the commit, run with
``PYTHONPATH`` pointing at it, bytecode compiled, the same interpreter and dependencies):

* **before**: ``c024bb1^``, the commit before the fix;
* **fix**: ``c024bb1``, the fix alone;
* **now**: this working tree (the fix plus everything since).

Targets (issue 13, "Performance"):

1. embedded ``cvault secret get``: median at most 1.3 x the import floor
   ``python -c "import click, cryptography...aead, sqlite3"`` (the same interpreter, same
   ``PYTHONPATH`` way of running) — all four commands interleaved so noise hits them alike;
2. service reads (``POST /v1/secrets/get``, 4 keep-alive connections, audit on): the fix costs
   at most 10 % of the before tree's throughput. The three services run one at a time (2 cores),
   in alternating rounds; the median round counts.

Each tree makes its own vault with its own ``bench.fixtures.ready_vault`` (the schema may differ
between trees). Run: ``python -m bench.rotation_cost`` (about two minutes).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import READ_FLOOR, ROOT, Result, clean_env, emit, interleaved, iqr, time_command

FIX = "c024bb1"
TREES = {"before": f"{FIX}^", "fix": FIX, "now": None}
MAKE_VAULT = (
    "import json, sys\n"
    "from pathlib import Path\n"
    "from bench.fixtures import ready_vault\n"
    "bv = ready_vault(Path(sys.argv[1]), records=10)\n"
    "print(json.dumps({'home': str(bv.home), 'key_file': str(bv.key_file), 'env': bv.env}))\n"
)


@dataclass
class Tree:
    label: str
    root: Path
    home: Path
    key_file: Path
    env: dict

    def pythonpath(self, **extra: str) -> dict:
        return clean_env(PYTHONPATH=str(self.root), CVAULT_NO_AGENT="1", **extra)


def extract(rev: str | None, into: Path) -> Path:
    """The source tree of ``rev`` (None: this working tree) with compiled bytecode."""
    import compileall

    if rev is None:
        root = ROOT
    else:
        root = into / rev.replace("^", "-parent")
        root.mkdir(parents=True)
        archive = into / "tree.tar"
        subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), rev],
            check=True,
            capture_output=True,
        )
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
        archive.unlink()
    for package in ("cli", "vault"):
        compileall.compile_dir(str(root / package), quiet=2)
    return root


def make_tree(label: str, rev: str | None, base: Path) -> Tree:
    root = extract(rev, base / "src")
    folder = base / f"vault-{label}"
    folder.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", MAKE_VAULT, str(folder)],
        cwd=root,
        env=clean_env(PYTHONPATH=str(root)),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    made = json.loads(out.strip().splitlines()[-1])
    return Tree(label, root, Path(made["home"]), Path(made["key_file"]), made["env"])


def secret_get(trees: list[Tree], runs: int) -> list[Result]:
    # -P: the current folder is not put first on sys.path (it would shadow PYTHONPATH's tree)
    floor_env, floor_argv = trees[-1].pythonpath(), [sys.executable, "-P", *READ_FLOOR[1:]]
    commands = [lambda: time_command(floor_argv, floor_env)]
    for tree in trees:
        # the console script's own entry where the tree has one (it serves ``secret get --field``
        # without click since cli/fastget.py), as users run it
        entry = "cli.launcher" if (tree.root / "cli" / "launcher.py").exists() else "cli.main"
        argv = [
            sys.executable,
            "-P",
            "-m",
            entry,
            "secret",
            "get",
            "acme",
            "rec/0",
            "--field",
            "password",
        ]
        env = tree.pythonpath(**tree.env)
        commands.append(lambda argv=argv, env=env: time_command(argv, env))
    floor, *samples = interleaved(runs, *commands)
    floor_median = statistics.median(floor)
    medians = {tree.label: statistics.median(s) for tree, s in zip(trees, samples, strict=True)}
    results = []
    for tree, got in zip(trees, samples, strict=True):
        ratio = medians[tree.label] / floor_median
        results.append(
            emit(
                Result(
                    f"secret get, {tree.label} tree (rotation fix: {FIX})",
                    "s",
                    medians[tree.label],
                    iqr(got),
                    floor_median,
                    "python -c 'import click, cryptography...aead, sqlite3' (PYTHONPATH runs)",
                    ratio,
                    "<= 1.3 x floor",
                    ratio <= 1.3,
                    f"{runs} runs interleaved with the floor and the other trees; "
                    f"vs before: {medians[tree.label] / medians['before']:.3f} x",
                )
            )
        )
    return results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, tree: Tree, tls_dir: Path):
        from tests.fakes.https import make_test_ca

        self.ca = make_test_ca(tls_dir)
        self.port = _free_port()
        self.log = tls_dir / "serve.log"
        argv = [
            sys.executable,
            "-P",
            "-m",
            "cli.main",
            "--home",
            str(tree.home),
            "serve",
            "--port",
            str(self.port),
            "--tls-cert",
            str(self.ca.cert_path),
            "--tls-key",
            str(self.ca.key_path),
            "--key-file",
            str(tree.key_file),
            "--log-level",
            "warning",
            "--sweep-interval",
            "0",
            "--outbox-interval",
            "0",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=tree.root, env=tree.pythonpath(), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{tree.label}: serve did not start: {self.log.read_text()[-1500:]}")
            try:
                status, _ = self.client().get("/v1/health")
                if status == 200:
                    return
            except OSError:
                time.sleep(0.1)

    def client(self, token: str | None = None):
        from tests.server.harness import ApiClient

        return ApiClient(self.port, self.ca.ca_path, token)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def reads_per_second(served: Served, token: str, threads: int, seconds: float) -> float:
    done = [0] * threads
    errors: list = []
    stop = time.monotonic() + seconds

    def work(n: int) -> None:
        api = served.client(token)
        try:
            i = 0
            while time.monotonic() < stop:
                status, body = api.post(
                    "/v1/secrets/get", {"client_name": "acme", "path": f"rec/{(n + i) % 10}"}
                )
                if status != 200:
                    errors.append((status, body))
                    return
                i += 1
            done[n] = i
        finally:
            api.close()

    started = time.monotonic()
    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError(f"errors during the run: {errors[:3]}")
    return sum(done) / (time.monotonic() - started)


def service_reads(
    trees: list[Tree], base: Path, rounds: int, seconds: float, threads: int = 4
) -> list[Result]:
    from tests.helpers import OPERATOR_TOKEN

    rates: dict[str, list[float]] = {tree.label: [] for tree in trees}
    for r in range(rounds + 1):  # round 0 warms each service's caches and is not counted
        order = trees if r % 2 else list(reversed(trees))
        for tree in order:
            served = Served(tree, base / f"tls-{tree.label}-{r}")
            try:
                reads_per_second(served, OPERATOR_TOKEN, threads, 1.0)  # warm-up: unwrap, caches
                rate = reads_per_second(served, OPERATOR_TOKEN, threads, seconds)
            finally:
                served.stop()
            if r:
                rates[tree.label].append(rate)
    before = statistics.median(rates["before"])
    results = []
    for tree in trees:
        median = statistics.median(rates[tree.label])
        ratio = median / before
        results.append(
            emit(
                Result(
                    f"service reads/s, {tree.label} tree vs before (rotation fix: {FIX})",
                    "reads/s",
                    median,
                    iqr(rates[tree.label]),
                    before,
                    f"the before tree ({FIX}^), same run",
                    ratio,
                    ">= 0.90 x before (the fix costs at most 10 %)",
                    ratio >= 0.90,
                    f"{threads} keep-alive connections, {rounds} rounds of {seconds:.0f} s, "
                    f"{os.cpu_count()} cpus; rounds: " + ", ".join(f"{x:.0f}" for x in rates[tree.label]),
                )
            )
        )
    return results


def run(runs: int = 30, rounds: int = 3, seconds: float = 6.0) -> list[Result]:
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        trees = [make_tree(label, rev, base) for label, rev in TREES.items()]
        results = secret_get(trees, runs)
        results += service_reads(trees, base, rounds, seconds)
    return results


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    run(runs=8, rounds=1, seconds=3.0) if quick else run()
