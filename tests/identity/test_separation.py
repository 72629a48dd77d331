"""Separation of duties (issue 11): no single insider reads, takes over or shreds alone.

Each attack of the issue is replayed here through the library and the real CLI (subprocesses);
tests/server/test_separation_api.py replays them through the HTTP API. Each refusal is checked
for its exit code and for its audit event. Times come from an injected clock where the library is
used; nothing sleeps."""

from __future__ import annotations

import json
import threading

import pytest

from tests.factories import onboard
from tests.helpers import clock_at
from vault import crypto, names
from vault.errors import AccessDenied, AuthenticationFailed, Busy, InvalidInput, VaultLocked


@pytest.fixture
def env(staff):
    clock = clock_at()
    v = staff.vdir.open(clock=clock)
    yield v, clock, staff
    v.close()


def _audit(v, action, outcome=None):
    rows = v.ctx.db.all(
        "SELECT actor, outcome, reason FROM audit_events WHERE action = ? ORDER BY seq", (action,)
    )
    return [r for r in rows if outcome is None or r[1] == outcome]


def _cli(vd, who, tmp_path, *args, input=None):
    env = vd.env(CVAULT_SESSION_FILE=str(who.session_file(tmp_path, vault=vd)))
    return vd.cli(*args, env=env, input=input)


def _refused(proc, code):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("cvault: ") and proc.stderr.count("\n") == 1, proc.stderr


# --- 1. sock puppet -------------------------------------------------------------------------------


def test_sock_puppet_through_the_cli(staff, tmp_path):
    """One admin creates mallory, tries to approve, enroll, train, assign: every step refused."""
    vd, alice = staff.vdir, staff.alice
    added = json.loads(
        _cli(vd, alice, tmp_path, "--json", "user", "add", "mallory", "--role", "engineer").stdout
    )
    assert added["state"] == "pending_approval" and "enrollment_code" not in added
    _refused(_cli(vd, alice, tmp_path, "user", "approve", "mallory"), 4)
    enroll = vd.cli(
        "user",
        "enroll",
        "mallory",
        "--code",
        "0000-0000-0000",
        "--password-stdin",
        input="mallory-password-1\n",
    )
    _refused(enroll, 3)  # a pending account has no code at all
    _refused(_cli(vd, alice, tmp_path, "user", "train", "mallory", "--until", "+365d"), 4)
    _refused(_cli(vd, alice, tmp_path, "client", "assign", "acme", "mallory"), 4)
    for role in ("account_manager", "security_reviewer"):  # the same for the other roles
        _cli(vd, alice, tmp_path, "user", "add", f"puppet-{role[:3]}", "--role", role)
        _refused(_cli(vd, alice, tmp_path, "user", "approve", f"puppet-{role[:3]}"), 4)
    v = vd.open()
    try:
        assert len(_audit(v, "user.approve", "deny")) == 3
        assert any("mallory" in r[2] for r in _audit(v, "user.train", "deny"))
        assert any("mallory" in r[2] for r in _audit(v, "client.assign", "deny"))
        assert _audit(v, "auth.enroll", "deny")
        listed = {u["name"]: u for u in v.users.list(alice.principal(v))}
        assert listed["mallory"]["state"] == "pending_approval"
        assert listed["mallory"]["pending"]["requested_by"] == "alice"
    finally:
        v.close()


def test_lineage_blocks_requester_and_approver_but_a_third_person_vouches(env):
    v, clock, s = env
    approved = onboard(v, "dora", ["engineer"], requester=s.alice, approver=s.ada)
    v.users.enroll("dora", approved["enrollment_code"], "dora-password-123")
    for admin in (s.alice, s.ada):  # both held (or could have held) dora's code
        with pytest.raises(AccessDenied, match="a third person must"):
            v.users.train(admin.principal(v), "dora", "+365d")
        with pytest.raises(AccessDenied, match="a third person must"):
            v.users.grant(admin.principal(v), "dora", "security_reviewer")
        with pytest.raises(AccessDenied, match="a third person must"):
            v.access.assign(admin.principal(v), "acme", "dora")
    v.users.train(s.amy.principal(v), "dora", "+365d")  # an account manager, outside the lineage
    v.access.assign(s.amy.principal(v), "acme", "dora")
    assert v.users.show(s.alice.principal(v), "dora")["lineage"] == ["ada", "alice"]


def test_bootstrap_only_for_the_second_admin_and_listed(tmp_path):
    from vault.facade import Vault

    v, _ = Vault.init(
        tmp_path / "v", key_file=tmp_path / "k", admin="root", admin_password="root-password-12"
    )
    try:
        p = _init_admin_principal(v, "root")
        engineer = v.users.add(p, "eng", ["engineer"])  # not an admin: never a bootstrap step
        assert engineer["state"] == "pending_approval"
        boot = v.users.add(p, "second", ["admin"])
        assert boot["mode"] == "bootstrap" and boot["enrollment_code"]
        third = v.users.add(p, "third", ["admin"])  # one bootstrap code outstanding: no second one
        assert third["state"] == "pending_approval"
        assert any("bootstrap step" in r[2] for r in _audit(v, "user.add", "ok"))
    finally:
        v.close()


def _init_admin_principal(v, name):
    from tests.factories import insert_session
    from vault.clock import to_epoch
    from vault.identity.sessions import new_token
    from vault.principal import Principal

    user_id = v.ctx.db.one("SELECT id FROM users WHERE name = ?", (name,))[0]
    digest = insert_session(v, user_id, new_token(), to_epoch(v.ctx.now()))
    return Principal(name=name, roles=frozenset({"admin"}), user_id=user_id, session_id=digest)


def test_single_operator_vault_says_so_and_needs_no_second_person(tmp_path):
    from vault.facade import Vault

    v, result = Vault.init(
        tmp_path / "v",
        key_file=tmp_path / "k",
        admin="solo",
        admin_password="solo-password-12",
        single_operator=True,
    )
    try:
        p = _init_admin_principal(v, "solo")
        added = v.users.add(p, "helper", ["engineer"])
        assert added["mode"] == "single_operator" and added["enrollment_code"]
        assert sorted(v.users.show(p, "solo")["roles"]) == sorted(
            ["admin", "account_manager", "engineer", "security_reviewer"]
        )
        v.users.train(p, "solo", "+365d")  # alone: the operator vouches for themselves
    finally:
        v.close()


# --- 2. reset takeover ----------------------------------------------------------------------------


def test_reset_totp_cannot_be_completed_by_the_admin(staff, tmp_path):
    vd, alice = staff.vdir, staff.alice
    reset = json.loads(_cli(vd, alice, tmp_path, "--json", "user", "reset-totp", "bob").stdout)
    assert reset["needs_current_password"] is True
    takeover = vd.cli(
        "user",
        "enroll",
        "bob",
        "--code",
        reset["enrollment_code"],
        "--password-stdin",
        input="alices-choice-pw\n",
    )
    _refused(takeover, 3)
    v = vd.open()
    try:
        assert any("wrong current password" in r[2] for r in _audit(v, "auth.enroll", "deny"))
    finally:
        v.close()
    # bob himself completes it with his own password
    done = vd.cli(
        "user",
        "enroll",
        "bob",
        "--code",
        reset["enrollment_code"],
        "--password-stdin",
        input=staff.bob.password + "\n",
    )
    assert done.returncode == 0, done.stderr


def test_full_reset_needs_approval_and_suspends_until_a_third_person(env):
    v, clock, s = env
    bob = s.bob.principal(v)
    requested = v.users.reset(s.alice.principal(v), "bob")
    assert requested["state"] == "pending_approval" and "enrollment_code" not in requested
    assert v.secrets.list(bob, "acme") is not None  # nothing happens before the approval
    with pytest.raises(AccessDenied):
        v.users.approve(s.alice.principal(v), "bob")
    code = v.users.approve(s.ada.principal(v), "bob")["enrollment_code"]
    with pytest.raises(AccessDenied):  # sessions ended
        v.secrets.list(bob, "acme")
    v.users.enroll("bob", code, "bobs-new-password-1")
    fresh = s.bob.principal(v)
    with pytest.raises(AccessDenied, match="suspended"):
        v.secrets.list(fresh, "acme")
    assert v.users.show(s.alice.principal(v), "bob")["state"] == "suspended"
    for vouch in (s.alice, s.ada):
        with pytest.raises(AccessDenied, match="a third person must"):
            v.users.confirm(vouch.principal(v), "bob")
    v.users.confirm(s.amy.principal(v), "bob")
    assert v.secrets.list(s.bob.principal(v), "acme") is not None
    assert _audit(v, "user.confirm", "ok")


# --- 3. instant shred -----------------------------------------------------------------------------


def test_instant_shred_through_the_cli_is_refused(staff, tmp_path):
    vd, amy = staff.vdir, staff.amy
    _refused(_cli(vd, amy, tmp_path, "sla", "renew", "acme", "--until", "+365d", "--grace-days", "0"), 2)
    _refused(_cli(vd, amy, tmp_path, "client", "add", "quick", "--sla-end", "+30d", "--grace-days", "0"), 2)
    assert _cli(vd, amy, tmp_path, "sla", "expire", "acme", "--reason", "x").returncode == 0
    assert _cli(vd, amy, tmp_path, "sla", "sweep").returncode == 0
    assert _cli(vd, amy, tmp_path, "sla", "request-shred", "acme", "--reason", "now").returncode == 0
    _refused(_cli(vd, amy, tmp_path, "sla", "approve-shred", "acme"), 4)
    v = vd.open()
    try:
        assert v.ctx.client("acme").shred_state is None  # the grace period (30 days) runs
        assert v.ctx.client("acme").grace_days == 30
        assert [r[1] for r in _audit(v, "sla.renew")] == ["allow", "deny"]
        assert _audit(v, "sla.approve_shred", "deny")
    finally:
        v.close()


def test_shred_approver_outside_the_requesters_lineage(env):
    v, clock, s = env
    code = onboard(v, "mona", ["account_manager"], requester=s.alice, approver=s.ada)["enrollment_code"]
    v.users.enroll("mona", code, "mona-password-123")
    from tests.factories import insert_session
    from vault.clock import to_epoch
    from vault.identity.sessions import new_token
    from vault.principal import Principal

    uid = v.ctx.db.one("SELECT id FROM users WHERE name = 'mona'")[0]
    digest = insert_session(v, uid, new_token(), to_epoch(clock.now()))
    mona_p = Principal(name="mona", roles=frozenset({"account_manager"}), user_id=uid, session_id=digest)
    v.sla.request_shred(mona_p, "acme", reason="client asked")
    with pytest.raises(AccessDenied, match="does not count as a second person"):
        v.sla.approve_shred(s.ada.principal(v), "acme")  # ada approved mona's account
    v.sla.approve_shred(s.amy.principal(v), "acme")
    assert any("second person" in r[2] for r in _audit(v, "sla.approve_shred", "deny"))


# --- 5. lockout as a weapon, step-up races, Argon2id ------------------------------------------------


def test_strangers_failed_logins_leave_the_live_session_working(env):
    v, clock, s = env
    bob = s.bob.login(v)
    for _ in range(6):
        with pytest.raises((AuthenticationFailed, VaultLocked)):
            v.users.login("bob", "not bobs password", totp="123456")
    assert v.secrets.list(bob, "acme") is not None
    v.users.whoami(bob)


def test_parallel_stepup_guesses_count_exactly(staff):
    """Twelve simultaneous wrong step-ups on one session: five are evaluated, the rest throttled."""
    clock = clock_at()
    v = staff.vdir.open(clock=clock)
    bob = staff.bob.principal(v)
    v.close()
    results: list[str] = []
    barrier = threading.Barrier(12)

    def guess():
        mine = staff.vdir.open(clock=clock)
        try:
            barrier.wait()
            mine.users.step_up(bob, "000000")
        except AuthenticationFailed:
            results.append("wrong")
        except VaultLocked:
            results.append("throttled")
        finally:
            mine.close()

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("wrong") == 5 and results.count("throttled") == 7


def test_argon2_busy_or_broken_is_never_a_failed_login(env, monkeypatch):
    v, clock, s = env
    monkeypatch.setattr(crypto, "ARGON2_QUEUE", 0)
    with pytest.raises(Busy) as busy:
        s.bob.login(v)
    assert busy.value.exit_code == 9 and busy.value.code == "busy"
    monkeypatch.setattr(crypto, "ARGON2_QUEUE", 16)
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    def broken(*a, **k):
        raise RuntimeError("library failure")

    monkeypatch.setattr(Argon2id, "verify_phc_encoded", broken)
    with pytest.raises(crypto.PasswordCheckUnavailable):
        s.bob.login(v)
    monkeypatch.undo()
    assert v.ctx.db.one("SELECT failed_count FROM users WHERE name = 'bob'")[0] == 0
    assert v.users.show(s.alice.principal(v), "bob")["failures_last_hour"] == 0
    s.bob.login(v)  # the right password still works


def test_enroll_costs_one_argon2_whatever_the_name(env, monkeypatch):
    """Unknown and known names do the same work (no enumeration by timing); unknown names are
    audited only as a keyed tag."""
    v, clock, s = env
    calls: list[str] = []
    real_verify, real_hash = crypto.password_verify, crypto.password_hash
    monkeypatch.setattr(crypto, "password_verify", lambda p, h: calls.append("verify") or real_verify(p, h))
    monkeypatch.setattr(crypto, "password_hash", lambda p: calls.append("hash") or real_hash(p))
    v.users._dummy_verify("warm-up-password")  # the dummy hash is made once per process
    calls.clear()
    for name in ("nobody-here", "bob"):
        with pytest.raises(AuthenticationFailed):
            v.users.enroll(name, "0000-0000-0000", "some-password-123")
        assert calls == ["verify"], (name, calls)
        calls.clear()
    actors = [r[0] for r in _audit(v, "auth.enroll", "deny")]
    assert "nobody-here" not in " ".join(actors) and actors[0].startswith("(unknown user ")


# --- 6. names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["carl\n", "carl ", " carl", "car\x00l", "carl\t"])
def test_user_names_match_in_full(bad):
    with pytest.raises(InvalidInput):
        names.user_name(bad)


@pytest.mark.parametrize("bad", ["acme ", " acme", "acme\n", "ac\x1bme", "acme\u00a0"])
def test_client_names_match_in_full(bad):
    with pytest.raises(InvalidInput):
        names.client_name(bad)
