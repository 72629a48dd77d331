"""The vault's one-way facts live in the sealed audit high-water mark, not only in rows a file
writer can delete or put back (review4 R4-1, R4-6; docs/security.md guarantee 38 and 40).

R4-1: the rolled-back-coverage check (review 2 S2) read the reached coverage only from the audit
log's ``integrity.row_macs`` events, which a routine ``audit prune`` deletes once they are past
the retention minimum. After that, an older authentic copy of the row-MAC marker put back, with
the newer tables' MACs stripped and a custodian redirected, was authenticated by the next
``cvault upgrade``. The mark now records the highest coverage the marker had.

R4-6: the bootstrap window (review2 S1) was kept shut by the MACed ``two_admins`` row and, failing
that, by the MACed creation rows; a row MAC cannot see a deletion, so an admin who can also write
vault.db deleted both after disabling the second admin, and made a sock-puppet admin alone. The
mark now records that the ``two_admins`` row existed."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import timedelta

import pytest

from tests.factories import Person
from tests.helpers import T0, clock_at, newer_coverage_strips
from tests.identity.test_insider_attacks_cli import (
    _init_admin_principal,
    vault_with_a_bootstrapped_second_admin,
)
from tests.integrity.test_upgrade_binding import put_back_older_marker
from tests.integrity.test_upgrade_row_macs import _query, _sql, old_vault  # noqa: F401 (fixture)
from vault.errors import IntegrityFailure
from vault.facade import Vault
from vault.store import rowmac


def _upgrade_as_the_cli_does(vdir, clock):
    """``cvault upgrade`` (summary, digest, ``--yes --digest``) through the library, with an
    injected clock (the CLI subprocess would use the wall clock, before the pruned log's times)."""
    sealed = Vault.open(vdir.home, clock=clock)
    digest = sealed.ctx.upgrade_summary()["digest"]
    sealed.unseal_key_file(vdir.key_file, upgrade=True, upgrade_digest=digest)
    return sealed


def test_a_pruned_log_still_protects_the_coverage_marker(old_vault, tmp_path, monkeypatch):  # noqa: F811
    vdir, cast = old_vault
    # 1. the vault as a coverage-1 build left it (as tests/integrity/test_upgrade_binding.py)
    with monkeypatch.context() as older_build:
        older_build.setattr(rowmac, "COVERAGE", 1)
        vdir.open(clock=clock_at(T0 + timedelta(hours=1)), upgrade=True).close()
    _sql(vdir.home, *newer_coverage_strips())
    backup = tmp_path / "older-copy.db"  # the file writer's authentic coverage-1 marker
    shutil.copy2(vdir.home / "vault.db", backup)
    # 2. the operator's legitimate upgrade to coverage 4; its event names the coverage
    v = _upgrade_as_the_cli_does(vdir, clock_at(T0 + timedelta(hours=2)))
    assert _query(vdir.home, "SELECT value FROM meta WHERE key = 'row_macs'") == [(rowmac.COVERAGE,)]
    assert any(
        f"(coverage {rowmac.COVERAGE})" in (r or "")
        for (r,) in _query(vdir.home, "SELECT reason FROM audit_events WHERE action = 'integrity.row_macs'")
    )
    v.ctx.audit.checkpoint()  # the next sweep's checkpoint
    v.close()
    # 3. a year and more later the reviewer prunes the log as documented (retention minimum kept)
    later = clock_at(T0 + timedelta(days=400))
    v = vdir.open(clock=later)
    rita = Person("rita", cast["users"]["rita"], frozenset({"security_reviewer"}), vault=v)
    assert v.audit.prune(rita.principal(v), T0 + timedelta(days=30))["pruned"] > 0
    v.close()
    assert not any(
        "(coverage" in (r or "")
        for (r,) in _query(vdir.home, "SELECT reason FROM audit_events WHERE action = 'integrity.row_macs'")
    ), "the events recording the coverage were pruned"
    # 4. the file writer: the older marker row back, the newer tables' MACs stripped, and the
    #    custodian redirected to a folder of his (guarantee 14: "redirects a custodian" is refused)
    planted = tmp_path / "attacker" / "vault.custody"
    planted.parent.mkdir()
    config = json.loads(_query(vdir.home, "SELECT config FROM custodians WHERE id = 1")[0][0])
    shutil.copy2(config["file"], planted)
    put_back_older_marker(
        vdir.home,
        backup,
        ("UPDATE custodians SET config = ? WHERE id = 1", (json.dumps({"file": str(planted)}),)),
    )
    # 5. the vault is asked for `cvault upgrade` a second time (the documented alarm, which the
    #    code no longer recognises): the upgrade must refuse, nothing MACed
    with pytest.raises(IntegrityFailure):
        _upgrade_as_the_cli_does(vdir, clock_at(T0 + timedelta(days=401))).close()
    assert _query(vdir.home, "SELECT count(*) FROM custodians WHERE mac IS NOT NULL") == [(0,)]


def mark_and_newest_checkpoint(db_path) -> tuple[bytes, int]:
    """The ``meta.audit_mark`` row as a file writer copies it, and the newest checkpoint's id."""
    db = sqlite3.connect(db_path)
    try:
        (mark,) = db.execute("SELECT value FROM meta WHERE key = 'audit_mark'").fetchone()
        (newest,) = db.execute("SELECT max(id) FROM audit_checkpoints").fetchone()
        return mark, newest
    finally:
        db.close()


def _without_the_bootstrap_rows(tmp_path, mark: bytes | None = None) -> Vault:
    """The file writer deletes ``two_admins`` and the bootstrap creation row (and puts ``mark``
    back as the sealed audit mark); the vault reopened and unsealed. The caller closes it."""
    db = sqlite3.connect(tmp_path / "v" / "vault.db")
    db.execute("DELETE FROM meta WHERE key = 'two_admins'")
    db.execute("DELETE FROM account_requests WHERE kind = 'create' AND mode = 'bootstrap'")
    if mark is not None:
        db.execute("UPDATE meta SET value = ? WHERE key = 'audit_mark'", (mark,))
    db.commit()
    db.close()
    v = Vault.open(tmp_path / "v")
    v.unseal_key_file(tmp_path / "k")
    return v


def test_deleting_two_rows_does_not_reopen_the_bootstrap_window(tmp_path):
    v, root, _second = vault_with_a_bootstrapped_second_admin(tmp_path)
    try:
        v.users.disable(root, "second")  # S1's first step: one active admin left
    finally:
        v.close()
    v = _without_the_bootstrap_rows(tmp_path)  # the file writer (root himself, say)
    try:
        root = _init_admin_principal(v, "root")
        again = v.users.add(root, "puppet", ["admin"])
        assert again["mode"] == "two_person" and "enrollment_code" not in again, (
            f"root alone made an admin after two rows were deleted: {again.get('mode')}"
        )
    finally:
        v.close()


def test_an_older_copy_of_the_mark_cannot_lower_its_one_way_facts(tmp_path):
    """review5 R5-6: root (an admin who can also write vault.db) keeps the mark row from before the
    second admin enrolled, then deletes two_admins and the bootstrap creation row and puts that
    copy back. Raising a one-way fact signs a checkpoint at once, so the older mark names a
    checkpoint that is no longer the newest: the alarm, never a re-opened bootstrap window."""
    from tests.identity.test_insider_attacks_cli import _enrolled
    from vault.errors import AuditAlarm

    v, _ = Vault.init(
        tmp_path / "v", key_file=tmp_path / "k", admin="root", admin_password="root-password-12"
    )
    db_path = tmp_path / "v" / "vault.db"

    try:
        root = _init_admin_principal(v, "root")
        boot = v.users.add(root, "second", ["admin"])
        assert boot["mode"] == "bootstrap"
        old_mark, checkpoint_then = mark_and_newest_checkpoint(db_path)  # the file writer's copy
        _enrolled(v, "second", boot["enrollment_code"], ["admin"])  # two enrolled admins now
        v.users.disable(root, "second")
    finally:
        v.close()
    assert mark_and_newest_checkpoint(db_path)[1] > checkpoint_then  # the fact was signed at once
    v = _without_the_bootstrap_rows(tmp_path, mark=old_mark)  # and the older mark put back
    try:
        root = _init_admin_principal(v, "root")
        with pytest.raises(AuditAlarm):
            v.users.add(root, "puppet", ["admin"])
    finally:
        v.close()
