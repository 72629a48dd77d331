"""kill -9 at random points of a shred, then another sweep (docs/spec.md §7, §12).

Each run copies a vault where ``acme`` is due for shredding, starts the sweep in a subprocess
(``tests/sla/shred_child.py``: ``Shredder(pause=...)`` sleeps a little after every committed step, so
that the kills land inside and between all the steps), SIGKILLs it after a random delay, and checks:

* right after the kill, acme is never half-destroyed: either it is not marked at all and every
  record still decrypts, or it is shredding/shredded, refused to everyone, and its keys are all
  there (before step b commits) or all gone (after) -- never some;
* the next sweep completes the shred: acme shredded, exactly one certificate, which verifies;
  no local blob of acme left; beta still readable; the audit chain verifies;
* P1 still holds after the resumed shred: a copy of the vault folder taken before it, opened with
  today's key file and today's custody file, opens none of acme's keys (and all of beta's).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest

from tests.factories import sla_client, sla_staff
from tests.helpers import ROOT, VaultDir, cli_env, clock_at, copy_folder, copy_vault, point_custody_at
from vault import blob as blobfmt
from vault.audit.signing import AuditSigner
from vault.clock import UTC
from vault.errors import ClientUnavailable
from vault.principal import Principal
from vault.sla import certificate as certfmt
from vault.sla.certificate import verify_document

RUNS = 32
RECORDS = 12
PAUSE = 0.03  # seconds after each of the 8 steps


@pytest.fixture(scope="module")
def due_template(vault_template, tmp_path_factory):
    base = tmp_path_factory.mktemp("kill-template")
    vdir = copy_vault(vault_template, base)
    # built 60 days ago: acme's SLA ended 50 days ago (grace 5), beta's ends in years
    clock = clock_at(datetime.now(UTC).replace(microsecond=0) - timedelta(days=60))
    vault = vdir.open(clock)
    people = sla_staff(vault)
    sla_client(
        vault, people.manager, "acme", days=10, grace_days=5, records=RECORDS, engineer=people.engineer
    )
    sla_client(vault, people.manager, "beta", days=2000, records=2, engineer=people.engineer)
    vault.close()
    return vdir


def copy(template: VaultDir, base) -> VaultDir:
    return copy_vault(template, base)


def decryptable(vault, name: str) -> int:
    """How many of the client's records open with the keys in the vault (policy bypassed)."""
    ctx = vault.ctx
    row = ctx.db.one("SELECT id, current_key_version FROM clients WHERE name = ?", (name,))
    client_id, version = row
    wrapped = ctx.db.one(
        "SELECT wrapped FROM client_keys WHERE client_id = ? AND version = ?", (client_id, version)
    )
    if wrapped is None:
        return 0
    from vault.keys import ClientKeys

    keys = ClientKeys(
        ctx.keyring,
        client_id,
        version,
        ctx.keyring.unwrap_client_key(bytes(wrapped[0]), client_id, version, name),
    )
    opened = 0
    for record_id, v, dek_w, blob_name in ctx.db.all(
        "SELECT v.record_id, v.version, v.wrapped_dek, v.blob_name FROM records r JOIN"
        " record_versions v ON v.record_id = r.id WHERE r.client_id = ?",
        (client_id,),
    ):
        dek = keys.unwrap_dek(bytes(dek_w), record_id, v)
        blobfmt.decrypt_record(
            ctx.blobs.get(blob_name),
            dek,
            vault_id=ctx.vault_id,
            client_id=bytes.fromhex(client_id),
            record_id=record_id,
            record_version=v,
        )
        opened += 1
    return opened


def paused_sweep(vdir):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.sla.shred_child", str(vdir.home), str(vdir.key_file), str(PAUSE)],
        cwd=ROOT,
        env=cli_env(vdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def one_run(template: VaultDir, base, delay: float) -> str:
    vdir = copy(template, base)
    proc = paused_sweep(vdir)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    # --- the state the kill left -----------------------------------------------------------
    vault = vdir.open()
    try:
        acme = vault.ctx.client("acme")
        count = decryptable(vault, "acme")
        if acme.shred_state is None:
            assert count == RECORDS, f"unmarked client lost records ({count}/{RECORDS})"
            seen = "untouched"
        else:
            assert count in (0, RECORDS), f"half-destroyed: {count}/{RECORDS} records decrypt"
            with pytest.raises(ClientUnavailable):
                vault.ctx.client_keys(acme)
            step = vault.ctx.db.one("SELECT step FROM shred_jobs")[0]
            seen = f"{acme.shred_state}/{step}"
    finally:
        vault.close()
    # --- the next sweep completes it ------------------------------------------------------------
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "sla", "sweep"],
        cwd=ROOT,
        env=cli_env(vdir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    vault = vdir.open()
    try:
        acme = vault.ctx.client("acme")
        assert acme.shred_state == "shredded"
        assert decryptable(vault, "acme") == 0
        certs = vault.ctx.db.all("SELECT client_id FROM shred_certificates")
        assert certs == [(acme.id,)]
        assert vault.ctx.db.one("SELECT step FROM shred_jobs")[0] == "done"
        assert decryptable(vault, "beta") == 2
        names = [r[0] for r in vault.ctx.db.all("SELECT blob_name FROM shred_blobs")]
        assert len(names) == RECORDS and not any(vault.ctx.blobs.exists(n) for n in names)
        events = vault.ctx.db.one("SELECT count(*) FROM audit_events WHERE action = 'sla.shred'")[0]
        assert events == 1
        report = vault.maintenance.doctor(Principal.system("doctor"))
        assert report.ok, report.problems
        body, sig = vault.ctx.db.one("SELECT body, signature FROM shred_certificates")
        signer = AuditSigner(vault.ctx.db, vault.ctx.keyring)
        doc = certfmt.file_document(body, bytes(sig), signer.trusted_public_key_text())
        verify_document(doc, signer.trusted_public_key()[0])
    finally:
        vault.close()
    # --- P1: a copy of the folder from before the shred, with today's key file and custody ----
    old = VaultDir(base / "old-copy", vdir.key_file)
    copy_folder(template.home, old.home)
    point_custody_at(old.home, old.key_file, vdir.custody_file)
    vault = old.open()
    try:
        assert opens_nothing_of(vault, "acme")
        assert decryptable(vault, "beta") == 2  # P2: the other client still restorable from it
    finally:
        vault.close()
    shutil.rmtree(base)
    return seen


def opens_nothing_of(vault, name: str) -> bool:
    """No client-key version of the client opens with the vault's keyring (policy bypassed)."""
    from vault.errors import IntegrityFailure

    client_id = vault.ctx.client(name).id
    rows = vault.ctx.db.all("SELECT version, wrapped FROM client_keys WHERE client_id = ?", (client_id,))
    assert rows, "the old copy should still hold the wrapped client keys"
    for version, wrapped in rows:
        try:
            vault.ctx.keyring.unwrap_client_key(bytes(wrapped), client_id, version, name)
        except IntegrityFailure:
            continue
        return False
    return True


@pytest.mark.slow
def test_kill_9_anywhere_in_a_shred_then_sweep_again(due_template, tmp_path):
    # calibrate: how long a full paused sweep takes here, start to exit
    probe = copy(due_template, tmp_path / "probe")
    start = time.monotonic()
    proc = paused_sweep(probe)
    proc.communicate(timeout=60)
    total = time.monotonic() - start
    assert proc.returncode == 0
    rng = random.Random(os.environ.get("CVAULT_TEST_SEED", "shred-kill"))
    delays = [rng.uniform(0.0, total) for _ in range(RUNS)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        seen = list(
            pool.map(lambda a: one_run(due_template, tmp_path / f"run{a[0]}", a[1]), enumerate(delays))
        )
    # the kills landed in several distinct places, not all before or after the shred
    print(sorted(seen))
    assert len(set(seen)) >= 4, seen
