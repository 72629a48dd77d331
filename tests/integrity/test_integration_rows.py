"""Issue 12 for the PSA integrations (issue 18's webhook): a file writer with no key who edits the
``integrations`` table (swaps a secret, renames an integration to sign as another, plants one,
revives a removed one) gets a refusal, exit 6 with one line from the CLI and HTTP 409
``integrity_failure`` from ``POST /v1/sla/contract-events``, audited as an integrity failure; the
SLA does not move (docs/security.md, "File writer (A4)", guarantee 23).

The cast (tests/integrity/conftest.py): halopsa and connectwise are enabled integrations whose
secrets the PSA holds; oldpsa was removed. A vault whose rows got their MACs before integrations
were covered (coverage 1) gets theirs on its next unseal, once, under the backfill's rules.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
from pathlib import Path

import pytest

from tests.helpers import as_coverage, copy_vault
from tests.integrity.test_file_writer import World, assert_refused_exit_6
from tests.server.harness import assert_error_shape, start_service
from vault.clock import to_epoch
from vault.errors import IntegrityFailure
from vault.store import rowmac

EVENT = {"id": "evt-forged-1", "client": "acme", "contract_end": "2031-03-31"}


def _headers(secret_hex: str, name: str, body: bytes, stamp: int) -> dict[str, str]:
    """docs/sla.md: "v1=" + hex HMAC-SHA256 under the secret's bytes over "<timestamp>.<body>"
    (an empty secret: the empty key, all a removed integration has left)."""
    digest = hmac.new(bytes.fromhex(secret_hex), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "x-cvault-integration": name,
        "x-cvault-timestamp": str(stamp),
        "x-cvault-signature": "v1=" + digest,
    }


def attack(world: World, name: str) -> tuple[str, str]:
    """Apply the edit; returns (the integration name the forged event names, the secret it is
    signed with: one the attacker hopes the vault now accepts under that name)."""
    secrets = world.ids["integration_secrets"]
    if name == "secret_swapped":  # halopsa's row given connectwise's sealed secret
        world.sql(
            "UPDATE integrations SET secret_sealed = (SELECT secret_sealed FROM integrations"
            " WHERE name = 'connectwise') WHERE name = 'halopsa'"
        )
        return "halopsa", secrets["connectwise"]
    if name == "renamed":  # connectwise signs as a PSA the vault never added
        world.sql("UPDATE integrations SET name = 'autotask' WHERE name = 'connectwise'")
        return "autotask", secrets["connectwise"]
    if name == "planted":  # a copy of halopsa's row, mac included, under a new name and id
        world.sql(
            "INSERT INTO integrations (name, secret_sealed, created_at, created_by, mac)"
            " SELECT 'autotask', secret_sealed, created_at, created_by, mac FROM integrations"
            " WHERE name = 'halopsa'"
        )
        return "autotask", secrets["halopsa"]
    if name == "revived":  # the removed integration enabled again (its secret is empty: known)
        world.sql(
            "UPDATE integrations SET disabled_at = NULL, disabled_by = NULL, name = 'oldpsa'"
            " WHERE name LIKE 'oldpsa#removed-%'"
        )
        return "oldpsa", ""
    raise AssertionError(name)


ATTACKS = ["secret_swapped", "renamed", "planted", "revived"]


@pytest.fixture
def world(world_template, tmp_path) -> World:
    vdir, people, ids = world_template
    return World(copy_vault(vdir, tmp_path), people, ids, tmp_path)


def _sla_end(world: World) -> int:
    return world.scalar("SELECT sla_end FROM clients WHERE name = 'acme'")


def _events(world: World, action: str, outcome: str) -> list[str]:
    conn = sqlite3.connect(world.db)
    try:
        rows = conn.execute(
            "SELECT reason FROM audit_events WHERE action = ? AND outcome = ?", (action, outcome)
        ).fetchall()
    finally:
        conn.close()
    return [r[0] for r in rows]


def test_an_authentic_event_is_accepted(world):
    v = world.vdir.open()
    try:
        body = json.dumps({**EVENT, "id": "evt-ok"}).encode()
        stamp = to_epoch(v.ctx.now())
        secret = world.ids["integration_secrets"]["halopsa"]
        got = v.integrations.receive(body, _headers(secret, "halopsa", body, stamp))
        assert got["change"] == "extend" and got["integration"] == "halopsa"
    finally:
        v.close()


@pytest.mark.parametrize("name", ATTACKS)
def test_an_edited_integrations_row_is_an_integrity_failure(world, name):
    before = _sla_end(world)
    who, secret = attack(world, name)
    v = world.vdir.open()
    try:
        body = json.dumps(EVENT).encode()
        stamp = to_epoch(v.ctx.now())
        headers = _headers(secret, who, body, stamp)
        with pytest.raises(IntegrityFailure, match="integrations row .* failed authentication"):
            v.integrations.receive(body, headers)
    finally:
        v.close()
    assert _sla_end(world) == before
    alarms = _events(world, "integrity.row_failure", "error")
    assert any("sla.contract_event" in r and "integrations row" in r for r in alarms), alarms
    denied = _events(world, "sla.contract_event", "deny")
    assert any("integrity failure" in r for r in denied), denied
    # the CLI: one line, exit 6; doctor names the table
    assert_refused_exit_6(world.cli_as("maria", "integration", "list"))
    doctor = world.doctor()
    report = json.loads(doctor.stdout)
    assert doctor.returncode != 0 and any("integrations row" in p for p in report["problems"]), report
    for value in world.ids["integration_secrets"].values():
        assert value not in doctor.stdout + json.dumps(alarms + denied)


@pytest.mark.slow
def test_a_forged_integration_on_a_running_service_is_409_integrity_failure(world):
    from tests.integrity.test_file_writer import _snapshot, _undo

    service = start_service(world.vdir, world.folder / "service")
    try:

        def post(who: str, secret: str, event_id: str):
            body = json.dumps({**EVENT, "id": event_id}).encode()
            headers = _headers(secret, who, body, int(time.time()))
            return service.client().request("POST", "/v1/sla/contract-events", raw=body, headers=headers)

        before = _sla_end(world)
        for n, name in enumerate(ATTACKS):
            snapshot = _snapshot(world)
            who, secret = attack(world, name)
            status, reply = post(who, secret, f"evt-served-{n}")
            err = assert_error_shape(reply, "integrity_failure")
            assert status == 409 and err["exit_code"] == 6, (name, status, reply)
            assert "integrations row" in err["message"], err
            alarms = _events(world, "integrity.row_failure", "error")
            assert any("sla.contract_event" in r and "integrations row" in r for r in alarms), (name, alarms)
            _undo(world, snapshot)
            assert _sla_end(world) == before, name
        status, reply = post("halopsa", world.ids["integration_secrets"]["halopsa"], "evt-served-ok")
        assert status == 200, reply
        assert "Traceback" not in service.log()
    finally:
        service.stop()


# --- the upgrade: a vault whose rows got MACs before integrations were covered ------------------


def _as_coverage_1(world: World) -> tuple:
    """What a vault written by the build before coverage 2 holds: the marker at 1, no MAC on the
    integrations rows. Returns the marker row at coverage 1 (key, value, mac) as a file writer
    who kept a copy of it would have it."""
    v = world.vdir.open()
    try:
        with v.ctx.db.write() as conn:
            as_coverage(conn, 1)
        return v.ctx.db.one("SELECT key, value, mac FROM meta WHERE key = ?", (rowmac.MARKER,))
    finally:
        v.close()


def _query(db: Path, sql: str, params: tuple = ()):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_a_vault_at_coverage_1_gets_integration_macs_at_the_next_unseal(world):
    _as_coverage_1(world)
    assert _query(world.db, "SELECT count(*) FROM integrations WHERE mac IS NOT NULL") == [(0,)]
    from vault.errors import UpgradeRequired

    with pytest.raises(
        UpgradeRequired, match="integrations, shred_jobs, .* rows of this vault carry no MACs"
    ):
        world.vdir.open()  # never automatically (review R1): the operator's cvault upgrade
    v = world.vdir.open(upgrade=True)
    try:
        with v.ctx.db.read() as conn:
            assert rowmac.coverage(conn) == rowmac.COVERAGE
            assert list(rowmac.verify_table(conn, "integrations")) == []
        assert len(v.integrations.list(world.people["maria"].principal(v))) == 2
    finally:
        v.close()
    reasons = _events(world, "integrity.row_macs", "ok")
    assert sum(f"(coverage {rowmac.COVERAGE})" in r and "integrations" in r for r in reasons) == 1, reasons
    assert "rows of integrations, shred_jobs, custodians" in reasons[-1], reasons
    world.vdir.open().close()  # once per vault
    assert sum("integrations" in r for r in _events(world, "integrity.row_macs", "ok")) == 1
    # and from now on an edit is refused
    attack(world, "renamed")
    assert_refused_exit_6(world.cli_as("maria", "integration", "list"))


def test_a_forged_row_before_the_upgrade_is_not_given_a_mac(world):
    """A row planted while the table had no MACs (its sealed secret copied from another row, so
    bound to another id) is refused at the upgrade: nothing is MACed, the marker stays at 1."""
    _as_coverage_1(world)
    attack(world, "planted")
    with pytest.raises(IntegrityFailure, match="secret of integration .* failed authentication"):
        world.vdir.open(upgrade=True)
    assert _query(world.db, "SELECT count(*) FROM integrations WHERE mac IS NOT NULL") == [(0,)]
    assert _query(world.db, "SELECT value FROM meta WHERE key = 'row_macs'") == [(1,)]
    proc = world.cli_as("maria", "integration", "list")  # still sealed until upgraded: exit 8
    assert proc.returncode == 8 and "cvault upgrade" in proc.stderr, proc.stderr


def test_a_revived_row_before_the_upgrade_is_not_given_a_mac(world):
    _as_coverage_1(world)
    attack(world, "revived")
    with pytest.raises(IntegrityFailure, match="has no secret but is enabled"):
        world.vdir.open(upgrade=True)
    assert _query(world.db, "SELECT count(*) FROM integrations WHERE mac IS NOT NULL") == [(0,)]


def test_rolling_the_marker_back_gets_no_second_upgrade(world):
    """The marker row at coverage 1 is an authentic older copy: put back after the upgrade (to
    have a planted row MACed), it meets rows that carry MACs already: an integrity failure."""
    old_marker = _as_coverage_1(world)
    world.vdir.open(upgrade=True).close()
    world.sql(
        "UPDATE meta SET value = ?, mac = ? WHERE key = 'row_macs'", params=(old_marker[1], old_marker[2])
    )
    world.sql(
        "INSERT INTO integrations (name, secret_sealed, created_at, created_by)"
        " SELECT 'autotask', secret_sealed, created_at, created_by FROM integrations WHERE name = 'halopsa'"
    )
    # refused by the log's record of the coverage reached (review 2, S2) before the MACs left on
    # the rows are even looked at
    with pytest.raises(IntegrityFailure, match="an older copy of the marker was put back"):
        world.vdir.open(upgrade=True)
    assert _query(world.db, "SELECT mac FROM integrations WHERE name = 'autotask'") == [(None,)]


@pytest.mark.parametrize("value", ["-1", "'x'", "x'00'"])
def test_an_edited_vault_id_is_one_line_exit_6(world, value):
    """Found by the property test above (a ``meta.value`` edit of the ``vault_id`` row): the
    vault id binds every key; anything but 16 bytes is an edited file, exit 6 and one line."""
    world.sql(f"UPDATE meta SET value = {value} WHERE key = 'vault_id'")
    proc = world.cli_as("maria", "integration", "list")
    assert proc.returncode == 6 and proc.stderr.strip() == (
        "cvault: integrity failure: meta.vault_id is not a vault id; run cvault doctor"
    ), proc.stderr
