"""Independent review R11: a paused shred's ``shred_jobs`` row is obeyed, so it is authenticated.

While a shred waits at ``keys_destroyed`` (the custodian unreachable: a Key Vault outage, a custody
file it cannot rewrite), a file writer (attacker A4: a backup operator holding a copy of the vault
folder from before the shred) moved the job to ``custody_destroyed``; the next sweep skipped the
custody step, signed a certificate, and the old copy still opened the client with today's custody
file. Now the row carries a MAC (rowmac coverage 3) and the certificate needs the custodian, asked
again, to find every custody version of the manifest gone: refused (exit 6, audited) otherwise.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import timedelta

import pytest

from tests.factories import sla_client, sla_staff
from tests.helpers import T0, as_coverage, clock_at
from vault.errors import BackendError, IntegrityFailure, VaultError
from vault.facade import Vault
from vault.principal import Principal
from vault.sla import shred
from vault.store import rowmac

SYSTEM = Principal.system("sweep")


def _client_and_old_copy(vdir, tmp_path, clock):
    vault = vdir.open(clock)
    people = sla_staff(vault)
    sla_client(vault, people.manager, "acme", days=10, grace_days=5, records=2, engineer=people.engineer)
    vault.close()
    old_copy = tmp_path / "backup-operator-copy"
    shutil.copytree(vdir.home, old_copy)  # the file writer's copy from before the shred
    return people, old_copy


def _pause_at_custody(vault) -> None:
    """The first sweep with the custodian unreachable: the shred pauses at keys_destroyed."""
    real = vault.ctx.custody.destroy_for_shred

    def unreachable(*a, **k):
        raise BackendError("Key Vault unreachable")

    vault.ctx.custody.destroy_for_shred = unreachable
    try:
        first = vault.sla.sweep(SYSTEM)
    finally:
        vault.ctx.custody.destroy_for_shred = real
    assert first["shredded"] == [] and first["failed"], first
    assert vault.ctx.db.all("SELECT step FROM shred_jobs") == [("keys_destroyed",)]


def _sql(vdir, sql: str):
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        with db:
            return db.execute(sql).fetchall()
    finally:
        db.close()


def _old_copy_opens(old_copy, vdir, people) -> str | None:
    old = Vault.open(old_copy, clock=clock_at(T0 + timedelta(days=1)))
    try:
        old.unseal_key_file(vdir.key_file)
        return old.secrets.get(people.engineer.principal(old), "acme", "site/rec0").fields["text"]
    except VaultError:
        return None
    finally:
        old.close()


def _alarms(vault) -> list[str]:
    return [
        r[0]
        for r in vault.ctx.db.all(
            "SELECT action FROM audit_events WHERE action = 'integrity.row_failure' ORDER BY seq"
        )
    ]


def test_a_shred_job_moved_past_the_custody_step_is_refused(vdir, tmp_path):
    clock = clock_at(T0)
    people, old_copy = _client_and_old_copy(vdir, tmp_path, clock)
    vault = vdir.open(clock)
    try:
        clock.set(T0 + timedelta(days=15))
        _pause_at_custody(vault)
        _sql(vdir, "UPDATE shred_jobs SET step = 'custody_destroyed' WHERE step = 'keys_destroyed'")
        with pytest.raises(IntegrityFailure, match="shred job of client .* failed authentication") as err:
            vault.sla.sweep(SYSTEM)
        assert err.value.exit_code == 6
        assert _alarms(vault), "the refusal is audited"
        assert vault.ctx.db.all("SELECT count(*) FROM shred_certificates") == [(0,)]
        assert vault.ctx.client("acme").shred_state == "shredding"
        with vault.ctx.db.read() as conn:
            assert any("shred_jobs" in line for line in rowmac.verify_table(conn, "shred_jobs"))
    finally:
        vault.close()


def test_a_certificate_needs_the_custodian_to_find_every_custody_version_gone(vdir, tmp_path, monkeypatch):
    """Defence in depth: a job that reaches the certificate with the custody secret alive (its
    step skipped by any path) is refused, audited, exit 6; the custodian destroys what it still
    held, and the next sweep certifies a shred the old copy cannot undo."""
    clock = clock_at(T0)
    people, old_copy = _client_and_old_copy(vdir, tmp_path, clock)
    vault = vdir.open(clock)
    try:
        clock.set(T0 + timedelta(days=15))

        def skipped(self, job):  # the custody step "done" without the custodian
            with self.ctx.db.write() as conn:
                self._advance(conn, job, "custody_destroyed", {"custody": []})

        with monkeypatch.context() as m:
            m.setattr(shred.Shredder, "_destroy_custody", skipped)
            with pytest.raises(IntegrityFailure, match="skipped its custody step") as err:
                vault.sla.sweep(SYSTEM)
        assert err.value.exit_code == 6
        assert _alarms(vault), "the refusal is audited"
        assert vault.ctx.db.all("SELECT count(*) FROM shred_certificates") == [(0,)]
        assert _old_copy_opens(old_copy, vdir, people) is None, "the custodian destroyed it meanwhile"
        # the custodian's receipts are in the job now: the next sweep asks again, then certifies
        assert vault.sla.sweep(SYSTEM)["shredded"] == ["acme"]
        assert vault.ctx.db.all("SELECT count(*) FROM shred_certificates") == [(1,)]
    finally:
        vault.close()


def test_an_honest_paused_shred_resumes_and_certifies(vdir, tmp_path):
    clock = clock_at(T0)
    people, old_copy = _client_and_old_copy(vdir, tmp_path, clock)
    vault = vdir.open(clock)
    try:
        clock.set(T0 + timedelta(days=15))
        _pause_at_custody(vault)
        assert vault.sla.sweep(SYSTEM)["shredded"] == ["acme"]
        assert vault.ctx.db.all("SELECT count(*) FROM shred_certificates") == [(1,)]
        assert _alarms(vault) == []
        with vault.ctx.db.read() as conn:
            assert list(rowmac.verify_table(conn, "shred_jobs")) == []
    finally:
        vault.close()
    assert _old_copy_opens(old_copy, vdir, people) is None


def test_doctor_names_a_shred_or_a_custody_rotation_whose_job_row_was_deleted(vdir):
    """Row MACs cannot see a deleted row: a shred or a pending custody rotation whose job row a
    file writer deleted stops silently with an old custody version alive; doctor says so."""
    clock = clock_at(T0)
    vault = vdir.open(clock)
    try:
        people = sla_staff(vault)
        sla_client(vault, people.manager, "acme", days=10, grace_days=5, records=1, engineer=people.engineer)
        sla_client(vault, people.manager, "globex", days=365)
        clock.set(T0 + timedelta(days=15))
        _pause_at_custody(vault)
        system = Principal.system("doctor")
        assert not [p for p in vault.maintenance.doctor(system).problems if "job" in p]
        globex = vault.ctx.client("globex").id
        with vault.ctx.db.write() as conn:  # a rotation waiting for an unreachable custodian
            vault.ctx.custody.start_rotation(conn, globex, "rotate", rotate_client_key=True)
        _sql(vdir, "DELETE FROM shred_jobs")
        _sql(vdir, "DELETE FROM custody_jobs")
        problems = vault.maintenance.doctor(system).problems
        assert any("client acme is being shredded but its shred job is missing" in p for p in problems)
        assert any("client globex has custody version 2 pending but no rotation job" in p for p in problems)
    finally:
        vault.close()


def test_a_vault_at_coverage_2_stays_sealed_until_upgrade_macs_its_shred_jobs(vdir, tmp_path):
    """A vault written by the build before coverage 3: the marker at 2, a paused shred's job row
    without a MAC. Never authenticated automatically (review R1): sealed until `cvault upgrade`,
    which MACs it once, audited; the shred then resumes and certifies."""
    clock = clock_at(T0)
    people, old_copy = _client_and_old_copy(vdir, tmp_path, clock)
    vault = vdir.open(clock)
    try:
        clock.set(T0 + timedelta(days=15))
        _pause_at_custody(vault)
        with vault.ctx.db.write() as conn:
            as_coverage(conn, 2)
    finally:
        vault.close()
    from vault.errors import UpgradeRequired

    with pytest.raises(UpgradeRequired, match="the shred_jobs, .* rows of this vault carry no MACs"):
        vdir.open(clock)
    vault = vdir.open(clock, upgrade=True)
    try:
        with vault.ctx.db.read() as conn:
            assert rowmac.coverage(conn) == rowmac.COVERAGE
            assert list(rowmac.verify_table(conn, "shred_jobs")) == []
        reasons = [
            r[0]
            for r in vault.ctx.db.all(
                "SELECT reason FROM audit_events WHERE action = 'integrity.row_macs' ORDER BY seq"
            )
        ]
        added = "shred_jobs, custodians, client_custody, custody_jobs, meta"
        assert any(f"rows of {added} (coverage {rowmac.COVERAGE})" in r for r in reasons), reasons
        assert vault.sla.sweep(SYSTEM)["shredded"] == ["acme"]
    finally:
        vault.close()
    assert _old_copy_opens(old_copy, vdir, people) is None
