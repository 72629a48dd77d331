"""Concurrent processes and kill -9 at random points never corrupt the vault or lose a write."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, add_client, operator

WORKER = r"""
import json, sys, time
from pathlib import Path
from vault.facade import Vault
from tests.helpers import operator
home, key, worker, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
v = Vault.open(home); v.unseal_key_file(key)
p = operator()
end = time.monotonic() + seconds
n = 0
acked = []
while time.monotonic() < end:
    path = f"w{worker}/r{n % 25}"
    r = v.secrets.put(p, "acme", path, "note", {"text": f"{worker}-{n}"})
    acked.append([path, r["version"], f"{worker}-{n}"])
    got = v.secrets.get(p, "acme", path)
    assert got.fields["text"] == f"{worker}-{n}", got
    n += 1
print(json.dumps(acked))
"""


@pytest.mark.slow
def test_four_processes_put_and_get_at_once(vdir):
    v = vdir.open()
    add_client(v, "acme")
    v.close()
    env = vdir.env()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(vdir.home), str(vdir.key_file), str(i), "10"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            text=True,
        )
        for i in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err
    v = vdir.open()
    total = 0
    for out, _ in results:
        acked = json.loads(out)
        total += len(acked)
        latest = {}
        for path, version, text in acked:
            latest[path] = (version, text)
        for path, (version, text) in latest.items():
            rec = v.secrets.get(operator(), "acme", path)
            assert (rec.version, rec.fields["text"]) == (version, text)
    assert total > 40
    assert v.maintenance.doctor(operator()).ok
    v.close()


PUTTER = r"""
import sys
from vault.facade import Vault
from tests.helpers import operator
home, key = sys.argv[1], sys.argv[2]
v = Vault.open(home); v.unseal_key_file(key)
p = operator()
i = 0
while True:
    i += 1
    r = v.secrets.put(p, "acme", f"k/{i % 7}", "note", {"text": f"value-{i}"})
    print(f"{i % 7} {r['version']} value-{i}", flush=True)
"""

ROTATOR = r"""
import sys
from vault.facade import Vault
from tests.helpers import operator
home, key = sys.argv[1], sys.argv[2]
v = Vault.open(home); v.unseal_key_file(key)
while True:
    r = v.clients.rotate_key(operator(), "acme")
    print(r["key_version"], flush=True)
"""


def _kill_at_random(vdir, script, delay_range):
    """Start ``script``, wait for its first line (it is at work: a loaded machine may take longer
    than any fixed delay just to start Python), then SIGKILL it after a random delay."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(vdir.home), str(vdir.key_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=vdir.env(),
        cwd=ROOT,
        text=True,
    )
    first = proc.stdout.readline()
    assert first, proc.communicate()[1]  # it died before doing anything
    time.sleep(random.uniform(*delay_range))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    return [first.rstrip("\n"), *out.splitlines()]


@pytest.mark.slow
def test_kill9_during_put_never_loses_an_acknowledged_write(vdir):
    random.seed(int.from_bytes(os.urandom(4), "big"))
    v = vdir.open()
    add_client(v, "acme")
    v.close()
    acknowledged = {}
    for _ in range(30):
        for line in _kill_at_random(vdir, PUTTER, (0.0, 0.35)):
            slot, version, text = line.split()
            acknowledged[f"k/{slot}"] = (int(version), text)
        v = vdir.open()
        for path, (version, text) in acknowledged.items():
            rec = v.secrets.get(operator(), "acme", path)
            # the acknowledged write, or a later one that committed just before the kill
            assert rec.version >= version
            if rec.version == version:
                assert rec.fields["text"] == text
        report = v.maintenance.doctor(operator())
        assert report.ok, report.problems
        v.close()
    assert acknowledged


@pytest.mark.slow
def test_kill9_during_rotate_key(vdir):
    v = vdir.open()
    add_client(v, "acme")
    v.secrets.import_records(
        operator(),
        "acme",
        [json.dumps({"path": f"r/{i}", "kind": "note", "fields": {"text": f"t{i}"}}) for i in range(300)],
    )
    v.close()
    for _ in range(30):
        _kill_at_random(vdir, ROTATOR, (0.0, 0.5))
        v = vdir.open()
        versions = v.ctx.db.all("SELECT version FROM client_keys")
        assert len(versions) == 1  # never two live versions, never none
        for i in (0, 150, 299):
            assert v.secrets.get(operator(), "acme", f"r/{i}").fields["text"] == f"t{i}"
        v.close()
    v = vdir.open()
    assert v.maintenance.doctor(operator()).ok
    v.close()
