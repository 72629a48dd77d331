"""``secret import`` of a large named file through forked encrypt workers (issue 20 item 5,
vault/records/parallel.py; docs/security.md guarantee 50): the same rows as the streamed path,
the first bad line wins and nothing is written, a dead worker fails the import, ``kill -9`` of the
CLI leaves no worker and no row, and the pipe carries no plaintext."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, add_client, file_sql, files_under, make_vault, operator
from vault.records.importfile import ImportFile
from vault.records.parallel import plan
from vault.records.service import IMPORT_BATCH

N = 3 * IMPORT_BATCH + 37  # the parent's first batch, two full worker blocks and a short one


def _line(i: int) -> str:
    fields = {"host": f"10.0.{i // 250}.{i % 250}", "port": 22, "password": f"pw-{i}-par"}
    return json.dumps({"path": f"site/{i // 100}/dev-{i}", "kind": "access", "fields": fields})


def _path(i: int) -> str:
    return json.loads(_line(i))["path"]


def _vault(base):
    vd = make_vault(base)
    v = vd.open()
    add_client(v, "acme")
    v.close()
    return vd


def _source(tmp_path, lines: list[str], name="in.jsonl"):
    src = tmp_path / name
    src.write_text("".join(line + "\n" for line in lines))
    return src


def _import(vd, src, workers=2, **extra):
    return vd.cli(
        "secret", "import", "acme", str(src), env=vd.env(CVAULT_IMPORT_WORKERS=str(workers), **extra)
    )


def _nothing_imported(vd, files_before: int) -> None:
    assert file_sql(vd, "SELECT count(*) FROM records") == [(0,)]
    assert file_sql(vd, "SELECT count(*) FROM record_versions") == [(0,)]
    assert len(files_under(vd.home)) <= files_before + 2  # the audit's own files at most: no pack


def _shape(vd) -> list[tuple]:
    """What the rows say apart from keys and random bytes: ids, sizes, places in the packs, and
    which records share a pack."""
    names: dict[str, int] = {}
    rows = file_sql(
        vd,
        "SELECT r.id, r.current_version, v.version, v.size, v.pack_offset, v.blob_name"
        " FROM records r JOIN record_versions v ON v.record_id = r.id ORDER BY r.id",
    )
    return [(*row[:5], names.setdefault(row[5], len(names))) for row in rows]


def test_workers_import_the_same_rows_as_the_streamed_path(tmp_path):
    lines = [_line(i) for i in range(N)]
    lines.insert(2500, "")  # a blank line in a worker's block counts as a line and is skipped
    src = _source(tmp_path, lines)
    parallel, streamed = _vault(tmp_path / "a"), _vault(tmp_path / "b")
    got = _import(parallel, src, workers=2)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == f"imported {N} records into acme"
    assert _import(streamed, src, workers=0).returncode == 0
    assert _shape(parallel) == _shape(streamed)
    assert len(_shape(parallel)) == N
    v = parallel.open()
    try:
        for i in (0, IMPORT_BATCH - 1, IMPORT_BATCH, 2499, 2500, 4321, N - 1):
            record = v.secrets.get(operator(), "acme", f"site/{i // 100}/dev-{i}")
            assert record.fields["password"] == f"pw-{i}-par"
    finally:
        v.close()
    doctor = parallel.cli("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("not json", "line 4501: not a JSON object with path, kind and fields"),
        (
            json.dumps({"path": "x/y", "kind": "access", "fields": {"port": 0}}),
            "line 4501: invalid access record: port: Input should be greater than or equal to 1",
        ),
        (
            json.dumps({"path": "site/0/dev-3", "kind": "access", "fields": {}}),
            "line 4501: duplicate path site/0/dev-3",
        ),
    ],
)
def test_a_bad_line_in_a_workers_block_is_one_line_and_imports_nothing(tmp_path, bad, message):
    vd = _vault(tmp_path / "v")
    before = len(files_under(vd.home))
    lines = [_line(i) for i in range(N)]
    lines[4500] = bad
    got = _import(vd, _source(tmp_path, lines))
    assert got.returncode == 2, got.stderr
    assert got.stderr.strip().splitlines() == [f"cvault: {message}"]
    _nothing_imported(vd, before)


def test_bad_utf8_in_a_workers_block_is_the_streamed_paths_one_line(tmp_path):
    vd = _vault(tmp_path / "v")
    before = len(files_under(vd.home))
    src = tmp_path / "in.jsonl"
    src.write_bytes("".join(_line(i) + "\n" for i in range(N)).encode() + b'{"path": "\xff"}\n')
    got = _import(vd, src)
    assert got.returncode == 2, got.stderr
    assert got.stderr.strip().splitlines() == [
        f"cvault: import from file {src} is not UTF-8 text: store binary values base64-encoded"
        ' (docs/cli.md, "Exact bytes")'
    ]
    _nothing_imported(vd, before)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # a later block's bad line does not hide an earlier block's
        ({6010: "not json", 4100: "[]"}, "line 4101: not a JSON object with path, kind and fields"),
        # a path given twice across two workers' blocks, before a bad line further on
        (
            {4700: _line(2600), 6020: "not json"},
            f"line 4701: duplicate path {json.loads(_line(2600))['path']}",
        ),
        # the parent's first batch against a worker's block
        ({3000: _line(10)}, f"line 3001: duplicate path {_path(10)}"),
        # within one block, the second of the two lines is named
        ({2200: _line(2900)}, f"line 2901: duplicate path {_path(2900)}"),
    ],
)
def test_the_first_bad_line_in_the_file_is_the_one_named(tmp_path, changes, message):
    vd = _vault(tmp_path / "v")
    before = len(files_under(vd.home))
    lines = [_line(i) for i in range(N)]
    for at, text in changes.items():
        lines[at] = text
    src = _source(tmp_path, lines)
    got = _import(vd, src)
    assert got.returncode == 2, got.stderr
    assert got.stderr.strip().splitlines() == [f"cvault: {message}"]
    _nothing_imported(vd, before)
    streamed = _import(vd, src, workers=0)  # exactly the streamed path's message
    assert streamed.stderr.strip().splitlines() == [f"cvault: {message}"]


#: runs an import through the library in a process of its own (no test threads: workers fork)
_SCRIPT = r"""
import json, os, signal, sys
sys.path.insert(0, os.environ["ROOT"])
from pathlib import Path
from tests.helpers import VaultDir, operator
from vault.records import parallel
from vault.records.importfile import ImportFile

mode, home, key, src, out = sys.argv[1:6]
if mode == "kill":  # the worker given block 1 dies as a kill -9 would end it
    work = parallel._work
    def _work(bulk, source, block, first, index, prepare):
        if index == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return work(bulk, source, block, first, index, prepare)
    parallel._work = _work
if mode == "tee":  # every byte a worker sends to the parent, copied to a file
    write_all = parallel._write_all
    def _write_all(fd, data):
        with open(f"{out}.{os.getpid()}", "ab") as fh:
            fh.write(bytes(data))
        write_all(fd, data)
    parallel._write_all = _write_all
v = VaultDir(Path(home), Path(key)).open()
try:
    with open(src, "rb") as fh:
        got = v.secrets.import_records(operator(), "acme", ImportFile(fh, lambda raw: raw.decode()))
    print(json.dumps(got))
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
finally:
    v.close()
"""


def _script(mode, vd, src, out=""):
    env = {**os.environ, "ROOT": str(ROOT), "CVAULT_IMPORT_WORKERS": "2"}
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode, str(vd.home), str(vd.key_file), str(src), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def test_a_worker_that_dies_fails_the_import_and_nothing_is_written(tmp_path):
    vd = _vault(tmp_path / "v")
    before = len(files_under(vd.home))
    src = _source(tmp_path, [_line(i) for i in range(N)])
    got = _script("kill", vd, src)
    assert got.stdout.strip() == (
        "WorkerFailed: secret import failed: an encrypt worker ended unexpectedly; nothing was imported"
    ), got.stderr[-2000:]
    _nothing_imported(vd, before)
    assert _script("plain", vd, src).stdout.strip() == json.dumps({"client": "acme", "imported": N})


#: ``cvault ARGS`` with the encrypt workers gone before the parent hands out a block: each ends
#: at once (status 0), and the parent waits (no sleep) until both have ended, so its write to a
#: task pipe is EPIPE (review9 R9-2)
_GONE_FIRST = r"""
import os, sys
from vault.records import parallel
parallel._serve = lambda *args, **kwargs: None
start = parallel.start
def waiting_start(*args, **kwargs):
    pool = start(*args, **kwargs)
    for worker in pool:
        os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOWAIT)
    return pool
parallel.start = waiting_start
sys.argv = ["cvault", *sys.argv[1:]]
from cli.main import main
main()
"""


def test_a_worker_gone_before_its_next_block_is_one_line_and_imports_nothing(tmp_path):
    """review9 R9-2: the parent's write to a dead worker's task pipe (a BrokenPipeError) was
    taken by the CLI for a closed stdout: exit 1 and no line at all. It is WorkerFailed."""
    vd = _vault(tmp_path / "v")
    before = len(files_under(vd.home))
    src = _source(tmp_path, [_line(i) for i in range(N)])
    got = subprocess.run(
        [sys.executable, "-c", _GONE_FIRST, "secret", "import", "acme", str(src)],
        env=vd.env(CVAULT_IMPORT_WORKERS="2"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (got.returncode, got.stdout, got.stderr.splitlines()) == (
        1,
        "",
        ["cvault: secret import failed: an encrypt worker ended unexpectedly; nothing was imported"],
    )
    _nothing_imported(vd, before)


def test_a_closed_stdout_is_still_exit_1_without_a_line(tmp_path):
    """The other side of R9-2's fix: a BrokenPipeError that did come from stdout (its reader is
    gone, as with ``| head``) is still exit 1 and nothing printed."""
    vd = _vault(tmp_path / "v")
    src = _source(tmp_path, [_line(i) for i in range(3)])
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before cvault writes its "imported" line
    try:
        got = subprocess.run(
            [sys.executable, "-m", "cli.main", "secret", "import", "acme", str(src)],
            env=vd.env(CVAULT_IMPORT_WORKERS="0"),
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert (got.returncode, got.stderr) == (1, "")
    assert file_sql(vd, "SELECT count(*) FROM records") == [(3,)]  # committed before the line


def test_the_workers_pipes_carry_no_plaintext(tmp_path):
    """What crosses the pipes is ciphertext, tags, MACs and numbers: no password, no path, no
    host, no key of the vault (its key file's secret, the client key as a record blob would need
    it: not in the pipe, as no key is)."""
    vd = _vault(tmp_path / "v")
    src = _source(tmp_path, [_line(i) for i in range(N)])
    out = tmp_path / "pipe"
    got = _script("tee", vd, src, out)
    assert got.stdout.strip() == json.dumps({"client": "acme", "imported": N}), got.stderr[-2000:]
    sent = [p.read_bytes() for p in tmp_path.glob("pipe.*")]
    assert len(sent) == 2  # both workers answered
    data = b"".join(sent)
    assert len(data) > (N - IMPORT_BATCH) * 200  # the rows and the packs themselves
    for i in (0, 1999, 2000, 3333, N - 1):
        for needle in (f"pw-{i}-par", f"site/{i // 100}/dev-{i}", f"10.0.{i // 250}.{i % 250}"):
            assert needle.encode() not in data, needle
    assert b'"password"' not in data and b'"host"' not in data
    assert vd.key_file.read_bytes().strip() not in data


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_kill_9_of_the_cli_mid_import_leaves_no_worker_and_no_row(tmp_path):
    vd = _vault(tmp_path / "v")
    src = _source(tmp_path, [_line(i) for i in range(20 * IMPORT_BATCH)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "secret", "import", "acme", str(src)],
        env=vd.env(CVAULT_IMPORT_WORKERS="2"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    for _ in range(6000):  # until both workers run (or the import ended: then nothing to test)
        workers = _children(proc.pid)
        if len(workers) == 2 or proc.poll() is not None:
            break
        time.sleep(0.01)
    assert len(workers) == 2 and proc.poll() is None, "the workers never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(6000):
        alive = [pid for pid in workers if os.path.exists(f"/proc/{pid}")]
        if not alive:
            break
        time.sleep(0.01)
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]
    assert file_sql(vd, "SELECT count(*) FROM records") == [(0,)]
    listed = vd.cli("secret", "list", "acme", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_the_plan_cuts_blocks_at_the_streamed_paths_batches(tmp_path):
    """Blocks of exactly ``batch`` records (blank lines and CRLF counted as lines), the last one
    shorter and possibly without a final newline; each with the number of its first line."""
    rows = ["{}", "", "  {} \r", "{}", " \t", "{}", "{}", "[]", "{}"]
    src = tmp_path / "p.jsonl"
    src.write_bytes(("\n".join(rows)).encode())  # no final newline
    with open(src, "rb") as fh:
        source = ImportFile(fh, lambda raw: raw.decode())
        it = iter(source)
        assert next(it) == "{}\n"
        blocks = plan(source, 2)
        data = src.read_bytes()
    # after line 1: lines 2-4 (two records), 5-7 (two), 8-9 ("[]" is no record: a worker refuses it)
    assert [(line, count) for _, _, line, count in blocks] == [(2, 2), (5, 2), (8, 1)]
    assert [data[o : o + n] for o, n, _, _ in blocks] == [b"\n  {} \r\n{}\n", b" \t\n{}\n{}\n", b"[]\n{}"]


def test_a_process_with_another_thread_imports_through_the_streamed_path(tmp_path, monkeypatch):
    """fork copies the calling thread only (a lock another thread holds would stay held in the
    worker): with a second thread running, no worker is forked and the streamed path imports."""
    import threading

    vd = _vault(tmp_path / "v")
    src = _source(tmp_path, [_line(i) for i in range(N)])
    monkeypatch.setenv("CVAULT_IMPORT_WORKERS", "2")

    def no_fork():
        raise AssertionError("forked with a second thread running")

    monkeypatch.setattr(os, "fork", no_fork)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    v = vd.open()
    try:
        with open(src, "rb") as fh:
            got = v.secrets.import_records(operator(), "acme", ImportFile(fh, lambda raw: raw.decode()))
        assert got == {"client": "acme", "imported": N}
        assert v.secrets.get(operator(), "acme", f"site/{(N - 1) // 100}/dev-{N - 1}").version == 1
    finally:
        stop.set()
        other.join()
        v.close()
