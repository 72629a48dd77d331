"""Independent review R1 and R5: an automatic upgrade path is a downgrade a file writer can use.

Whether a vault is "from before" row MACs or the audit high-water mark was read from rows a file
writer controls (the marker, the audit key rows, the key's sealing context). Deleting the audit
key rows or putting back the key as an older copy sealed it had the next unseal MAC every
planted row (R1), and had the next append sign a log rebuilt from genesis with the vault's real
key (R5). Now nothing older is authenticated without the operator's explicit ``cvault upgrade``,
and a missing audit key beside audit events is an integrity failure (docs/format.md "Upgrades",
docs/security.md guarantee 12a)."""

# ruff: noqa: F811 (the fixtures imported from the other modules)
from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from tests.helpers import T0, clock_at
from tests.integrity.test_audit_mark import (  # noqa: F401 (fixtures)
    _db,
    _signed_rows,
    delete_checkpoints_everywhere,
    rebuild_from_genesis,
    world,
)
from tests.integrity.test_upgrade_row_macs import _query, _sql, old_vault  # noqa: F401 (fixture)
from vault.errors import IntegrityFailure, UpgradeRequired
from vault.store import rowmac

DELETE_AUDIT_KEY = "DELETE FROM meta WHERE key IN ('audit_private_sealed', 'audit_public_key')"


def _strip_and_plant(vdir, cast, extra=()):
    """Marker gone, backfill event renamed, every MAC nulled; rita (a reviewer, never assigned)
    is planted bob's engineer role, a training and bob's assignment."""
    rita, bob = cast["users"]["rita"], cast["users"]["bob"]
    _sql(
        vdir.home,
        "DELETE FROM meta WHERE key = 'row_macs'",
        "UPDATE audit_events SET action = 'x.renamed' WHERE action = 'integrity.row_macs'",
        *[f"UPDATE {table} SET mac = NULL" for table in rowmac.TABLES],
        f"UPDATE users SET training_valid_until = 4102444800, disabled = 0 WHERE id = {rita}",
        f"INSERT INTO user_roles (user_id, role, granted_at, granted_by) VALUES ({rita}, 'engineer', 0, 'x')",
        f"INSERT INTO assignments (client_id, user_id, created_at, created_by) SELECT client_id,"
        f" {rita}, created_at, created_by FROM assignments WHERE user_id = {bob}",
        *extra,
    )


def _rita_macs(vdir, cast) -> set:
    """The MACs on rita's role rows (her own and the planted one): {None} when none was given."""
    return {
        r[0] for r in _query(vdir.home, f"SELECT mac FROM user_roles WHERE user_id = {cast['users']['rita']}")
    }


@pytest.mark.parametrize("upgrade", [False, True], ids=["unseal", "cvault-upgrade"])
def test_deleting_the_audit_key_rows_gets_no_second_backfill(old_vault, upgrade):
    vdir, cast = old_vault
    vdir.open(clock=clock_at(T0 + timedelta(hours=1)), upgrade=True).close()
    _strip_and_plant(vdir, cast, [DELETE_AUDIT_KEY])
    with pytest.raises(IntegrityFailure, match="row MACs were removed|audit key is missing"):
        vdir.open(clock=clock_at(T0 + timedelta(hours=2)), upgrade=upgrade)
    assert _rita_macs(vdir, cast) == {None}
    assert _query(vdir.home, "SELECT 1 FROM meta WHERE key = 'row_macs'") == []


@pytest.mark.parametrize("upgrade", [False, True], ids=["unseal", "cvault-upgrade"])
def test_putting_back_the_legacy_sealed_audit_key_gets_no_second_backfill(old_vault, upgrade):
    """The key sealed as before the mark (from any older copy) beside a vault that has a mark."""
    vdir, cast = old_vault
    legacy = _query(vdir.home, "SELECT value FROM meta WHERE key = 'audit_private_sealed'")[0][0]
    vdir.open(clock=clock_at(T0 + timedelta(hours=1)), upgrade=True).close()
    _strip_and_plant(vdir, cast)
    conn = sqlite3.connect(vdir.home / "vault.db")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_private_sealed'", (legacy,))
    conn.commit()
    conn.close()
    # unseal: the mark shows the vault had row MACs; the upgrade: also the renamed event breaks
    # the signed log
    with pytest.raises(IntegrityFailure, match="row MACs were removed|audit log does not verify"):
        vdir.open(clock=clock_at(T0 + timedelta(hours=2)), upgrade=upgrade)
    assert _rita_macs(vdir, cast) == {None}


def test_the_planted_grant_never_reads_through_the_cli(old_vault, tmp_path):
    """End to end: after the strip, every command exits 6 with one line; rita reads nothing."""
    from tests.helpers import cli_upgrade, run_cli

    vdir, cast = old_vault
    vdir.open(clock=clock_at(T0 + timedelta(hours=1)), upgrade=True).close()
    _strip_and_plant(vdir, cast, [DELETE_AUDIT_KEY])
    env = vdir.env(CVAULT_SESSION_FILE=str(tmp_path / "none.json"))
    for proc in (run_cli("client", "list", env=env), cli_upgrade(lambda *argv: run_cli(*argv, env=env))):
        argv = proc.args
        assert proc.returncode == 6, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.splitlines()[-1].startswith("cvault: integrity failure: "), proc.stderr
    assert _rita_macs(vdir, cast) == {None}


def test_deleting_the_mark_and_the_audit_key_raises_the_alarm(world):
    """R5 (a): log rebuilt from genesis with an edited entry, checkpoints deleted everywhere,
    then the mark, the alarm and both audit key rows deleted: the next command exits 6 (the
    alarm), nothing is signed."""
    vdir, cli, vault_id, _ = world
    delete_checkpoints_everywhere(vdir)
    rebuild_from_genesis(vdir, vault_id, keep=230, edit_seq=40)
    with _db(vdir) as db:
        db.execute(
            "DELETE FROM meta WHERE key IN ('audit_mark', 'audit_alarm', 'audit_private_sealed',"
            " 'audit_public_key')"
        )
    signed = _signed_rows(vdir)
    listed = cli("eve", "secret", "list", "acme")
    assert listed.returncode == 6, listed.stderr
    assert "audit key is missing" in listed.stderr and listed.stderr.count("\n") == 1, listed.stderr
    assert cli("rita", "audit", "checkpoint").returncode == 6
    assert cli("eve", "secret", "list", "acme").returncode == 6
    assert _signed_rows(vdir) == signed


def test_a_legacy_key_put_back_never_signs_a_rebuilt_log(old_vault):
    """R5 (b): checkpoints and mark deleted, log rewritten, the key as sealed before the mark put
    back: the vault stays sealed (exit 8, 'cvault upgrade'), the forged log is not signed."""
    from vault.principal import Principal

    vdir, cast = old_vault
    legacy = _query(vdir.home, "SELECT value FROM meta WHERE key = 'audit_private_sealed'")[0][0]
    v = vdir.open(clock=clock_at(T0 + timedelta(hours=1)), upgrade=True)
    try:
        vault_id = v.ctx.vault_id
        head = v.ctx.audit.head()[0]
    finally:
        v.close()
    delete_checkpoints_everywhere(vdir)
    rebuild_from_genesis(vdir, vault_id, keep=head - 2, edit_seq=3)
    conn = sqlite3.connect(vdir.home / "vault.db")
    conn.execute("DELETE FROM meta WHERE key IN ('audit_mark', 'audit_alarm')")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_private_sealed'", (legacy,))
    conn.commit()
    conn.close()
    v = vdir.open(clock=clock_at(T0 + timedelta(hours=2)))
    try:
        with pytest.raises(UpgradeRequired, match="cvault upgrade"):
            v.ctx.audit.checkpoint()  # what `cvault audit checkpoint` does
        with pytest.raises(UpgradeRequired):
            v.audit.verify(Principal.system("cli"))  # its audit event is an append too
    finally:
        v.close()
    assert _query(vdir.home, "SELECT count(*) FROM audit_checkpoints") == [(0,)]
