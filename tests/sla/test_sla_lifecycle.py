"""SLA lifecycle (docs/spec.md §7) through the library with an injected clock: states and their exact
boundaries, renew / expire / upcoming, early shred with two-person approval, the sweep lock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.factories import sla_client, sla_staff
from tests.helpers import T0, clock_at
from vault.clock import from_epoch
from vault.dates import parse_when
from vault.errors import AccessDenied, ClientUnavailable, InvalidInput, NotFound
from vault.principal import Principal
from vault.sla.service import SelfApproval, sweep_lock

SYSTEM = Principal.system("sweep")
SLA_DAYS, GRACE = 10, 5


@pytest.fixture
def world(vdir):
    clock = clock_at(T0)
    vault = vdir.open(clock)
    people = sla_staff(vault)
    sla_client(
        vault, people.manager, "acme", days=SLA_DAYS, grace_days=GRACE, records=2, engineer=people.engineer
    )
    sla_client(vault, people.manager, "beta", days=400, records=1, engineer=people.engineer)
    yield vault, clock, people
    vault.close()


def read(vault, people, client="acme", path="site/rec0"):
    return vault.secrets.get(people.engineer.principal(), client, path)


def state(vault, name="acme"):
    return vault.ctx.client(name).state(vault.ctx.now())


# --- boundaries ---------------------------------------------------------------------------------


def test_access_allowed_one_second_before_sla_end_and_refused_at_it(world):
    vault, clock, people = world
    end = T0 + timedelta(days=SLA_DAYS)
    clock.set(end - timedelta(seconds=1))
    assert state(vault) == "active"
    assert read(vault, people).fields == {"text": "acme secret 0"}
    clock.set(end)  # no sweep has run: refusal comes from the state alone
    assert state(vault) == "expired"
    with pytest.raises(ClientUnavailable) as err:
        read(vault, people)
    assert err.value.exit_code == 7
    assert "\n" not in err.value.message and "acme is expired" in err.value.message
    assert read(vault, people, "beta").fields == {"text": "beta secret 0"}


def test_grace_boundary_expired_then_shred_pending_and_sweep_waits_for_it(world):
    vault, clock, people = world
    due = T0 + timedelta(days=SLA_DAYS + GRACE)
    clock.set(due - timedelta(seconds=1))
    assert state(vault) == "expired"
    assert vault.sla.sweep(SYSTEM, dry_run=True)["due"] == []
    result = vault.sla.sweep(SYSTEM)
    assert result["shredded"] == [] and result["due"] == []
    assert vault.ctx.client("acme").shred_state is None
    clock.set(due)
    assert state(vault) == "shred_pending"
    assert [d["client"] for d in vault.sla.sweep(SYSTEM, dry_run=True)["due"]] == ["acme"]
    assert vault.ctx.client("acme").shred_state is None  # dry run changes nothing
    assert vault.sla.sweep(SYSTEM)["shredded"] == ["acme"]
    assert state(vault) == "shredded"
    assert vault.sla.sweep(SYSTEM)["due"] == []  # idempotent


def test_dates_with_time_zones_are_kept_in_utc(world):
    vault, clock, people = world
    until = parse_when("2027-03-31T17:00+02:00", vault.ctx.now())
    data = vault.sla.renew(people.manager.principal(), "acme", until)
    assert data["sla_end"] == "2027-03-31T15:00:00Z"
    stored = vault.ctx.db.one("SELECT sla_end FROM clients WHERE name = 'acme'")[0]
    assert from_epoch(stored).isoformat() == "2027-03-31T15:00:00+00:00"
    clock.set(from_epoch(stored) - timedelta(seconds=1))
    assert read(vault, people)
    clock.set(from_epoch(stored))
    with pytest.raises(ClientUnavailable):
        read(vault, people)


# --- renew, expire, show, upcoming ---------------------------------------------------------------


def test_expire_refuses_access_at_once_and_renew_restores_it(world):
    vault, clock, people = world
    with pytest.raises(InvalidInput):
        vault.sla.expire(people.manager.principal(), "acme", reason="  ")
    view = vault.sla.expire(people.manager.principal(), "acme", reason="contract terminated")
    assert view["state"] == "expired" and view["sla_end"] == "2026-06-01T09:00:00Z"
    assert view["shred_due"] == "2026-06-06T09:00:00Z"
    with pytest.raises(ClientUnavailable):
        read(vault, people)
    with pytest.raises(InvalidInput, match="already expired"):
        vault.sla.expire(people.manager.principal(), "acme", reason="again")
    clock.advance(days=GRACE)  # shred pending, not yet swept: renewal is still possible
    assert state(vault) == "shred_pending"
    with pytest.raises(InvalidInput, match="not in the future"):
        vault.sla.renew(people.manager.principal(), "acme", vault.ctx.now())
    view = vault.sla.renew(
        people.manager.principal(), "acme", vault.ctx.now() + timedelta(days=90), grace_days=7
    )
    assert view["state"] == "active" and view["grace_days"] == 7
    assert read(vault, people).fields == {"text": "acme secret 0"}
    assert vault.sla.sweep(SYSTEM)["due"] == []


def test_sla_commands_need_the_account_manager_role(world):
    vault, clock, people = world
    for who in (people.engineer, people.admin):
        with pytest.raises(AccessDenied) as err:
            vault.sla.renew(who.principal(), "acme", vault.ctx.now() + timedelta(days=9))
        assert err.value.exit_code == 4
    with pytest.raises(AccessDenied):
        vault.sla.request_shred(people.engineer.principal(), "acme", reason="x")
    with pytest.raises(NotFound):
        vault.sla.show(people.manager.principal(), "nope")


def test_upcoming_lists_sla_ends_and_shreds_within_the_window(world):
    vault, clock, people = world
    rows = vault.sla.upcoming(people.manager.principal(), timedelta(days=30))
    assert [(r["client"], r["event"]) for r in rows] == [("acme", "sla_end")]
    assert vault.sla.upcoming(people.manager.principal(), timedelta(days=9)) == []
    clock.set(T0 + timedelta(days=SLA_DAYS, hours=1))
    rows = vault.sla.upcoming(people.manager.principal(), timedelta(days=1))
    assert [(r["client"], r["event"], r["state"]) for r in rows] == [("acme", "shred_due", "expired")]
    clock.set(T0 + timedelta(days=SLA_DAYS + GRACE + 1))
    rows = vault.sla.upcoming(people.manager.principal(), timedelta(days=1))
    assert [(r["client"], r["event"]) for r in rows] == [("acme", "shred_overdue")]


# --- early shred: two-person rule ---------------------------------------------------------------


def test_requester_cannot_approve_their_own_early_shred(world):
    vault, clock, people = world
    vault.sla.request_shred(people.manager.principal(), "acme", reason="client asked for erasure")
    with pytest.raises(SelfApproval) as err:
        vault.sla.approve_shred(people.manager.principal(), "acme")
    assert err.value.exit_code == 4 and "two-person rule" in err.value.message
    assert state(vault) == "active"
    assert vault.sla.sweep(SYSTEM)["due"] == []
    denied = vault.ctx.db.one(
        "SELECT actor, outcome FROM audit_events WHERE action = 'sla.approve_shred' ORDER BY seq DESC LIMIT 1"
    )
    assert denied == ("maria", "deny")
    with pytest.raises(AccessDenied):  # engineers may not approve at all
        vault.sla.approve_shred(people.engineer.principal(), "acme")


def test_approved_early_shred_is_pending_at_once_and_the_next_sweep_shreds_it(world):
    vault, clock, people = world
    with pytest.raises(NotFound):
        vault.sla.approve_shred(people.manager2.principal(), "acme")
    vault.sla.request_shred(people.manager.principal(), "acme", reason="client asked for erasure")
    with pytest.raises(InvalidInput, match="already requested"):
        vault.sla.request_shred(people.manager2.principal(), "acme", reason="twice")
    view = vault.sla.approve_shred(people.admin.principal(), "acme")  # admin: a valid second person
    assert view["state"] == "shred_pending" and view["grace_days"] == 0
    with pytest.raises(ClientUnavailable):
        read(vault, people)
    assert vault.sla.sweep(SYSTEM)["shredded"] == ["acme"]
    cert = vault.sla.certificate(people.manager.principal(), "acme")["certificate"]
    assert cert["trigger"] == "early shred"
    assert (cert["requested_by"], cert["approved_by"]) == ("maria", "ada")
    assert cert["request_reason"] == "client asked for erasure"
    assert cert["sla"]["original_end"] == "2026-06-11T09:00:00Z"
    assert read(vault, people, "beta")


def test_renewal_before_the_sweep_cancels_an_approved_shred(world):
    vault, clock, people = world
    vault.sla.request_shred(people.manager.principal(), "acme", reason="mistake")
    vault.sla.approve_shred(people.manager2.principal(), "acme")
    view = vault.sla.renew(people.manager.principal(), "acme", vault.ctx.now() + timedelta(days=30))
    assert view["cancelled_shred_request"] and view["shred_request"] is None
    assert view["state"] == "active" and view["grace_days"] == GRACE  # grace given back
    assert vault.sla.sweep(SYSTEM)["due"] == []
    assert read(vault, people)
    # a new request can be made after the cancelled one
    vault.sla.request_shred(people.manager.principal(), "acme", reason="now for real")


def test_renewal_after_a_shred_is_refused_with_one_clear_line(world):
    vault, clock, people = world
    clock.set(T0 + timedelta(days=SLA_DAYS + GRACE))
    vault.sla.sweep(SYSTEM)
    with pytest.raises(ClientUnavailable) as err:
        vault.sla.renew(people.manager.principal(), "acme", vault.ctx.now() + timedelta(days=30))
    assert err.value.exit_code == 7
    assert err.value.message.startswith("client acme was shredded on 2026-06-16T09:00:00Z")
    assert "cannot be renewed" in err.value.message and "\n" not in err.value.message
    for call in (
        lambda p: vault.sla.expire(p, "acme", reason="x"),
        lambda p: vault.sla.request_shred(p, "acme", reason="x"),
    ):
        with pytest.raises(ClientUnavailable):
            call(people.manager.principal())


# --- the sweep ------------------------------------------------------------------------------------


def test_a_second_concurrent_sweep_does_nothing_and_says_so(world):
    vault, clock, people = world
    clock.set(T0 + timedelta(days=SLA_DAYS + GRACE))
    with sweep_lock(vault.ctx.home.locks) as held:
        assert held
        result = vault.sla.sweep(SYSTEM)
        assert result["skipped"] == "another sweep is running" and result["shredded"] == []
    assert vault.sla.sweep(SYSTEM)["shredded"] == ["acme"]


def test_nothing_due_is_one_indexed_query(world):
    vault, clock, people = world
    from vault.sla.service import DUE_SQL, RESUME_SQL

    plan = " ".join(r[-1] for r in vault.ctx.db.all("EXPLAIN QUERY PLAN " + DUE_SQL, (0,)))
    assert "USING INDEX clients_shred_due" in plan and "SCAN" not in plan
    plan = " ".join(r[-1] for r in vault.ctx.db.all("EXPLAIN QUERY PLAN " + RESUME_SQL))
    assert "shred_jobs_open" in plan


def test_sweep_runs_as_system_and_is_audited(world):
    vault, clock, people = world
    clock.set(T0 + timedelta(days=SLA_DAYS + GRACE))
    vault.sla.sweep(SYSTEM)
    actions = [
        r[0]
        for r in vault.ctx.db.all("SELECT action FROM audit_events WHERE actor = 'system:sweep' ORDER BY seq")
    ]
    assert actions[0] == "sla.sweep" and "sla.shred" in actions


def test_every_sweep_and_shred_leaves_a_signed_checkpoint_of_the_head(world):
    """Issue 4: checkpoints at least every 100 entries *and* at every sweep and shred."""
    vault, clock, people = world

    def head_is_signed() -> bool:
        head = vault.ctx.db.one("SELECT max(seq) FROM audit_events")[0]
        return any(cp.seq == head and cp.signature for cp in vault.ctx.audit.checkpoints())

    vault.sla.sweep(SYSTEM)  # nothing due
    assert head_is_signed()
    clock.set(T0 + timedelta(days=SLA_DAYS + GRACE, seconds=1))
    result = vault.sla.sweep(SYSTEM)  # shreds acme
    assert result["shredded"] == ["acme"]
    assert head_is_signed()
    cert = vault.sla.certificate(people.manager.principal(), "acme")["certificate"]
    assert any(cp.seq == cert["audit_head"]["seq"] for cp in vault.ctx.audit.checkpoints())
