"""review6 R6-1: R5-6's fix (the append that raises a one-way fact signs a checkpoint at once) is
undone by also deleting that checkpoint row (and every later one, with their blob copies and outbox
rows). The older mark then names the newest checkpoint again, find_break() is satisfied (the
entries at its cp_seq and head_seq still carry the hashes it records; the entries after it still
chain), and the bootstrap window re-opens: root (an admin who can also write vault.db) makes a
sock-puppet admin alone.

The fix: every unsealed append stores a root-keyed ``mark_tag`` on its entry (migration 0041), in
the transaction that moves the mark past it; an entry after the mark's head with a valid tag shows
the mark is an older copy put back (vault.audit.mark.find_break): the integrity alarm
(docs/security.md guarantee 40)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from tests.helpers import T0, clock_at, newer_coverage_strips
from tests.identity.test_insider_attacks_cli import _enrolled, _init_admin_principal
from tests.integrity.test_upgrade_binding import put_back_older_marker
from tests.integrity.test_upgrade_one_way_facts import _upgrade_as_the_cli_does, mark_and_newest_checkpoint
from tests.integrity.test_upgrade_row_macs import _query, old_vault  # noqa: F401 (fixture)
from vault.errors import AuditAlarm
from vault.facade import Vault
from vault.store import rowmac


def _checkpoints_after_deleted(home, checkpoint_then: int) -> list[str]:
    """The file writer deletes every checkpoint newer than ``checkpoint_then`` (row, outbox row,
    blob-store copy); the statements to run in the same commit as the rest of the attack."""
    db = sqlite3.connect(home / "vault.db")
    try:
        newer = db.execute(
            "SELECT seq, kind FROM audit_checkpoints WHERE id > ?", (checkpoint_then,)
        ).fetchall()
    finally:
        db.close()
    names = [f"audit-checkpoint-{seq}" + ("-prune" if kind == "prune" else "") for seq, kind in newer]
    for root_dir, _dirs, files in os.walk(home):
        for f in files:
            if f in names:
                os.unlink(os.path.join(root_dir, f))
    return names


def put_back_older_mark(home, old_mark: bytes, checkpoint_then: int, *, strip_tags: bool = False):
    """R6-1's file writer: every checkpoint newer than ``checkpoint_then`` deleted (row, outbox row,
    blob-store copy), the two bootstrap rows deleted, the older mark put back and, with
    ``strip_tags``, every entry's ``mark_tag`` stripped. Returns the open, uncommitted connection
    (the caller may edit more, then commits)."""
    names = _checkpoints_after_deleted(home, checkpoint_then)
    db = sqlite3.connect(home / "vault.db")
    db.execute("DELETE FROM audit_checkpoints WHERE id > ?", (checkpoint_then,))
    db.executemany("DELETE FROM outbox WHERE blob_name = ?", [(n,) for n in names])
    db.execute("DELETE FROM meta WHERE key = 'two_admins'")
    db.execute("DELETE FROM account_requests WHERE kind = 'create' AND mode = 'bootstrap'")
    db.execute("UPDATE meta SET value = ? WHERE key = 'audit_mark'", (old_mark,))
    if strip_tags:
        db.execute("UPDATE audit_events SET mark_tag = NULL")
    return db


def bootstrapped_admin_disabled(tmp_path) -> tuple[Path, bytes, int]:
    """root's new vault: the bootstrap admin ``second`` made (the file writer copies the mark row
    and notes the newest checkpoint then), enrolled (two enrolled admins: the fact rises and R5-6
    signs a checkpoint at once), then disabled by root. Returns (home, the copied mark, that
    checkpoint's id)."""
    v, _ = Vault.init(
        tmp_path / "v", key_file=tmp_path / "k", admin="root", admin_password="root-password-12"
    )
    home = tmp_path / "v"
    try:
        root = _init_admin_principal(v, "root")
        boot = v.users.add(root, "second", ["admin"])
        assert boot["mode"] == "bootstrap"
        old_mark, checkpoint_then = mark_and_newest_checkpoint(home / "vault.db")
        _enrolled(v, "second", boot["enrollment_code"], ["admin"])
        v.users.disable(root, "second")
    finally:
        v.close()
    return home, old_mark, checkpoint_then


def test_an_older_mark_with_the_newer_checkpoints_deleted_cannot_reopen_the_bootstrap_window(tmp_path):
    home, old_mark, checkpoint_then = bootstrapped_admin_disabled(tmp_path)
    db_path = home / "vault.db"
    assert (
        mark_and_newest_checkpoint(db_path)[1] > checkpoint_then
    )  # R5-6's fix: the raise was signed at once

    # the file writer: the two bootstrap rows deleted, the older mark put back, and every
    # checkpoint newer than the one that mark names deleted (row, outbox row, blob-store copy)
    db = put_back_older_mark(home, old_mark, checkpoint_then)
    db.commit()
    db.close()

    v = Vault.open(home)
    v.unseal_key_file(tmp_path / "k")
    try:
        root = _init_admin_principal(v, "root")
        try:
            again = v.users.add(root, "puppet", ["admin"])
        except AuditAlarm:
            return  # fixed: lowering the mark's fact is the alarm
        assert again["mode"] == "two_person" and "enrollment_code" not in again, (
            f"root alone made an admin (mode {again.get('mode')!r}) after putting back an older mark"
            " and deleting the checkpoint that signed the raised fact"
        )
    finally:
        v.close()


def test_an_older_mark_with_the_newer_checkpoints_deleted_cannot_lower_the_coverage(
    old_vault,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """The same attack on the mark's other one-way fact (review4 R4-1): the mark and the row-MAC
    marker from before an upgrade to full coverage put back, the newer tables' MACs stripped and
    every checkpoint since deleted. The mark check refuses it (the alarm) before anything else."""
    vdir, _cast = old_vault
    with monkeypatch.context() as older_build:  # the vault as a coverage-1 build left it
        older_build.setattr(rowmac, "COVERAGE", 1)
        vdir.open(clock=clock_at(T0 + timedelta(hours=1)), upgrade=True).close()
    db_path = vdir.home / "vault.db"
    db = sqlite3.connect(db_path)
    for statement in newer_coverage_strips():
        db.execute(statement)
    db.commit()
    db.close()
    backup = tmp_path / "older-copy.db"  # the file writer's authentic coverage-1 marker
    shutil.copy2(db_path, backup)
    old_mark, checkpoint_then = mark_and_newest_checkpoint(db_path)
    # the operator's legitimate upgrade to full coverage raises the mark's coverage
    _upgrade_as_the_cli_does(vdir, clock_at(T0 + timedelta(hours=2))).close()
    assert _query(vdir.home, "SELECT value FROM meta WHERE key = 'row_macs'") == [(rowmac.COVERAGE,)]
    assert mark_and_newest_checkpoint(db_path)[1] > checkpoint_then

    names = _checkpoints_after_deleted(vdir.home, checkpoint_then)
    put_back_older_marker(
        vdir.home,
        backup,
        ("DELETE FROM audit_checkpoints WHERE id > ?", (checkpoint_then,)),
        *(("DELETE FROM outbox WHERE blob_name = ?", (n,)) for n in names),
        ("UPDATE meta SET value = ? WHERE key = 'audit_mark'", (old_mark,)),
    )
    with pytest.raises(AuditAlarm, match="older copy put back"):
        _upgrade_as_the_cli_does(vdir, clock_at(T0 + timedelta(hours=3))).close()


def test_stripping_the_tags_too_still_leaves_the_bootstrap_window_closed(tmp_path):
    """The same attack with every entry's ``mark_tag`` stripped as well (an older mark then reads as
    a mark followed by sealed appends, which the folder alone cannot tell apart): the log still
    holds the ``integrity.bootstrap_closed`` entry appended when the fact rose, so ``user add`` is
    a two-person request (vault.identity.facts.bootstrap_closed_in_log)."""
    home, old_mark, checkpoint_then = bootstrapped_admin_disabled(tmp_path)
    db = put_back_older_mark(home, old_mark, checkpoint_then, strip_tags=True)
    assert db.execute(
        "SELECT count(*) FROM audit_events WHERE action = 'integrity.bootstrap_closed'"
    ).fetchone() == (1,)
    db.commit()
    db.close()

    v = Vault.open(home)
    v.unseal_key_file(tmp_path / "k")
    try:
        root = _init_admin_principal(v, "root")
        again = v.users.add(root, "puppet", ["admin"])
        assert again["mode"] == "two_person" and "enrollment_code" not in again, (
            f"root alone made an admin (mode {again.get('mode')!r}) after putting back an older mark,"
            " deleting the newer checkpoints and stripping the entries' tags"
        )
    finally:
        v.close()


def test_a_checkpoint_copy_newer_than_the_mark_fails_audit_verify(tmp_path):
    """The attack with the blob-store copies of the deleted checkpoints kept and every entry's tag
    stripped (the mark check cannot see it): a signed copy outside vault.db whose entry is still
    in the log and that is newer than the mark's checkpoint shows the mark was put back, so
    ``audit verify`` and ``doctor`` fail (vault.audit.live.verify_live; with a replica, its copy
    is checked the same way, and a file writer cannot delete that one)."""
    from vault.audit.live import verify_live

    home, old_mark, checkpoint_then = bootstrapped_admin_disabled(tmp_path)
    db_path = home / "vault.db"
    db = sqlite3.connect(db_path)
    db.execute("DELETE FROM audit_checkpoints WHERE id > ?", (checkpoint_then,))
    db.execute("UPDATE meta SET value = ? WHERE key = 'audit_mark'", (old_mark,))
    db.execute("UPDATE audit_events SET mark_tag = NULL")
    db.commit()
    db.close()

    v = Vault.open(home)
    v.unseal_key_file(tmp_path / "k")
    try:
        result = verify_live(v.ctx)
        assert not result.ok and "newer than the audit high-water mark" in (result.problem or ""), (
            "audit verify passed with a signed checkpoint copy newer than the mark kept in the blob store"
        )
    finally:
        v.close()
