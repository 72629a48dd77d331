"""Each need-to-know condition alone turns an allowed read into a refusal (docs/spec.md §6), with an
injected clock; every decision is audited with its reason."""

from datetime import timedelta

import pytest

from tests.factories import edit_rows
from tests.helpers import clock_at
from vault.context import StepUpRequired
from vault.errors import AccessDenied, ClientUnavailable, VaultLocked


@pytest.fixture
def env(staff):
    clock = clock_at()
    v = staff.vdir.open(clock=clock)
    bob = staff.bob.principal(v)
    v.secrets.put(bob, "acme", "office/firewall", "note", {"text": "s3cret"})
    yield v, clock, staff
    v.close()


def _read(v, p):
    return v.secrets.get(p, "acme", "office/firewall").fields["text"]


def _last_decision(v):
    return v.ctx.db.one(
        "SELECT actor, outcome, reason FROM audit_events WHERE action = 'secret.get'"
        " ORDER BY seq DESC LIMIT 1"
    )


def test_baseline_allowed_and_audited(env):
    v, clock, s = env
    assert _read(v, s.bob.principal(v)) == "s3cret"
    assert _last_decision(v)[:2] == ("bob", "allow")


def _denied(v, p, text, exc=AccessDenied):
    with pytest.raises(exc) as info:
        _read(v, p)
    assert text in info.value.message, info.value.message
    actor, outcome, reason = _last_decision(v)
    assert outcome == "deny" and text.split(": ")[-1] in reason
    return info.value


def test_not_assigned(env):
    v, clock, s = env
    err = _denied(v, s.carl.principal(v), "access denied: carl is not assigned to acme")
    assert err.exit_code == 4


def test_assignment_ended_by_unassign(env):
    v, clock, s = env
    v.access.unassign(s.amy.principal(v), "acme", "bob")
    _denied(v, s.bob.principal(v), "bob's assignment to acme has ended")


def test_assignment_end_date_passed(env):
    v, clock, s = env
    v.access.assign(s.amy.principal(v), "acme", "bob", until=clock.now() + timedelta(days=2))
    assert _read(v, s.bob.principal(v)) == "s3cret"
    clock.advance(days=2)
    _denied(v, s.bob.principal(v), "bob's assignment to acme has ended")


def test_training_expired(env):
    v, clock, s = env
    v.users.train(s.alice.principal(v), "bob", clock.now() + timedelta(hours=1))
    assert _read(v, s.bob.principal(v)) == "s3cret"
    clock.advance(hours=1)
    _denied(v, s.bob.principal(v), "bob's data-handling training expired")


def test_sla_ended(env):
    v, clock, s = env
    clock.advance(days=366)
    err = _denied(v, s.bob.principal(v), "client acme is expired", ClientUnavailable)
    assert err.exit_code == 7


def test_user_disabled(env):
    v, clock, s = env
    p = s.bob.principal(v)
    v.users.disable(s.alice.principal(v), "bob")
    _denied(v, p, "bob is disabled")
    v.users.enable(s.alice.principal(v), "bob")
    assert _read(v, s.bob.principal(v)) == "s3cret"


def test_user_locked_keeps_live_session(env):
    """A lock stops new logins only: the owner's live session keeps working (issue 11, item 5)."""
    v, clock, s = env
    p = s.bob.principal(v)
    # locked by failures elsewhere (see test_identity_totp)
    edit_rows(v, "users", "locked_until = ?", (int(clock.now().timestamp()) + 300,), "name = 'bob'")
    assert _read(v, p) == "s3cret"
    with pytest.raises(VaultLocked):
        v.users.login("bob", s.bob.password, totp=s.bob.code(clock.now()))


def test_session_absolute_expiry(env):
    v, clock, s = env
    p = s.bob.login(v)
    for _ in range(16):  # used every 29 min: never idle, but 8 h is the limit
        clock.advance(minutes=29)
        v.users.step_up(p, s.bob.code(clock.now()))
        assert _read(v, p) == "s3cret"
    clock.advance(minutes=29)  # 8 h 13 min after login
    _denied(v, p, "session expired (8 h limit)")


def test_session_idle(env):
    v, clock, s = env
    p = s.bob.login(v)
    clock.advance(minutes=29)
    v.users.step_up(p, s.bob.code(clock.now()))
    assert _read(v, p) == "s3cret"
    clock.advance(minutes=30)
    _denied(v, p, "session idle for 30 min")


def test_stepup_stale(env):
    v, clock, s = env
    p = s.bob.login(v)
    clock.advance(minutes=14)
    assert _read(v, p) == "s3cret"
    clock.advance(minutes=1)
    err = _denied(v, p, "step-up needed", StepUpRequired)
    assert err.exit_code == 3
    v.users.step_up(p, s.bob.code(clock.now()))
    assert _read(v, p) == "s3cret"
    # listing (no secret value) does not need the step-up
    clock.advance(minutes=20)
    v.users.step_up(p, s.bob.code(clock.now()))
    clock.advance(minutes=16)
    assert v.secrets.list(p, "acme")[0]["path"] == "office/firewall"


def test_logout_ends_the_session(env):
    v, clock, s = env
    p = s.bob.login(v)
    v.users.logout(p)
    _denied(v, p, "session ended")


def test_engineer_lists_only_assigned_clients(env):
    v, clock, s = env
    v.clients.add(s.amy.principal(v), "globex", sla_end=clock.now() + timedelta(days=30))
    assert [c["name"] for c in v.clients.list(s.bob.principal(v))] == ["acme"]
    assert [c["name"] for c in v.clients.list(s.carl.principal(v))] == []
    assert [c["name"] for c in v.clients.list(s.rita.principal(v))] == ["acme", "globex"]
    with pytest.raises(AccessDenied):
        v.clients.show(s.bob.principal(v), "globex")


def test_who_can_reach_what(env):
    v, clock, s = env
    view = v.access.client_access(s.rita.principal(v), "acme")
    rows = {r["user"]: r for r in view["users"]}
    assert rows["bob"]["can_read"] and rows["bob"]["assignment"]["until"] is None
    assert not rows["carl"]["can_read"] and rows["carl"]["reason"] == "carl is not assigned to acme"
    v.users.disable(s.alice.principal(v), "bob")
    mine = v.access.user_access(s.alice.principal(v), "bob")
    assert mine["can_read"] == [] and mine["clients"][0]["reason"] == "bob is disabled"
    assert mine["clients"][0]["account"] == "disabled"


def test_an_admin_cannot_make_themselves_a_reader(env):
    """Two-person rule on privileges: nobody grants, trains, unlocks, enables or assigns themselves;
    so an admin cannot turn into an assigned, trained engineer on their own (docs/spec.md §6)."""
    v, clock, s = env
    alice = s.alice.principal(v)
    with pytest.raises(AccessDenied, match="alice cannot grant themselves"):
        v.users.grant(alice, "alice", "engineer")
    with pytest.raises(AccessDenied, match="cannot train themselves"):
        v.users.train(alice, "alice", clock.now() + timedelta(days=365))
    with pytest.raises(AccessDenied, match="cannot assign themselves"):
        v.access.assign(alice, "acme", "alice")
    with pytest.raises(AccessDenied):
        _read(v, s.alice.principal(v))
    refusals = v.ctx.db.all(
        "SELECT action, outcome FROM audit_events WHERE actor = 'alice' AND outcome = 'deny'"
    )
    assert {a for a, _ in refusals} >= {"user.grant", "user.train", "client.assign"}
    # the same changes made by someone else are allowed
    assert "engineer" in v.users.grant(alice, "carl", "engineer")["roles"]
    v.access.assign(s.amy.principal(v), "acme", "carl")
