"""``python -m bench``: run every benchmark, then write docs/performance.md (and the scaling plot).

    python -m bench                 # full run (under 10 minutes on 2 cores), writes docs/performance.md
    python -m bench --quick         # smoke run: fewer repetitions, smaller sizes (file marked QUICK)
    python -m bench --only peers    # one module; writes a file only with --out
    python -m bench --list          # the registry

Each module runs in its own process (``bench._child``) with a timeout, so one that fails or hangs
is recorded in the report and the others still run. A module in the registry that does not exist
yet (other issues add theirs) is reported as absent. A module exposes ``run(...) -> list[Result]``;
older scripts that only print JSON lines from ``main()`` are run as scripts and their lines
converted.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench._child import MARK
from bench.common import ROOT, Result

BENCH = ROOT / "bench"


@dataclass
class Bench:
    name: str  # module bench/<name>.py
    issue: int
    what: str
    quick: dict = field(default_factory=dict)  # run() keyword arguments for --quick
    argv_quick: list = field(default_factory=list)  # script arguments for --quick (no run())
    timeout: int = 240


REGISTRY = [
    Bench("secret_get", 2, "cvault secret get latency (embedded)", {"runs": 10}),
    Bench(
        "doctor",
        12,
        "doctor on 100,000 records and 1,000,000 audit entries; the row-MAC check vs a bare SELECT",
        {"records": 5_000, "events": 50_000, "runs": 1},
        timeout=900,
    ),
    Bench("importcost", 2, "where secret get spends its time beyond the floor", {"quick": True}),
    Bench(
        "instructions",
        20,
        "secret get (no agent) in instructions executed vs the import floor (valgrind)",
        {"runs": 1},
        timeout=600,
    ),
    Bench(
        "agent",
        20,
        "secret get through the resident agent vs pass show and the bare interpreter",
        {"runs": 10},
    ),
    Bench(
        "audit_report",
        20,
        "audit report over 1,000,000 events: seconds and peak memory",
        {"entries": 100_000, "runs": 1},
        timeout=600,
    ),
    Bench(
        "secret_list",
        20,
        "secret list of 100,000 records through the CLI",
        {"records": 20_000, "runs": 2},
        timeout=600,
    ),
    Bench("import_path", 15, "secret get's import path, local and service mode", {"quick": True}),
    Bench(
        "secret_import",
        20,
        "cvault secret import of 100,000 records through the CLI: records/s and peak RSS",
        {"runs": 1, "records": 20_000},
    ),
    Bench("import_parse", 18, "parse of 10,000-entry KeePass and Bitwarden exports", {"runs": 1}),
    Bench(
        "import_cli",
        18,
        "cvault import of 10,000-entry KeePass and Bitwarden exports vs secret import",
        {"runs": 1},
        timeout=900,
    ),
    Bench(
        "audit_verify",
        4,
        "audit verify of a 1,000,000-entry log",
        {"runs": 1, "entries": 200_000},
        ["--runs", "1", "--entries", "200000"],
        timeout=200,
    ),
    Bench(
        "shred",
        5,
        "shred of a 10,000-record client; sweep of 10,000 clients",
        {"repeat": 1},
        ["--repeat", "1"],
        timeout=200,
    ),
    Bench("onedrive_push", 6, "sync push of 1,000 blobs, 50 ms latency", {"runs": 1}),
    Bench("service", 7, "service throughput, p99, remote secret get", {"quick": True}),
    Bench(
        "rotation_cost",
        13,
        "the key-rotation concurrency fix before and after: secret get vs floor, service reads",
        {"runs": 8, "rounds": 1, "seconds": 3.0},
        timeout=420,
    ),
    Bench(
        "console",
        19,
        "web console: audit page of 1,000,000 events, clients pages of 10,000, reveal (wall, CPU, floor)",
        {"events": 200_000, "clients": 10_000, "runs": 7},
        timeout=600,
    ),
    Bench("peers", 8, "pass, age, rclone crypt side by side", {"quick": True}),
    Bench("scaling", 8, "secret get and sweep at 10 / 1,000 / 100,000", {"quick": True}, timeout=300),
    Bench(
        "records",
        16,
        "secret search over 100 clients x 1,000 records; completion; 25 MiB attachments",
        {"runs": 3, "clients": 20, "records": 1000},
        timeout=600,
    ),
    Bench(
        "custody",
        14,
        "shred of 1 of 10,000 clients under custody; backup of 100,000 records",
        {"quick": True},
    ),
]

#: floors of scripts that print a number but not its description
SCRIPT_FLOORS = {
    "sla.shred_10k_records": "bare DELETE of the same 10,000 record + version rows and unlink of "
    "10,000 same-size files",
    "sla.sweep_10k_clients_nothing_due": "the same sweep of an empty vault",
}


@dataclass
class Outcome:
    bench: Bench
    status: str  # ok | failed | absent | timeout
    seconds: float = 0.0
    results: list[Result] = field(default_factory=list)
    detail: str = ""


# --- running -------------------------------------------------------------------------------------


def has_run(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body)


def result_from_json(d: dict) -> Result:
    """A Result from a script's JSON line, whatever subset of the Result fields it prints."""
    unit = d.get("unit") or "s"
    median = float(d["median"])
    target, met = d.get("target"), d.get("met", d.get("meets_target"))
    if isinstance(target, (int, float)) and not isinstance(target, bool):
        higher = unit.endswith("/s")
        if met is None:
            met = median >= target if higher else median <= target
        target = f">= {target:,} {unit}" if higher else f"<= {target:g} {unit}"
    known = {
        "name",
        "unit",
        "median",
        "spread",
        "floor",
        "floor_desc",
        "floor_is",
        "ratio",
        "target",
        "met",
        "meets_target",
        "note",
    }
    extra = "; ".join(f"{k} {v}" for k, v in d.items() if k not in known)
    note = "; ".join(x for x in (d.get("note") or "", extra) if x)
    spread = d.get("spread")
    return Result(
        d["name"],
        unit,
        median,
        math.nan if spread is None else float(spread),
        d.get("floor"),
        d.get("floor_desc") or d.get("floor_is") or SCRIPT_FLOORS.get(d["name"], ""),
        d.get("ratio"),
        str(target if target is not None else ""),
        met,
        note,
    )


def run_bench(b: Bench, quick: bool, plot: Path | None) -> Outcome:
    path = BENCH / f"{b.name}.py"
    if not path.exists():
        return Outcome(b, "absent", detail=f"bench/{b.name}.py does not exist in this tree")
    try:
        modern = has_run(path)
    except SyntaxError as exc:
        return Outcome(b, "failed", detail=f"bench/{b.name}.py does not parse: {exc}")
    if modern:
        kwargs = dict(b.quick) if quick else {}
        if b.name == "scaling" and plot is not None:
            kwargs["plot"] = str(plot)
        argv = [sys.executable, "-m", "bench._child", b.name, json.dumps(kwargs)]
    else:
        argv = [sys.executable, str(path), *(b.argv_quick if quick else [])]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
    )
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    marked, printed, tail = [], [], []

    def read() -> None:
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(MARK):
                marked.append(json.loads(line[len(MARK) :]))
                continue
            print(f"  [{b.name}] {line}", file=sys.stderr, flush=True)
            tail.append(line)
            del tail[:-15]
            if line.startswith("{"):
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                if isinstance(d, dict) and "name" in d and "median" in d:
                    printed.append(d)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=b.timeout)
        status = "ok" if rc == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: it and what it started
        proc.wait()
        rc, status = None, "timeout"
    reader.join(5)
    seconds = time.perf_counter() - start
    lines = marked or printed  # a module that failed midway may still have emitted lines
    results = []
    for d in lines:
        try:
            results.append(Result(**d) if set(d) >= {"floor_desc", "spread"} else result_from_json(d))
        except (KeyError, TypeError, ValueError) as exc:
            tail.append(f"unreadable result line {d}: {exc}")
    detail = ""
    if status == "timeout":
        detail = f"killed after {b.timeout} s"
    elif status == "failed":
        detail = f"exit {rc}: " + " | ".join(t for t in tail[-4:] if t.strip())
    if status == "ok" and not results:
        status, detail = "failed", "finished without printing any result"
    return Outcome(b, status, seconds, results, detail)


# --- machine and commit --------------------------------------------------------------------------


def _cmd(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def commit_id() -> str:
    head = _cmd(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    # --no-optional-locks: do not take index.lock while others commit in the same tree
    dirty = _cmd(["git", "--no-optional-locks", "status", "--porcelain"])
    return head + ("+dirty" if dirty else "")


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    os_name = platform.system()
    with contextlib.suppress(OSError, AttributeError):
        os_name = re.search(r'PRETTY_NAME="([^"]+)"', Path("/etc/os-release").read_text()).group(1)
    versions = {}
    for tool, argv in (
        ("gpg", ["gpg", "--version"]),
        ("pass", ["pass", "version"]),
        ("age", ["age", "--version"]),
        ("rclone", ["rclone", "version"]),
    ):
        if shutil.which(tool):
            text = _cmd(argv)
            found = re.search(r"v?(\d+\.\d+(?:\.\d+)?)", text)
            versions[tool] = found.group(1) if found else "installed"
        else:
            versions[tool] = "not installed"
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "os": f"{os_name}, Linux {platform.release()}" if platform.system() == "Linux" else os_name,
        "peers": versions,
    }


# --- formatting ----------------------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if unit.endswith("/s"):
        return f"{value:,.0f} {unit}"
    if unit == "instructions":
        return f"{value / 1e6:,.1f} M instructions"
    return f"{value:g} {unit}"


def cost_ratio(r: Result) -> float | None:
    """Uniform ratio: how many times the floor's cost (>1: slower than the floor)."""
    if (
        r.floor in (None, 0)
        or (isinstance(r.floor, float) and math.isnan(r.floor))
        or math.isnan(r.median)
        or r.median == 0
    ):
        return None
    return r.floor / r.median if r.unit.endswith("/s") else r.median / r.floor


def met_text(r: Result) -> str:
    return {True: "met", False: "**NOT MET**", None: "-"}[r.met]


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_table(outcomes: list[Outcome], kinds=("target",)) -> list[str]:
    rows = [
        "| Issue | Benchmark | Median | Spread (IQR) | Floor (same run) | Ratio | Target | Met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        for r in o.results:
            if kind_of(r) not in kinds:
                continue
            ratio = cost_ratio(r)
            rows.append(
                f"| {o.bench.issue} | {cell(r.name)} | {fmt(r.median, r.unit)} | "
                f"{fmt(r.spread, r.unit)} | {fmt(r.floor, r.unit)} | "
                f"{'n/a' if ratio is None else f'{ratio:.2f} x'} | {cell(r.target)} | "
                f"{met_text(r)} |"
            )
    return rows


def kind_of(r: Result) -> str:
    if r.name.startswith("peers:"):
        return "peer"
    if r.name.startswith("scaling:"):
        return "curve"
    if r.name.startswith("diagnostic:"):
        return "diagnostic"
    return "target"


# --- the report ----------------------------------------------------------------------------------

FAIRNESS = """\
How the comparison is made fair:

* **Same data.** Every tool holds the same records: the JSON document `{"host", "password"}` of
  record `rec/N` that the cvault fixture imports (about 40 bytes each). For reads, every tool reads
  record 0 of a 10-record store; for writes, every tool writes the same N records (cvault from one
  JSON Lines file, the others from one plaintext file per record, which is how they take input).
* **Same machine, same moment.** All commands of one comparison run interleaved, round by round,
  after one warm-up round that is discarded, so the noise of this shared 2-core machine hits them
  alike, and the page cache, gpg-agent (started and holding the unprotected key) and the Python
  bytecode caches are warm for all of them.
* **Whole processes.** Each sample is the wall time of a complete command as a user would type it,
  including process start (Python for cvault, bash + gpg for pass, Go binaries for age and rclone).
* **What each tool does and does not do** (so the numbers are not read as like for like):
  * `cvault secret get`: opens the vault, unseals the root key from the key file, checks the
    session and its step-up, the role, the assignment and training (need-to-know), the SLA state,
    **writes an audit event (hash-chained, fsync) before printing**, unwraps the client key and the
    record key and decrypts the record.
  * `pass show`: a bash script that runs `gpg -d` on one file; gpg-agent holds the key (no
    passphrase here). No access control beyond file permissions, no audit, no per-client keys.
  * `age -d`: decrypts one file with an identity file. No access control, no audit, no index, no
    metadata: it is the floor of "decrypt one small file in a fresh process".
  * `rclone cat`: decrypts the name and contents of one file of a local crypt remote. No access
    control, no audit.
  * `cvault secret import`: validates every record, makes one key per record, writes one
    authenticated blob file per record, keeps encrypted names and tags in SQLite, all in one
    transaction with one sync before the commit, plus one audit event.
  * `rclone copy` into crypt: encrypts names and contents, 4 parallel transfers by default,
    **no fsync**, no transaction (a crash leaves a partial copy), no index.
  * `pass insert` loop and `age -e` loop: one process per record (the only way these tools take
    records), so they are measured on fewer records and reported as records/s.
* **Floors.** Reads: the Python import floor of issue 2 (`python -c "import click,
  cryptography...aead, sqlite3"`), the least any Python CLI of this kind can cost. Writes: `cp -r`
  of the same N plaintext files into a fresh folder (copying small files with no crypto at all).
"""


def diagnostics_section(outcomes: list[Outcome]) -> list[str]:
    rows = [r for o in outcomes for r in o.results if kind_of(r) == "diagnostic"]
    if not rows:
        return []
    out = [
        "## Where `secret get` spends its time",
        "",
        "`bench/importcost.py`, same run: `python -X importtime` of the floor and of "
        "`cvault secret get` (modules the floor does not load), and the phases after the imports "
        "timed in one process. Diagnostics, no target; the gap analysis below uses them.",
        "",
        "| Part | Median | Spread (IQR) | Note |",
        "|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {cell(r.name.removeprefix('diagnostic: '))} | {fmt(r.median, r.unit)} | "
            f"{fmt(r.spread, r.unit)} | {cell(r.note)} |"
        )
    return out + [""]


def peers_section(outcomes: list[Outcome], info: dict) -> list[str]:
    rows = [r for o in outcomes for r in o.results if kind_of(r) == "peer"]
    out = [
        "## Peers, side by side",
        "",
        "The peers are installed from the system package manager by `bench/install-peers.sh` "
        "(apt-get; run it once as root). **It is needed for this section**: a peer that is not "
        "installed is skipped and the table says so. Versions in this run: "
        + ", ".join(f"{k} {v}" for k, v in info["peers"].items())
        + ".",
        "",
    ]
    if not rows:
        out += ["No peer results in this run (see the module status table).", ""]
        return out
    out += [
        "| Comparison | Median | Spread (IQR) | Floor (same run) | x floor | cvault vs this |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = cost_ratio(r)
        versus = re.search(r"cvault / this = ([0-9.]+)", r.note)
        rel = "-"
        if versus:
            x = float(versus.group(1))
            if r.unit.endswith("/s"):
                rel = "(cvault)" if abs(x - 1) < 1e-9 else f"cvault writes {x:.2f} x as fast"
            else:
                rel = "(cvault)" if abs(x - 1) < 1e-9 else f"cvault takes {x:.2f} x as long"
        n = re.search(r"(\d+) records per round", r.note)
        name = r.name.removeprefix("peers: ") + (f" ({n.group(1)} records)" if n else "")
        out.append(
            f"| {cell(name)} | {fmt(r.median, r.unit)} | {fmt(r.spread, r.unit)} | "
            f"{fmt(r.floor, r.unit)} | {'n/a' if ratio is None else f'{ratio:.2f}'} | {rel} |"
        )
        if "skipped" in r.note:
            out.append(f"| {cell(r.note)} | | | | | |")
    out += ["", FAIRNESS]
    return out


def scaling_section(outcomes: list[Outcome], plot: Path | None) -> list[str]:
    rows = [r for o in outcomes for r in o.results if kind_of(r) == "curve"]
    out = [
        "## Scaling",
        "",
        "`secret get` latency and sweep time with 10, 1,000 and 100,000 records in the client "
        "and clients in the vault. All sizes and the floor are measured interleaved in the same "
        "rounds (`bench/scaling.py`). Records are written through the library import path; bulk "
        "clients are inserted with SQL, each with a real wrapped client key.",
        "",
    ]
    if not rows:
        return out + ["No scaling results in this run (see the module status table).", ""]
    if plot is not None and plot.exists():
        out += [f"![scaling curves]({plot.name})", ""]
    out += [
        "| Curve point | Median | Spread (IQR) | Floor (same run) | x floor | Note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = cost_ratio(r)
        out.append(
            f"| {cell(r.name.removeprefix('scaling: '))} | {fmt(r.median, r.unit)} | "
            f"{fmt(r.spread, r.unit)} | {fmt(r.floor, r.unit)} "
            f"({cell(r.floor_desc)}) | {'n/a' if ratio is None else f'{ratio:.2f}'} | "
            f"{cell(r.note)} |"
        )
    return out + [""]


#: What would close each gap, by benchmark name prefix (shown only when the target is not met).
GAPS = {
    "secret get": (
        "Where the excess goes is in the section *Where `secret get` spends its time* (same run). "
        "Already done (2026-11-25): facade services created on first use, read-path value types as "
        "NamedTuples instead of dataclasses, SHA-256/HMAC through cryptography instead of stdlib "
        "`hashlib`/`hmac`, and no interpreter teardown (`cli.main.main` flushes and `os._exit`s: "
        "about 10 ms). What is left beyond the floor: about 6 ms of cvault module bodies (the "
        "50-member `Action` enum, `vault.context`, `vault.audit.log`), 2-3 ms of other modules "
        "(`json`, `base64`, cryptography's `hashes`/HKDF, `locale` through click's gettext) and "
        "about 7 ms of work (open, key-file unseal, session resume, the audited read with one "
        "fsync'd commit). What would close it further: merge the session touch into the audit "
        "transaction, a plain-constant `Action` table, and a smaller identity module on the read "
        "path. Service mode avoids all of this per read."
    ),
    "secret import": (
        "Already done (2026-11-25): blob files written by two background threads while the main "
        "thread encrypts, ids allocated up front and three `executemany` per batch, AAD prefixes "
        "computed once per client, and `syncfs(2)` on the vault's filesystem instead of "
        "`os.sync()`. What is left is creating 10,000 files: on this ext4 volume (mounted with "
        "`discard`, shared with other jobs) one create costs 10-150 us depending on the rest of "
        "the machine, which is what moves the rate between runs."
    ),
    "audit_verify": (
        "cProfile of the verifier on 200,000 entries (issue 8, 2026-11-25): 71% of the time is the "
        "Python body of `vault.audit.verify.verify_chain` itself (about 3.6 us per entry), 13% "
        "`json` string escaping (7.5 calls per entry), 10% SHA-256. The target is close enough "
        "that machine load decides it. What would close it with margin: build the canonical bytes "
        "with one preformatted template per row and escape only fields that need it (most are "
        "plain ASCII), or verify in chunks on 2 processes (the chain hash is sequential, the "
        "canonical bytes are not)."
    ),
    "sla.shred": (
        "Already done (2026-11-25): string paths, no `stat` before each unlink, unlinks grouped by "
        "shard folder on 4 threads, one fsync per shard folder. What is left is the unlinks "
        "themselves (the floor) and the VACUUM that scrubs free pages."
    ),
    "sla.sweep": (
        "The due query must stay the single indexed range probe (index "
        "clients_shred_due); the scaling curve shows whether it does."
    ),
    "sync push": ("The push must keep 8 requests in flight all the time and make one request per blob."),
    "service secret get p99": (
        "Cause found (2026-11-25): SQLite's busy handler sleeps 1, 2, 5, 10, 15, 20 ms between "
        "retries of a taken write lock, so reads colliding on their audit commits waited up to "
        "~53 ms. The service now takes an in-process lock before `BEGIN IMMEDIATE` "
        "(`vault.server.app.VaultPool`), so a waiting request starts as soon as the previous one "
        "commits. If the target is missed again, look at CPU contention (load average above)."
    ),
    "service": (
        "The bench runs `cvault serve --workers 2` (one process per core, docs/service.md "
        "'Worker processes'); the '(1 worker)' rows are the one-process service beside it. The "
        "notes of each 'service reads at N connection(s)' line give the CPU ms per read of the "
        "whole process tree: 2,000 reads/s on 2 cores needs at most ~1.0 ms with the load "
        "generator; two workers measured 1.48-1.53 ms (2026-12-02), the user CPU of one request "
        "(TLS, HTTP, the ASGI stack, the read's SQL and row MACs, its audit append). "
        "docs/performance.md, 'Issue 20, the service target: worker processes', has the profile."
    ),
    "remote cvault secret get": (
        "Already done (2026-11-25): the remote client imports no dataclasses, no server module "
        "beyond the operation table, no idna codec, and skips interpreter teardown. What is left: "
        "`ssl`/`socket` (about 8 ms, unavoidable for HTTPS) and one TLS 1.3 handshake per process "
        "(about 4.5 ms); resuming TLS sessions across invocations would remove most of the latter."
    ),
}


def gap_size(r: Result) -> str:
    """How far from the target, when the target has a number in it."""
    text = r.target.replace(",", "")
    bound = re.search(r"([0-9.]+)\s*x floor", text)
    plus = re.search(r"floor \+ ([0-9.]+) s", text)
    absolute = re.search(r"(>=|<=)\s*([0-9.]+)", text)
    try:
        if bound and r.floor:
            limit = float(bound.group(1)) * r.floor
        elif plus and r.floor:
            limit = r.floor + float(plus.group(1))
        elif absolute:
            limit = float(absolute.group(2))
        else:
            return ""
    except ValueError:
        return ""
    if r.unit.endswith("/s"):
        return f" ({(1 - r.median / limit) * 100:.0f}% short of {fmt(limit, r.unit)})"
    return f" ({fmt(r.median - limit, r.unit)} over the limit of {fmt(limit, r.unit)})"


def gaps_section(outcomes: list[Outcome]) -> list[str]:
    out = [
        "## Targets and gaps",
        "",
        "Every target of issues 2 and 4-7, with the number measured in this run. A target not met "
        "is stated with the gap and what would close it; a benchmark that did not run is stated "
        "as such.",
        "",
    ]
    for o in outcomes:
        if o.bench.name in ("peers", "scaling", "importcost"):
            continue
        if o.status != "ok" and not o.results:
            out.append(
                f"* **Issue {o.bench.issue}, {o.bench.what}: not measured in this run** "
                f"({o.status}: {o.detail}). The target is neither shown met nor failed; "
                "run `python -m bench --only " + o.bench.name + "` once it works."
            )
            continue
        for r in o.results:
            if kind_of(r) != "target":
                continue
            measured = fmt(r.median, r.unit)
            floor = "" if r.floor is None else f" (floor {fmt(r.floor, r.unit)})"
            if r.met:
                out.append(
                    f"* Issue {o.bench.issue}, {r.name}: **met**, {measured}{floor}, target {r.target}."
                )
            elif r.met is None:
                out.append(
                    f"* Issue {o.bench.issue}, {r.name}: {measured}{floor}, target "
                    f"{r.target}: no verdict (the module gave none)."
                )
            else:
                fix = next((v for k, v in GAPS.items() if r.name.startswith(k)), "")
                out.append(
                    f"* Issue {o.bench.issue}, {r.name}: **not met**: measured {measured}"
                    f"{floor} against {r.target}{gap_size(r)}. {fix}"
                )
        if o.status != "ok":
            out.append(
                f"  (issue {o.bench.issue}, {o.bench.name}: the module ended with "
                f"{o.status}: {cell(o.detail)}; results above are partial)"
            )
    return out + [""]


HAND_WRITTEN = (
    "<!-- Hand-written sections follow. `python -m bench` regenerates everything above this line "
    "and keeps everything from it to the end. -->"
)


def hand_written_tail(path: Path) -> list[str]:
    """The report's hand-written sections (from the :data:`HAND_WRITTEN` marker on), kept across runs."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    at = text.find(HAND_WRITTEN)
    return [] if at < 0 else ["", *text[at:].rstrip().split("\n")]


def write_report(
    path: Path,
    outcomes: list[Outcome],
    info: dict,
    args,
    started: datetime,
    seconds: float,
    load: tuple,
    plot: Path | None,
    commit: str,
) -> None:
    mode = (
        "QUICK smoke run (fewer repetitions, smaller sizes): not the reference numbers"
        if args.quick
        else "full run"
    )
    if args.only:
        mode += f", only `{args.only}`"
    lines = [
        "# cvault performance",
        "",
        "Generated by `python -m bench` (bench/__main__.py) down to the hand-written sections' "
        "marker; do not edit above it. "
        "Targets are those of the issues; every floor is measured in the same run, interleaved "
        "with what it bounds.",
        "",
        f"* Commit: `{commit}`" + (" (the tree had uncommitted changes)" if "dirty" in commit else ""),
        f"* Date: {started.strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"* Mode: {mode}",
        f"* Machine: {info['cores']} cores, {info['cpu']}, {info['memory']} RAM; {info['os']}",
        f"* Python: {info['python']} ({sys.executable})",
        f"* Load average (1 min) at start / end: {load[0]:.2f} / {load[1]:.2f} (a shared machine: "
        "compare ratios, not absolute times)",
        f"* Whole run: {seconds:.0f} s ({seconds / 60:.1f} min)",
        "",
        "## How to run",
        "",
        "```sh",
        "sudo bench/install-peers.sh          # once: pass, gnupg, age, rclone (apt-get)",
        "pip install -e '.[bench]'            # matplotlib for the scaling plot",
        "python -m bench                      # full run, under 10 minutes on 2 cores",
        "python -m bench --quick              # smoke run",
        "python -m bench --only secret_get    # one benchmark (add --out FILE to write a report)",
        "```",
        "",
        "Not part of the test suite. Spread is the interquartile range of the samples (n/a where a "
        "module reports only a median). **Ratio** is the cost relative to the floor: median / floor "
        "for times, floor / median for rates, so above 1 always means slower than the floor.",
        "",
        "## Results against the issues' targets",
        "",
        *summary_table(outcomes),
        "",
        "## Module status",
        "",
        "| Module | Issue | Status | Time | Detail |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.bench.name} | {o.bench.issue} | {o.status} | {o.seconds:.0f} s | {cell(o.detail) or '-'} |"
        )
    lines.append("")
    notes = [
        (o.bench.name, r)
        for o in outcomes
        for r in o.results
        if kind_of(r) == "target" and (r.note or r.floor_desc)
    ]
    if notes:
        lines += [
            "Floors and notes (a module's own note may use its own ratio convention; the "
            "Ratio column above is recomputed uniformly):",
            "",
        ]
        lines += [
            f"* {cell(r.name)}: floor = {cell(r.floor_desc) or 'n/a'}"
            + (f"; {cell(r.note)}" if r.note else "")
            for _, r in notes
        ]
        lines.append("")
    lines += diagnostics_section(outcomes)
    lines += peers_section(outcomes, info)
    lines += scaling_section(outcomes, plot)
    lines += gaps_section(outcomes)
    lines += hand_written_tail(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")


# --- entry point ---------------------------------------------------------------------------------


def main() -> int:
    names = [b.name for b in REGISTRY]
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer repetitions")
    ap.add_argument("--only", metavar="NAME", help=f"run one module: {', '.join(names)}")
    ap.add_argument(
        "--out",
        type=Path,
        help="report path (default docs/performance.md; with --only, no file unless given)",
    )
    ap.add_argument("--list", action="store_true", help="list the registry and exit")
    args = ap.parse_args()
    if args.list:
        for b in REGISTRY:
            state = "present" if (BENCH / f"{b.name}.py").exists() else "absent"
            print(f"{b.name:15} issue {b.issue}  {state:8} {b.what}")
        return 0
    chosen = REGISTRY
    if args.only:
        chosen = [b for b in REGISTRY if b.name == args.only]
        if not chosen:
            ap.error(f"unknown benchmark {args.only!r}; choose from {', '.join(names)}")
    out = args.out or (None if args.only else ROOT / "docs" / "performance.md")
    plot = out.parent / "performance-scaling.png" if out else None

    started, t0, load0 = datetime.now(UTC), time.perf_counter(), os.getloadavg()[0]
    commit = commit_id()  # the code being measured, read before the run
    outcomes = []
    for b in chosen:
        print(f"== {b.name} (issue {b.issue}): {b.what}", file=sys.stderr, flush=True)
        o = run_bench(b, args.quick, plot)
        outcomes.append(o)
        print(
            f"== {b.name}: {o.status} in {o.seconds:.0f} s" + (f" ({o.detail})" if o.detail else ""),
            file=sys.stderr,
            flush=True,
        )
    seconds, load1 = time.perf_counter() - t0, os.getloadavg()[0]

    table = summary_table(outcomes, kinds=("target", "peer", "curve"))
    print("\n".join(table))
    print(f"\nwhole run: {seconds:.0f} s", file=sys.stderr)
    if out:
        write_report(out, outcomes, machine(), args, started, seconds, (load0, load1), plot, commit)
        print(f"wrote {out}", file=sys.stderr)
    return 0 if all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
