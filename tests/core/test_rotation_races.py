"""Key rotation under concurrency (issue 13, items 1-2): a ``client rotate-key`` loop beside
put/get/list/rm/edit/restore/otp loops, in both modes, with real processes and real connections,
for 20 s each (``CVAULT_RACE_SECONDS`` overrides, e.g. for a longer soak).

* CLI: 4 worker processes run ``cvault secret put|get|list|edit|restore|rm`` and ``secret get
  --otp`` (``cli.main.run``, one vault open per command exactly as the console script does,
  without paying interpreter start-up per command) while a fifth process loops ``cvault client
  rotate-key``.
* Service: a real ``cvault serve`` over HTTPS, 8 keep-alive connections doing the same through
  the API and a ninth looping ``POST /v1/clients/rotate-key``.

Must hold: zero exit 6 (or any other unexpected exit), zero 5xx, ``doctor`` clean afterwards, and
every acknowledged write reads back with its exact value. None of it depends on the machine's
speed: every worker runs on until it has completed every kind of operation at least once
(tests/core/race_worker.py), and the rotator until every worker has stopped and it has rotated at
least twice, so rotations overlap the whole run whatever the load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.core.race_worker import DELETED, KINDS, OTP_PATH, OTP_SEED, run_worker
from tests.helpers import OPERATOR_TOKEN, ROOT, add_client, operator

SECONDS = float(os.environ.get("CVAULT_RACE_SECONDS", "20"))
#: a worker that has not done every kind of operation by then fails the test (a hang, not load)
CAP = SECONDS + 240
MIN_ROTATIONS = 2

CLI_WORKER = r"""
import contextlib, io, json, os, sys
from cli.main import run
from tests.core.race_worker import run_worker

name, seconds, cap, folder = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]


def cvault(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(["--json", *argv])
    return code, out.getvalue(), err.getvalue().strip()


def do(op, path, value=None, version=None):
    if op in ("put", "edit"):
        src = os.path.join(folder, f"in-{name}")
        with open(src, "w", encoding="utf-8", newline="") as fh:
            fh.write(json.dumps({"text": value}))
        argv = ["secret", op, "acme", path, "--fields-json", src]
        if op == "put":
            argv += ["--type", "note"]
    elif op == "list":
        argv = ["secret", "list", "acme"]
    elif op == "get":
        argv = ["secret", "get", "acme", path]
    elif op == "restore":
        argv = ["secret", "restore", "acme", path, "--version", str(version)]
    elif op == "rm":
        argv = ["secret", "rm", "acme", path]
    else:
        argv = ["secret", "get", "acme", path, "--otp"]
    code, out, err = cvault(*argv)
    if code == 5:
        return "not_found", None, err
    if code != 0:
        return f"failed {code}", None, err
    doc = json.loads(out)
    if op == "get":
        return "ok", doc["fields"]["text"], ""
    if op == "otp":
        return "ok", doc["code"], ""
    return "ok", doc, ""


print(json.dumps(run_worker("w" + name, do, seconds, cap)))
"""

CLI_ROTATOR = r"""
import contextlib, io, json, os, sys, time
from cli.main import run

stop_file, minimum, cap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
start = time.monotonic()
bad, versions = [], []
while not (os.path.exists(stop_file) and len(versions) >= minimum):
    if time.monotonic() - start > cap:
        bad.append(["cap", len(versions)])
        break
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(["--json", "client", "rotate-key", "acme"])
    if code == 0:
        versions.append(json.loads(out.getvalue())["key_version"])
    else:
        bad.append([code, err.getvalue().strip()])
print(json.dumps({"bad": bad, "versions": versions}))
"""


def _seed(vdir) -> None:
    v = vdir.open()
    add_client(v, "acme")
    v.secrets.put(operator(), "acme", "shared/seed", "note", {"text": "seed"})
    v.secrets.put(operator(), "acme", OTP_PATH, "account", {"username": "ops", "totp": OTP_SEED})
    v.close()


def _check_summaries(summaries: list[dict], workers: int) -> dict[str, str]:
    assert len(summaries) == workers
    acked: dict[str, str] = {}
    for summary in summaries:
        assert summary["bad"] == [], summary["bad"][:5]
        assert summary["done"] == sorted(KINDS), summary["done"]  # every kind of operation ran
        acked.update(summary["acked"])
    return acked


def _check_acknowledged(vdir, acked: dict[str, str]) -> None:
    from vault.errors import NotFound

    v = vdir.open()
    try:
        for path, want in acked.items():
            if want == DELETED:
                with pytest.raises(NotFound):
                    v.secrets.get(operator(), "acme", path)
            else:
                assert v.secrets.get(operator(), "acme", path).fields["text"] == want, path
        report = v.maintenance.doctor(operator())
        assert report.ok, report.problems
    finally:
        v.close()


@pytest.mark.slow
def test_cli_rotate_key_loop_beside_four_worker_processes(vdir, tmp_path):
    _seed(vdir)
    stop_file = tmp_path / "workers-done"
    spawn = {
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "env": vdir.env(),
        "cwd": ROOT,
        "text": True,
    }
    rotator = subprocess.Popen(
        [sys.executable, "-c", CLI_ROTATOR, str(stop_file), str(MIN_ROTATIONS), str(CAP + 60)], **spawn
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CLI_WORKER, str(n), str(SECONDS), str(CAP), str(tmp_path)], **spawn
        )
        for n in range(4)
    ]
    results = [p.communicate(timeout=CAP + 120) for p in workers]
    stop_file.touch()
    rot_out, rot_err = rotator.communicate(timeout=CAP + 180)
    for proc, (_, err) in zip(workers, results, strict=True):
        assert proc.returncode == 0, err
    assert rotator.returncode == 0, rot_err
    rotations = json.loads(rot_out)
    assert rotations["bad"] == [], rotations["bad"][:5]
    versions = rotations["versions"]
    assert len(versions) >= MIN_ROTATIONS and versions == sorted(set(versions)), versions
    acked = _check_summaries([json.loads(out) for out, _ in results], 4)
    _check_acknowledged(vdir, acked)
    # the rotations are all there: the client's key version is the last one rotate-key reported
    v = vdir.open()
    try:
        assert v.clients.show(operator(), "acme")["key_version"] == versions[-1]
    finally:
        v.close()


@pytest.mark.slow
def test_service_rotate_key_loop_beside_eight_connections(vdir, tmp_path):
    from tests.server.harness import start_service

    _seed(vdir)
    service = start_service(vdir, tmp_path / "service")
    summaries: list[dict] = []
    bad: list = []
    versions: list[int] = []
    workers_done = threading.Event()

    def adapter(api):
        def do(op, path, value=None, version=None):
            body: dict = {"client_name": "acme", "path": path}
            if op == "put":
                body.update(kind="note", fields={"text": value})
            elif op == "edit":
                body.update(set_fields={"text": value})
            elif op == "restore":
                body.update(version=version)
            elif op == "list":
                body = {"client_name": "acme"}
            status, answer = api.post(f"/v1/secrets/{op}", body)
            if status == 404 and isinstance(answer, dict) and answer["error"]["code"] == "not_found":
                return "not_found", None, answer["error"]["message"]
            if status != 200:
                return f"failed {status}", None, json.dumps(answer)[:300]
            if op == "get":
                return "ok", answer["fields"]["text"], ""
            if op == "otp":
                return "ok", answer["code"], ""
            return "ok", answer, ""

        return do

    def worker(n: int) -> None:
        api = service.client(OPERATOR_TOKEN)
        try:
            summaries.append(run_worker(f"s{n}", adapter(api), SECONDS, CAP))
        except Exception as exc:  # noqa: BLE001 - reported below
            bad.append(("worker-exception", n, repr(exc)))
        finally:
            api.close()

    def rotator() -> None:
        api = service.client(OPERATOR_TOKEN)
        start = time.monotonic()
        try:
            while not (workers_done.is_set() and len(versions) >= MIN_ROTATIONS):
                if time.monotonic() - start > CAP + 60:
                    bad.append(("rotate-cap", len(versions)))
                    return
                status, body = api.post("/v1/clients/rotate-key", {"name": "acme"})
                if status != 200:
                    bad.append(("rotate", status, body))
                else:
                    versions.append(body["key_version"])
        except Exception as exc:  # noqa: BLE001 - reported below
            bad.append(("rotate-exception", repr(exc)))
        finally:
            api.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    spinner = threading.Thread(target=rotator)
    try:
        spinner.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        workers_done.set()
        spinner.join()
        assert not bad, bad[:5]
        assert len(versions) >= MIN_ROTATIONS and versions == sorted(set(versions)), versions
        acked = _check_summaries(summaries, 8)
        log = service.log()
        assert "internal error" not in log and "Traceback" not in log, log[-3000:]
        api = service.client(OPERATOR_TOKEN)
        for op, body in (
            ("/v1/secrets/list", {"client_name": "acme"}),
            ("/v1/clients/rotate-key", {"name": "acme"}),
        ):
            status, answer = api.post(op, body)
            assert status == 200, (op, answer)
        api.close()
    finally:
        service.stop()
    _check_acknowledged(vdir, acked)
