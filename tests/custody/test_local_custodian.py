"""The local custodian (vault/custody/local.py): a 0600 file outside the vault folder.

What must hold: secrets round-trip and are found again after a crash; a destroyed secret is gone
from the file *and* from the old file's blocks (overwritten in place before the rename); the file
is refused when others can read it, when it lies inside the vault folder, when it belongs to
another vault, and when it was edited; a rewrite killed at any moment leaves a readable file.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT
from vault import crypto
from vault.clock import UTC, FixedClock
from vault.custody.base import CustodyDestroyed, CustodyMissing, CustodyRef, CustodyRefused, b64url
from vault.custody.local import LocalCustodian
from vault.errors import InsecurePermissions, IntegrityFailure, InvalidInput

VAULT_ID = bytes.fromhex("0123456789abcdef0123456789abcdef")
C1 = "a" * 32
C2 = "b" * 32


@pytest.fixture
def clock():
    from datetime import datetime

    return FixedClock(datetime(2026, 6, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
def custodian(tmp_path, clock) -> LocalCustodian:
    c = LocalCustodian(
        tmp_path / "keys" / "vault.custody", VAULT_ID, vault_home=tmp_path / "vault", clock=clock
    )
    c.create_file()
    return c


def test_created_private_and_round_trips(custodian, tmp_path):
    assert stat.S_IMODE(custodian.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(custodian.path.parent.stat().st_mode) == 0o700
    made = custodian.create([(C1, 1), (C2, 1)])
    assert [m.ref.client_id for m in made] == [C1, C2]
    assert all(len(m.secret) == 32 for m in made) and made[0].secret != made[1].secret
    assert made[0].ref.fingerprint == crypto.key_fingerprint(made[0].secret)
    assert custodian.open(made[0].ref) == made[0].secret
    assert custodian.open(made[1].ref) == made[1].secret
    # a second LocalCustodian (another process) reads the same secrets
    other = LocalCustodian(custodian.path, VAULT_ID)
    assert other.open(made[1].ref) == made[1].secret
    # the vault stores only the reference: no secret in it
    assert made[0].ref.wrapped is None and made[0].ref.key_id is None


def test_create_is_idempotent_after_a_crash(custodian):
    first = custodian.create([(C1, 1)])[0]
    again = custodian.create([(C1, 1), (C1, 2)])
    assert again[0].secret == first.secret  # the rerun of a job finds the same S
    assert again[1].secret != first.secret


def test_destroy_removes_the_secret_and_overwrites_the_old_file_in_place(custodian, tmp_path, clock):
    s1, s2 = custodian.create([(C1, 1), (C2, 1)])
    # a hard link shares the old file's blocks: it shows what is left in them after the rewrite
    old_blocks = tmp_path / "old-inode"
    os.link(custodian.path, old_blocks)
    assert b64url(s1.secret).encode() in old_blocks.read_bytes()
    receipts = custodian.destroy(C1, [1])
    assert [(r.client_id, r.version, r.already_absent) for r in receipts] == [(C1, 1, False)]
    data = custodian.path.read_bytes()
    assert b64url(s1.secret).encode() not in data
    assert b64url(s2.secret).encode() in data
    left = old_blocks.read_bytes()
    assert left == bytes(len(left)) and len(left) > 0  # every byte of the old content zeroed
    with pytest.raises(CustodyDestroyed, match="destroyed on 2026-06-01T09:00:00Z") as exc:
        custodian.open(s1.ref)
    assert exc.value.exit_code == 6
    assert custodian.open(s2.ref) == s2.secret
    receipt = receipts[0]
    assert receipt.destroyed_at == receipt.permanent_at == int(clock.now().timestamp())
    assert any(str(custodian.path) in r and "2026-06-01T09:00:00Z" in r for r in receipt.residual)
    assert not custodian.path.with_name("vault.custody.new").exists()


def test_destroy_is_idempotent_and_keeps_the_first_date(custodian, clock):
    custodian.create([(C1, 1)])
    first = custodian.destroy(C1, [1])[0]
    clock.advance(3600)
    again = custodian.destroy(C1, [1])[0]
    assert again.already_absent and again.destroyed_at == first.destroyed_at


def test_destroy_every_version_finds_versions_the_caller_did_not_name(custodian):
    made = custodian.create([(C1, 1), (C1, 2), (C1, 3), (C2, 1)])
    receipts = custodian.destroy(C1, [2], every_version=True)
    assert sorted(r.version for r in receipts) == [1, 2, 3]
    for m in made[:3]:
        with pytest.raises(CustodyDestroyed):
            custodian.open(m.ref)
    assert custodian.open(made[3].ref) == made[3].secret
    assert custodian.live_items() == {(C2, 1)}


def test_a_destroyed_version_is_never_made_again(custodian):
    custodian.create([(C1, 1)])
    custodian.destroy(C1, [1])
    with pytest.raises(CustodyRefused):
        custodian.create([(C1, 1)])


def test_refuses_a_file_others_can_read(custodian):
    made = custodian.create([(C1, 1)])[0]
    os.chmod(custodian.path, 0o640)
    with pytest.raises(InsecurePermissions) as exc:
        custodian.open(made.ref)
    assert exc.value.exit_code == 8 and "chmod 600" in str(exc.value)


def test_refuses_a_path_inside_the_vault_folder(tmp_path):
    home = tmp_path / "vault"
    with pytest.raises(InvalidInput, match="outside the vault folder"):
        LocalCustodian(home / "custody", VAULT_ID, vault_home=home)
    # also through a symlink that points into the vault folder
    home.mkdir()
    (tmp_path / "link").symlink_to(home)
    with pytest.raises(InvalidInput):
        LocalCustodian(tmp_path / "link" / "x.custody", VAULT_ID, vault_home=home)


def test_refuses_another_vaults_file(custodian):
    made = custodian.create([(C1, 1)])[0]
    other = LocalCustodian(custodian.path, bytes(16))
    with pytest.raises(IntegrityFailure, match="another vault"):
        other.open(made.ref)
    with pytest.raises(IntegrityFailure, match="another vault"):
        other.create_file()


def test_missing_file_is_exit_8(tmp_path):
    c = LocalCustodian(tmp_path / "nowhere.custody", VAULT_ID)
    ref = CustodyRef(C1, 1, "0" * 16)
    with pytest.raises(CustodyMissing) as exc:
        c.open(ref)
    assert exc.value.exit_code == 8 and "CVAULT_CUSTODY_FILE" in str(exc.value)
    c2 = LocalCustodian(tmp_path / "no-folder" / "x.custody", VAULT_ID)
    with pytest.raises(CustodyMissing):
        c2.open(ref)


def test_an_edited_secret_fails_closed(custodian):
    made = custodian.create([(C1, 1)])[0]
    data = custodian.path.read_bytes()
    line_at = data.index(f"k {C1} 1 ".encode()) + len(f"k {C1} 1 ")
    flipped = data[:line_at] + (b"A" if data[line_at : line_at + 1] != b"A" else b"B") + data[line_at + 1 :]
    custodian.path.write_bytes(flipped)
    with pytest.raises(IntegrityFailure, match="does not match"):
        custodian.open(made.ref)
    # a rewrite refuses the edited file instead of building on it
    with pytest.raises(IntegrityFailure, match="damaged"):
        custodian.create([(C2, 1)])
    assert any("damaged" in p for p in custodian.verify())


def test_wrong_fingerprint_fails_closed(custodian):
    made = custodian.create([(C1, 1)])[0]
    with pytest.raises(IntegrityFailure):
        custodian.open(CustodyRef(C1, 1, "f" * 16))
    assert custodian.open(made.ref) == made.secret


def test_recovery_after_a_crash_between_the_overwrite_and_the_rename(custodian):
    made = custodian.create([(C1, 1)])[0]
    # what a crash right after step 2 leaves: the complete new content in .new, the old file zeroed
    new = custodian.path.with_name("vault.custody.new")
    os.link(custodian.path, new)  # same content
    os.unlink(custodian.path)
    fd = os.open(custodian.path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, bytes(200))
    os.close(fd)
    assert custodian.open(made.ref) == made.secret  # readers use .new
    custodian.create([(C2, 1)])  # the next writer finishes the rename first
    assert not new.exists()
    assert custodian.open(made.ref) == made.secret


def test_a_torn_new_file_is_zeroed_and_removed(custodian):
    made = custodian.create([(C1, 1)])[0]
    new = custodian.path.with_name("vault.custody.new")
    torn = custodian.path.read_bytes()[:-20]
    fd = os.open(new, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, torn)
    os.close(fd)
    link = new.with_name("torn-blocks")
    os.link(new, link)
    assert any("interrupted" in p for p in custodian.verify())
    custodian.create([(C2, 1)])
    assert not new.exists()
    assert link.read_bytes() == bytes(len(torn))  # its blocks were zeroed before the unlink
    assert custodian.open(made.ref) == made.secret


def test_concurrent_writers_lose_nothing(custodian):
    """Four processes add 25 clients each at once; the flock keeps every one."""
    script = (
        "import sys\n"
        "from vault.custody.local import LocalCustodian\n"
        f"c = LocalCustodian(sys.argv[1], bytes.fromhex('{VAULT_ID.hex()}'))\n"
        "for i in range(25):\n"
        "    c.create([(f'{int(sys.argv[2]):02x}' + f'{i:030x}', 1)])\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(custodian.path), str(n)], cwd=ROOT)
        for n in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert len(custodian.live_items()) == 100


_KILL_LOOP = """
import sys
from vault.custody.local import LocalCustodian
c = LocalCustodian(sys.argv[1], bytes.fromhex(sys.argv[2]))
print("ready", flush=True)
n = 0
while True:
    n += 1
    cid = f"{n:032x}"
    c.create([(cid, 1)])
    c.destroy(cid, [1])
"""


@pytest.mark.slow
def test_kill_9_during_rewrites_never_loses_the_file(custodian):
    """20 kills at random moments of a create/destroy loop: the file always opens, the survivor's
    secret is always there, and no half-written .new survives the next write."""
    keep = custodian.create([(C1, 1)])[0]
    rng = __import__("random").Random(7)
    for _ in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILL_LOOP, str(custodian.path), VAULT_ID.hex()],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.005, 0.08))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert custodian.open(keep.ref) == keep.secret
        custodian.create([(C2, 1)])  # a writer recovers whatever the kill left
        assert custodian.verify() == []
    assert not Path(str(custodian.path) + ".new").exists()
