"""cvault against the tools people would otherwise use, measured side by side in the same run.

Peers (installed from the system package manager by ``bench/install-peers.sh``; a peer that is not
installed is skipped and the result says so):

* ``pass`` (GnuPG; a throwaway GNUPGHOME with a passphrase-less key made in batch mode and a
  PASSWORD_STORE_DIR, both in a temporary folder; gpg-agent is stopped at the end),
* ``age`` (one identity file; one ``.age`` file per record),
* ``rclone`` crypt (a local crypt remote configured through environment variables and an empty
  temporary rclone.conf, passwords given through ``rclone obscure``).

Two comparisons, every tool holding the same records (the same JSON document per record):

* reading one secret: ``cvault secret get`` (key-file unseal, session, need-to-know, audit event
  with fsync) vs ``pass show`` vs ``age -d`` vs ``rclone cat``; floor: the Python import floor of
  issue 2, all interleaved round by round;
* writing N records: ``cvault secret import`` (one CLI process, one transaction) vs
  ``rclone copy`` of N small files into the crypt remote vs a ``pass insert`` loop and an
  ``age -e`` loop over fewer records (one process per record is what those tools offer); floor:
  ``cp -r`` of the same N plaintext files into a fresh folder.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    READ_FLOOR,
    READ_FLOOR_DESC,
    Result,
    clean_env,
    cvault_argv,
    emit,
    interleaved,
    iqr,
    time_command,
)

PEERS = ("pass", "gpg", "age", "age-keygen", "rclone")


def _doc(i: int) -> dict:
    """The fields bench.fixtures.ready_vault gives record rec/N: the same data in every tool."""
    return {"host": f"10.0.{i // 250}.{i % 250}", "password": f"pw-{i}"}


def _line(prefix: str, i: int) -> str:
    return json.dumps({"path": f"{prefix}/{i}", "kind": "access", "fields": _doc(i)})


def missing_peers() -> list[str]:
    return [p for p in PEERS if shutil.which(p) is None]


def _run(argv: list[str], env: dict, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(argv, env=env, input=stdin, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed: {proc.stderr.decode()[-400:]}")
    return proc.stdout


def init_pass_store(base: Path, env: dict) -> str:
    """A throwaway GnuPG home (passphrase-less key, batch mode) and an empty ``pass`` store in
    ``base``, named by ``env``'s GNUPGHOME and PASSWORD_STORE_DIR; returns the key's algorithm."""
    Path(env["GNUPGHOME"]).mkdir(mode=0o700)
    _run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "cvault bench <bench@example.invalid>",
            "default",
            "default",
            "never",
        ],
        env,
    )
    listing = _run(["gpg", "--list-keys", "--with-colons"], env).decode()
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
    algo = next(line.split(":")[3] for line in listing.splitlines() if line.startswith("pub"))
    _run(["pass", "init", fpr], env)
    return {"1": "RSA", "22": "EdDSA"}.get(algo, f"algo {algo}")


class Peers:
    """The three peers set up in ``base``, holding ``records`` read records under acme/rec/N."""

    def __init__(self, base: Path, records: int):
        self.base = base
        self.env = clean_env(
            GNUPGHOME=str(base / "gnupg"),
            PASSWORD_STORE_DIR=str(base / "store"),
            RCLONE_CONFIG=str(base / "rclone.conf"),
        )
        self.gpg_key = init_pass_store(base, self.env)
        self.identity = base / "age-identity.txt"
        _run(["age-keygen", "-o", str(self.identity)], self.env)
        self.recipient = _run(["age-keygen", "-y", str(self.identity)], self.env).decode().strip()
        (base / "rclone.conf").write_text("")
        self.env.update(
            {
                "RCLONE_CONFIG_BENCHCRYPT_TYPE": "crypt",
                "RCLONE_CONFIG_BENCHCRYPT_REMOTE": str(base / "crypt"),
                "RCLONE_CONFIG_BENCHCRYPT_PASSWORD": self.obscure(os.urandom(16).hex()),
                "RCLONE_CONFIG_BENCHCRYPT_PASSWORD2": self.obscure(os.urandom(16).hex()),
            }
        )
        src = self.plain_folder("read", records)
        for i in range(records):
            data = (src / f"rec{i}").read_bytes()
            _run(["pass", "insert", "-m", f"acme/rec/{i}"], self.env, data)
            _run(["age", "-r", self.recipient, "-o", str(base / f"rec{i}.age")], self.env, data)
        _run(["rclone", "copy", str(src), "benchcrypt:read"], self.env)

    def obscure(self, password: str) -> str:
        return _run(["rclone", "obscure", "-"], self.env, password.encode()).decode().strip()

    def plain_folder(self, name: str, count: int) -> Path:
        """The same records as one plaintext JSON file each (the peers' input)."""
        folder = self.base / f"plain-{name}"
        folder.mkdir()
        for i in range(count):
            (folder / f"rec{i}").write_text(json.dumps(_doc(i)) + "\n")
        return folder

    def stop(self) -> None:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=self.env, capture_output=True)


def _read_results(ctx, peers: Peers, runs: int) -> list[Result]:
    env = clean_env(**ctx.env)
    get = cvault_argv() + ["secret", "get", "acme", "rec/0", "--field", "password"]
    commands = {
        "cvault secret get": lambda: time_command(get, env),
        "pass show": lambda: time_command(["pass", "show", "acme/rec/0"], peers.env),
        "age -d": lambda: time_command(
            ["age", "-d", "-i", str(peers.identity), str(peers.base / "rec0.age")], peers.env
        ),
        "rclone cat (crypt)": lambda: time_command(["rclone", "cat", "benchcrypt:read/rec0"], peers.env),
    }
    samples = interleaved(runs, lambda: time_command(READ_FLOOR, clean_env()), *commands.values())
    floor = statistics.median(samples[0])
    cv = statistics.median(samples[1])
    out = []
    what = {
        "cvault secret get": "key-file unseal, session + step-up check, need-to-know, SLA check, "
        "audit event with fsync, record decrypt",
        "pass show": f"bash script + gpg decrypt ({peers.gpg_key} key, agent warm, no passphrase); "
        "no access control, no audit",
        "age -d": "X25519 identity file, one file; no access control, no audit, no index",
        "rclone cat (crypt)": "Go binary start, config from env, crypt name + content decrypt; "
        "no access control, no audit",
    }
    for (name, _), s in zip(commands.items(), samples[1:], strict=True):
        m = statistics.median(s)
        out.append(
            emit(
                Result(
                    f"peers: read one secret: {name}",
                    "s",
                    m,
                    iqr(s),
                    floor,
                    READ_FLOOR_DESC,
                    m / floor,
                    "(comparison)",
                    None,
                    note=f"cvault / this = {cv / m:.2f}; {what[name]}",
                )
            )
        )
    return out


def _write_results(ctx, peers: Peers, runs: int, records: int, loop_records: int) -> list[Result]:
    env = clean_env(**ctx.env)
    src = peers.plain_folder("write", records)
    loop_src = src  # the first loop_records files of the same records
    jsonl = peers.base / "import.jsonl"
    jsonl.write_text("\n".join(_line("rec", i) for i in range(records)) + "\n")
    counter = {"cvault": 0, "rclone": 0, "pass": 0, "age": 0, "cp": 0}

    def cvault_import() -> float:
        counter["cvault"] += 1  # a fresh, empty client per round (made by the fixture)
        return time_command(
            cvault_argv() + ["secret", "import", f"client-{counter['cvault']}", str(jsonl)], env
        )

    def rclone_copy() -> float:
        counter["rclone"] += 1
        return time_command(["rclone", "copy", str(src), f"benchcrypt:w{counter['rclone']}"], peers.env)

    def pass_loop() -> float:
        counter["pass"] += 1
        data = [(loop_src / f"rec{i}").read_bytes() for i in range(loop_records)]
        start = time.perf_counter()
        for i, d in enumerate(data):
            _run(["pass", "insert", "-m", f"w{counter['pass']}/rec/{i}"], peers.env, d)
        return time.perf_counter() - start

    def age_loop() -> float:
        counter["age"] += 1
        out = peers.base / f"age-w{counter['age']}"
        out.mkdir()
        start = time.perf_counter()
        for i in range(loop_records):
            _run(
                ["age", "-r", peers.recipient, "-o", str(out / f"rec{i}.age"), str(loop_src / f"rec{i}")],
                peers.env,
            )
        return time.perf_counter() - start

    def cp_floor() -> float:
        counter["cp"] += 1
        return time_command(["cp", "-r", str(src), str(peers.base / f"cp{counter['cp']}")], peers.env)

    samples = interleaved(runs, cp_floor, cvault_import, rclone_copy, pass_loop, age_loop)
    floor_rate = records / statistics.median(samples[0])
    cv_rate = records / statistics.median(samples[1])
    rows = [
        (
            "cvault secret import",
            records,
            samples[1],
            "one CLI process: validate, per-record key, encrypt, one blob file each, one SQLite "
            "transaction, one sync, audit event",
        ),
        (
            "rclone copy (crypt)",
            records,
            samples[2],
            "one process, 4 transfers in parallel, encrypted names + contents, no fsync, no index",
        ),
        (
            "pass insert loop",
            loop_records,
            samples[3],
            f"one pass + gpg process per record ({peers.gpg_key}), a git-less store; no index",
        ),
        ("age -e loop", loop_records, samples[4], "one age process per record, one file each"),
    ]
    out = []
    for name, n, s, what in rows:
        rates = [n / t for t in s]
        rate = n / statistics.median(s)
        out.append(
            emit(
                Result(
                    f"peers: write records: {name}",
                    "records/s",
                    rate,
                    iqr(rates),
                    floor_rate,
                    f"cp -r of the same {records} plaintext files",
                    floor_rate / rate,
                    "(comparison)",
                    None,
                    note=f"{n} records per round; cvault / this = {cv_rate / rate:.2f}; {what}",
                )
            )
        )
    return out


def run(quick: bool = False) -> list[Result]:
    from bench.fixtures import ready_vault

    missing = missing_peers()
    if missing:
        note = f"skipped: {', '.join(missing)} not installed (run bench/install-peers.sh as root)"
        print(note, file=sys.stderr)
        return [
            emit(
                Result(
                    "peers: all comparisons",
                    "s",
                    float("nan"),
                    float("nan"),
                    None,
                    "",
                    None,
                    "(comparison)",
                    None,
                    note=note,
                )
            )
        ]
    read_runs, write_runs = (5, 1) if quick else (20, 3)
    records, loop_records = (200, 20) if quick else (1000, 100)
    with tempfile.TemporaryDirectory(prefix="cvault-bench-peers-") as tmp:
        base = Path(tmp)
        (base / "cvault").mkdir()
        (base / "peers").mkdir()
        ctx = ready_vault(base / "cvault", records=10, clients=write_runs + 2)
        peers = Peers(base / "peers", records=10)
        try:
            results = _read_results(ctx, peers, read_runs)
            results += _write_results(ctx, peers, write_runs, records, loop_records)
        finally:
            peers.stop()
    return results


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
