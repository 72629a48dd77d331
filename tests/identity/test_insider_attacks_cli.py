"""Separation of duties (issue 11): no single insider reads, takes over or shreds alone.

Each attack of the issue is replayed here through the library and the real CLI (subprocesses);
tests/identity/test_insider_attacks_http.py replays them through the HTTP API. Each refusal is checked
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


def _enrolled(v, name, code, roles):
    from tests.factories import Person

    v.users.enroll(name, code, f"{name}-password-123")
    return Person(name, v.ctx.db.one("SELECT id FROM users WHERE name = ?", (name,))[0], frozenset(roles))


def test_a_second_account_of_the_same_person_is_no_second_person(env):
    """Review R9: ada approves alice's second admin account alice2 once, in good faith. From
    then on alice2 approves nothing alice asks (an admin mallory, a full reset of bob), alice
    approves nothing alice2 asks, and an admin made by alice + ada cannot re-confirm the reset
    alice asked for: the lineages are compared both ways, transitively. Each refusal is audited."""
    v, _, s = env
    alice, ada = s.alice, s.ada
    code = onboard(v, "alice2", ["admin"], requester=alice, approver=ada)["enrollment_code"]
    alice2 = _enrolled(v, "alice2", code, ["admin"])
    v.users.add(alice.principal(v), "mallory", ["admin"])
    with pytest.raises(AccessDenied, match="second person"):
        v.users.approve(alice2.principal(v), "mallory")
    v.users.add(alice2.principal(v), "mallory2", ["admin"])
    with pytest.raises(AccessDenied, match="second person"):
        v.users.approve(alice.principal(v), "mallory2")
    v.users.reset(alice.principal(v), "bob")
    with pytest.raises(AccessDenied, match="second person"):
        v.users.approve(alice2.principal(v), "bob")
    assert v.ctx.db.one("SELECT password_hash IS NOT NULL FROM users WHERE name = 'bob'")[0]
    assert len(_audit(v, "user.approve", "deny")) == 3
    # ada, outside both lineages, approves: mallory (made by alice + ada) cannot re-confirm bob
    mallory = _enrolled(
        v, "mallory", v.users.approve(ada.principal(v), "mallory")["enrollment_code"], ["admin"]
    )
    v.users.enroll("bob", v.users.approve(ada.principal(v), "bob")["enrollment_code"], "bob-is-back-123")
    with pytest.raises(AccessDenied, match="second person"):
        v.users.confirm(mallory.principal(v), "bob")
    assert _audit(v, "user.confirm", "deny")
    with v.ctx.db.read() as conn:
        from vault.identity.facts import lineage_closure, suspended

        assert suspended(conn, s.bob.user_id)
        assert {"alice", "ada"} <= lineage_closure(conn, "mallory")
        assert {"alice", "ada"} <= lineage_closure(conn, "alice2")


def test_a_second_account_does_not_vouch_for_an_account_whose_code_alice_held(env):
    """Review2 S3: ada approves alice's second admin account alice2 once (R9's premise); ada asks
    for a new hire nina and alice approves (alice holds nina's code and enrolls first). alice2
    may not train or assign nina (rule 2), nor add nina to a team or assign that team (the team
    rule): alice asked for alice2 and was handed nina's code. Each refusal is audited; amy, an
    account manager outside it, trains and assigns nina."""
    v, _, s = env
    alice, ada, amy = s.alice, s.ada, s.amy
    v.secrets.put(s.bob.principal(v), "acme", "office/firewall", "note", {"text": "bobs-secret"})
    alice2 = _enrolled(
        v,
        "alice2",
        onboard(v, "alice2", ["admin"], requester=alice, approver=ada)["enrollment_code"],
        ["admin"],
    )
    nina = _enrolled(
        v,
        "nina",
        onboard(v, "nina", ["engineer"], requester=ada, approver=alice)["enrollment_code"],
        ["engineer"],
    )
    with pytest.raises(AccessDenied, match="a third person must"):
        v.users.train(alice2.principal(v), "nina", "+365d")
    with pytest.raises(AccessDenied, match="a third person must"):
        v.access.assign(alice2.principal(v), "acme", "nina")
    with pytest.raises(AccessDenied, match="a third person must"):
        v.users.grant(alice2.principal(v), "nina", "security_reviewer")
    v.teams.add(alice2.principal(v), "noc", description="network operations")
    with pytest.raises(AccessDenied, match="a third person must"):
        v.teams.member_add(alice2.principal(v), "noc", "nina")
    v.teams.member_add(amy.principal(v), "noc", "nina")  # amy: outside alice's chain
    with pytest.raises(AccessDenied, match="a third person must"):
        v.teams.assign(alice2.principal(v), "acme", "noc")
    assert len(_audit(v, "user.train", "deny")) == 1
    assert len(_audit(v, "client.assign", "deny")) == 1
    assert len(_audit(v, "team.member_add", "deny")) == 1
    assert _audit(v, "client.assign_team", "deny")
    from vault.errors import VaultError

    with pytest.raises(VaultError):  # nina reads nothing of acme: nobody vouched for her yet
        v.secrets.get(nina.principal(v), "acme", "office/firewall")
    v.users.train(amy.principal(v), "nina", "+365d")
    v.access.assign(amy.principal(v), "acme", "nina")
    assert v.secrets.get(nina.principal(v), "acme", "office/firewall").fields["text"] == "bobs-secret"


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
        "--code-stdin",
        "--password-stdin",
        input="0000-0000-0000\nmallory-password-1\n",
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
        # listed by doctor and by every audit report, whatever its window
        assert any(
            w.startswith("bootstrap step: admin second was activated by root")
            for w in v.maintenance.doctor(p).warnings
        )
        from tests.factories import person

        reviewer = person(v, "rev", "security_reviewer").principal(v)
        report = v.audit.report(reviewer, since="1d")
        steps = report["separation_of_duties"]["bootstrap_steps"]
        assert [(s["user"], s["activated_by"]) for s in steps] == [("second", "root")]
        assert report["separation_of_duties"]["single_operator"] is False
    finally:
        v.close()


@pytest.mark.parametrize("lower", ["disable", "revoke"])
def test_one_admin_cannot_reopen_the_bootstrap_window(env, lower):
    """Review2 S1: alice disables ada (or revokes ada's admin role) so that the vault has one
    enrolled admin, then asks for admin accounts alice2 and alice3 (the reviewer's takeover of bob
    and the min-grace-0 replay). The bootstrap window of a new vault never re-opens: each account
    is a two-person request that stays pending (no code to alice), alice approves neither it nor
    her own minimum grace 0, and bob is never taken over. Every refusal is audited."""
    v, _, s = env
    alice = s.alice
    v.secrets.put(s.bob.principal(v), "acme", "office/firewall", "note", {"text": "bobs-secret"})
    if lower == "disable":
        v.users.disable(alice.principal(v), "ada")
    else:
        v.users.revoke(alice.principal(v), "ada", "admin")
    for name in ("alice2", "alice3"):
        added = v.users.add(alice.principal(v), name, ["admin"])
        assert added["mode"] == "two_person" and added["state"] == "pending_approval", added
        assert "enrollment_code" not in added
        with pytest.raises(AccessDenied, match="cannot approve"):
            v.users.approve(alice.principal(v), name)
    v.sla.request_min_grace(alice.principal(v), 0)
    with pytest.raises(AccessDenied):
        v.sla.approve_min_grace(alice.principal(v), 0)
    v.users.reset(alice.principal(v), "bob")
    with pytest.raises(AccessDenied):
        v.users.approve(alice.principal(v), "bob")
    assert v.ctx.min_grace_days(v.ctx.db.conn) == 30
    assert v.ctx.db.one("SELECT count(*) FROM enrollment")[0] == 0  # no code was ever issued
    assert len(_audit(v, "user.approve", "deny")) == 3
    assert _audit(v, "sla.approve_min_grace", "deny")
    with v.ctx.db.read() as conn:
        from vault.identity.facts import bootstrap_open

        assert not bootstrap_open(conn)


def test_one_admin_cannot_reopen_the_bootstrap_window_through_the_cli(staff, tmp_path):
    """Review2 S1 through the real CLI: ``user disable ada`` then ``user add alice2 --role admin``
    prints no enrollment code (a pending two-person request) and ``sla approve-min-grace 0`` by
    the requester is refused, exit 4, one line; the minimum grace stays 30 days."""
    vd, alice = staff.vdir, staff.alice
    assert _cli(vd, alice, tmp_path, "user", "disable", "ada").returncode == 0
    p = _cli(vd, alice, tmp_path, "--json", "user", "add", "alice2", "--role", "admin")
    assert p.returncode == 0, p.stderr
    added = json.loads(p.stdout)
    assert added["mode"] == "two_person" and "enrollment_code" not in added, added
    assert _cli(vd, alice, tmp_path, "sla", "min-grace", "0").returncode == 0
    _refused(_cli(vd, alice, tmp_path, "sla", "approve-min-grace", "0"), 4)
    _refused(_cli(vd, alice, tmp_path, "user", "approve", "alice2"), 4)
    v = vd.open()
    try:
        assert v.ctx.min_grace_days(v.ctx.db.conn) == 30
    finally:
        v.close()


def test_the_bootstrap_window_is_a_one_time_state_of_a_new_vault(tmp_path):
    """Review2 S1 from ``cvault init``: root makes the second admin alone (the one bootstrap step)
    and that admin approves root's requests (the README's two-admin flow). Once two admins have
    enrolled, disabling one re-opens nothing, even with the MACed ``two_admins`` meta row deleted
    by a file writer (the enrolled bootstrap creation row still closes it). A later admin made by
    one person alone (a row of mode bootstrap planted as a vault used before the fix would hold)
    is no second person to its maker: only the vault's first bootstrap step is exempt."""
    from vault.identity.facts import bootstrap_open, second_person
    from vault.store import rowmac

    v, root, second = vault_with_a_bootstrapped_second_admin(tmp_path)
    try:
        with v.ctx.db.read() as conn:
            assert rowmac.meta_value(conn, "two_admins") == "1" and not bootstrap_open(conn)
        v.users.add(root, "eng", ["engineer"])
        assert v.users.approve(second.principal(v), "eng")["enrollment_code"]  # README flow
        v.users.disable(root, "second")
        with v.ctx.db.write() as conn:
            conn.execute("DELETE FROM meta WHERE key = 'two_admins'")  # a file writer
        again = v.users.add(root, "third", ["admin"])
        assert again["mode"] == "two_person" and "enrollment_code" not in again
        with v.ctx.db.write() as conn:  # as the hole left it: root made "late" alone
            t = v.ctx.db.one("SELECT max(requested_at) FROM account_requests")[0]
            uid = v.users._insert_user(conn, "late", t, "root", ["admin"])
            v.users._insert_request(
                conn, uid, "create", "root", t, "bootstrap", approved_by="root", approved_at=t
            )
        with v.ctx.db.read() as conn:
            assert second_person(conn, "second", "root") is None
            assert "second person" in (second_person(conn, "late", "root") or "")
    finally:
        v.close()


def vault_with_a_bootstrapped_second_admin(tmp_path):
    """A new vault: ``init`` root, then root's bootstrap step "second" (an admin, enrolled).
    Returns (vault, root's principal, second's Person); the caller closes the vault."""
    from vault.facade import Vault

    v, _ = Vault.init(
        tmp_path / "v", key_file=tmp_path / "k", admin="root", admin_password="root-password-12"
    )
    root = _init_admin_principal(v, "root")
    boot = v.users.add(root, "second", ["admin"])
    assert boot["mode"] == "bootstrap"
    return v, root, _enrolled(v, "second", boot["enrollment_code"], ["admin"])


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
        assert any(w.startswith("single-operator vault") for w in v.maintenance.doctor(p).warnings)
        assert v.audit.report(p)["separation_of_duties"]["single_operator"] is True
        # one person requests and approves an early shred; the certificate says so
        v.clients.add(p, "solo-client", sla_end="+365d")
        v.sla.request_shred(p, "solo-client", reason="the client left")
        v.sla.approve_shred(p, "solo-client")
        v.sla.sweep(p)
        cert = v.sla.certificate(p, "solo-client")["certificate"]
        assert cert["two_person_rules"].startswith("off: single-operator vault")
        assert cert["sla"]["set_by"] == "solo" and cert["approved_by"] == "solo"
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
        "--code-stdin",
        "--password-stdin",
        input=reset["enrollment_code"] + "\n" + "alices-choice-pw\n",
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
        "--code-stdin",
        "--password-stdin",
        input=reset["enrollment_code"] + "\n" + staff.bob.password + "\n",
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


def test_confirm_after_a_totp_reset_checks_and_stamps_the_full_reset(staff, tmp_path):
    """Review2 S8: ada resets bob, alice approves (she held bob's code), bob enrolls, then ada
    resets bob's TOTP. ``user confirm bob`` by alice is still judged against the *full* reset:
    refused, exit 4, audited; bob stays suspended. A third admin outside the reset's lineage
    confirms, the full reset's row is the one stamped, and bob is no longer suspended."""
    from tests.factories import person
    from vault.identity import facts

    vd, s = staff.vdir, staff
    v = vd.open(clock=clock_at())
    try:
        v.users.reset(s.ada.principal(v), "bob")
        code = v.users.approve(s.alice.principal(v), "bob")["enrollment_code"]
        v.users.enroll("bob", code, "bob-new-password-1")
        v.users.reset_totp(s.ada.principal(v), "bob")
        third = person(v, "adm3", "admin")
    finally:
        v.close()
    _refused(_cli(vd, s.alice, tmp_path, "user", "confirm", "bob"), 4)
    v = vd.open(clock=clock_at())
    try:
        with v.ctx.db.read() as conn:
            assert facts.suspended(conn, s.bob.user_id)
        assert [r[0] for r in _audit(v, "user.confirm", "deny")] == ["alice"]
        assert not _audit(v, "user.confirm", "ok")
        assert v.users.confirm(third.principal(v), "bob")["suspended"] is False
        with v.ctx.db.read() as conn:
            assert not facts.suspended(conn, s.bob.user_id)
            assert facts.full_reset(conn, s.bob.user_id).confirmed_by == "adm3"
            assert facts.latest_request(conn, s.bob.user_id, ("reset_totp",)).confirmed_by != "adm3"
    finally:
        v.close()


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


def test_the_approver_gets_the_minimum_grace_she_reviewed(env):
    """Review R2, bait-and-switch: amy asks for 60 days, ada looks (60 pending), amy replaces the
    request with 0 days; ada's approval names 60, so nothing applies (exit 4, audited) and the
    floor stays 30. Approving the value she now sees (0) is a new, informed decision."""
    v, _, s = env
    amy, ada = s.amy.principal(v), s.ada.principal(v)
    v.sla.request_min_grace(amy, 60)
    assert v.sla.min_grace(ada)["pending"]["value"] == 60  # what ada reviewed
    v.sla.request_min_grace(amy, 0)  # amy swaps it before ada approves
    with pytest.raises(AccessDenied) as refused:
        v.sla.approve_min_grace(ada, 60)
    assert refused.value.exit_code == 4 and "replaced" in str(refused.value)
    view = v.sla.min_grace(ada)
    assert view["min_grace_days"] == 30 and view["pending"]["value"] == 0
    assert v.ctx.min_grace_days(v.ctx.db.conn) == 30
    denied = _audit(v, "sla.approve_min_grace", "deny")
    assert [r[0] for r in denied] == ["ada"] and "not to 60 days" in denied[0][2]
    assert not _audit(v, "sla.approve_min_grace", "ok")
    with pytest.raises(InvalidInput):
        v.sla.approve_min_grace(ada, -1)
    assert v.sla.approve_min_grace(ada, 0)["min_grace_days"] == 0


def test_approve_min_grace_names_the_value_through_the_cli(staff, tmp_path):
    """The CLI needs DAYS (exit 2 without it) and refuses another value with one line, exit 4."""
    vd, amy, ada = staff.vdir, staff.amy, staff.ada
    assert _cli(vd, amy, tmp_path, "sla", "min-grace", "60").returncode == 0
    shown = _cli(vd, ada, tmp_path, "sla", "min-grace")
    assert "'cvault sla approve-min-grace 60'" in shown.stdout, shown.stdout
    assert _cli(vd, amy, tmp_path, "sla", "min-grace", "0").returncode == 0
    _refused(_cli(vd, ada, tmp_path, "sla", "approve-min-grace"), 2)
    _refused(_cli(vd, ada, tmp_path, "sla", "approve-min-grace", "60"), 4)
    v = vd.open()
    try:
        assert v.ctx.min_grace_days(v.ctx.db.conn) == 30
        assert any("not to 60 days" in r[2] for r in _audit(v, "sla.approve_min_grace", "deny"))
    finally:
        v.close()


def test_the_minimum_grace_period_changes_only_with_a_second_person(staff, tmp_path):
    """amy cannot lower the floor alone (request, then her own approval: exit 4, audited); a
    second person's approval applies it to the next sla renew, in another process."""
    vd, amy = staff.vdir, staff.amy
    requested = json.loads(_cli(vd, amy, tmp_path, "--json", "sla", "min-grace", "0").stdout)
    assert requested["state"] == "pending_approval" and requested["min_grace_days"] == 30
    assert requested["pending"]["value"] == 0 and requested["pending"]["requested_by"] == "amy"
    _refused(_cli(vd, amy, tmp_path, "sla", "approve-min-grace", "0"), 4)
    _refused(_cli(vd, amy, tmp_path, "sla", "renew", "acme", "--until", "+365d", "--grace-days", "0"), 2)
    _refused(_cli(vd, staff.bob, tmp_path, "sla", "approve-min-grace", "0"), 4)  # no role for it
    approved = json.loads(_cli(vd, staff.ada, tmp_path, "--json", "sla", "approve-min-grace", "0").stdout)
    assert approved["min_grace_days"] == 0 and approved["last_change"]["approved_by"] == "ada"
    renewed = _cli(vd, amy, tmp_path, "sla", "renew", "acme", "--until", "+365d", "--grace-days", "0")
    assert renewed.returncode == 0, renewed.stderr
    v = vd.open()
    try:
        denied = _audit(v, "sla.approve_min_grace", "deny")
        assert any("two-person rule" in r[2] for r in denied) and denied[0][0] == "amy"
        assert [r[0] for r in _audit(v, "sla.approve_min_grace", "ok")] == ["ada"]
        assert any("30 -> 0" in r[2] for r in _audit(v, "sla.set_min_grace", "ok"))
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


def test_strangers_failed_cli_logins_leave_bobs_session_working(staff, tmp_path):
    """Six wrong `cvault login bob` from a stranger lock bob's logins (exit 3, then 8); bob's
    session file from before still reads acme."""
    vd, bob = staff.vdir, staff.bob
    env = vd.env(CVAULT_SESSION_FILE=str(bob.session_file(tmp_path, vault=vd)))
    stranger = vd.env(CVAULT_SESSION_FILE=str(tmp_path / "stranger.json"))
    codes = [
        vd.cli(
            "login", "bob", "--password-stdin", "--totp", "123456", input="guess-guess-1\n", env=stranger
        ).returncode
        for _ in range(6)
    ]
    assert codes[:5] == [3] * 5 and codes[5] == 8, codes
    listed = vd.cli("--json", "secret", "list", "acme", env=env)
    assert listed.returncode == 0, listed.stderr
    assert vd.cli("whoami", env=env).returncode == 0
    v = vd.open()
    try:
        assert any("locked" in r[2] for r in _audit(v, "auth.lockout"))
    finally:
        v.close()


def test_six_simultaneous_cli_logins_all_succeed(staff, tmp_path):
    import subprocess
    import sys

    from tests.helpers import ROOT

    vd = staff.vdir
    people = list(staff.users().values())
    procs = []
    for p in people:
        env = vd.env(CVAULT_SESSION_FILE=str(tmp_path / f"{p.name}.json"))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "cli.main", "login", p.name, "--password-stdin", "--totp", p.code()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=ROOT,
                text=True,
            )
        )
    for p, proc in zip(people, procs, strict=True):
        proc.stdin.write(p.password + "\n")
        proc.stdin.close()
    results = [proc.wait(timeout=120) for proc in procs]
    assert results == [0] * len(people), [proc.stderr.read() for proc in procs]


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


@pytest.mark.parametrize(
    ("command", "bad"),
    [(("user", "add"), "carl\n"), (("user", "add"), "carl "), (("client", "add"), "acme ")],
)
def test_names_with_whitespace_are_refused_and_audited_through_the_cli(staff, tmp_path, command, bad):
    """``carl\\n`` was a second carl and ``acme `` a second acme: refused (exit 2), audited
    without the typed name."""
    vd = staff.vdir
    who = staff.alice if command[0] == "user" else staff.amy
    extra = ("--role", "engineer") if command[0] == "user" else ("--sla-end", "+365d")
    _refused(_cli(vd, who, tmp_path, *command, bad, *extra), 2)
    v = vd.open()
    try:
        action = "user.add" if command[0] == "user" else "client.add"
        denied = _audit(v, action, "deny")
        assert denied and "invalid" in denied[-1][2] and bad.strip() not in denied[-1][2]
        table = "users" if command[0] == "user" else "clients"
        assert v.ctx.db.one(f"SELECT count(*) FROM {table} WHERE name = ?", (bad,))[0] == 0
    finally:
        v.close()


def test_a_password_typed_as_a_name_is_never_logged(staff, tmp_path):
    """A password typed into the name field (one that looks like a name, too) is in no audit
    entry and no error line, for login and for enrollment."""
    vd = staff.vdir
    for typed in ("hunter-two-horse.9", "Hunter 2 Horse!"):
        login = vd.cli(
            "login", typed, "--yes", "--password-stdin", "--totp", "123456", input="whatever-pw-12\n"
        )
        _refused(login, 3)
        enroll = vd.cli(
            "user",
            "enroll",
            typed,
            "--code-stdin",
            "--password-stdin",
            input="AAAA-BBBB-CCCC\nwhatever-pw-12\n",
        )
        assert enroll.returncode in (2, 3), enroll.stderr
        assert typed not in login.stderr + enroll.stderr
    v = vd.open()
    try:
        rows = v.ctx.db.all("SELECT actor, reason FROM audit_events")
        text = json.dumps(rows)
        assert "hunter-two-horse.9" not in text and "Hunter 2 Horse!" not in text
        assert any(r[0].startswith("(unknown user ") for r in rows)
    finally:
        v.close()


def test_a_locked_account_costs_the_same_argon2_at_enrollment(env, monkeypatch):
    v, clock, s = env
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            v.users.login("carl", "not carls password", totp="123456")
    calls: list[str] = []
    real_verify = crypto.password_verify
    monkeypatch.setattr(crypto, "password_verify", lambda p, h: calls.append("verify") or real_verify(p, h))
    v.users._dummy_verify("warm-up-password")
    calls.clear()
    with pytest.raises(VaultLocked):
        v.users.enroll("carl", "0000-0000-0000", "some-password-123")
    assert calls == ["verify"]


# --- 6. one-time codes on the command line --------------------------------------------------------


def test_one_time_codes_by_stdin_and_a_warning_for_argv(staff, tmp_path):
    vd = staff.vdir
    argv = vd.cli(
        "user", "enroll", "bob", "--code", "AAAA-BBBB-CCCC", "--password-stdin", input="bobs-new-password\n"
    )
    assert argv.returncode == 3
    warning, error = argv.stderr.splitlines()
    assert "stays valid until it is used" in warning and error.startswith("cvault: enrollment failed")
    stdin = vd.cli(
        "user",
        "enroll",
        "bob",
        "--code-stdin",
        "--password-stdin",
        input="AAAA-BBBB-CCCC\nbobs-new-password\n",
    )
    _refused(stdin, 3)  # one line: no warning
    # a recovery code from stdin, after the password, logs in
    v = vd.open()
    try:
        code = onboard(v, "dora", ["engineer"], requester=staff.alice, approver=staff.ada)["enrollment_code"]
        recovery = v.users.enroll("dora", code, "dora-password-123")["recovery_codes"]
    finally:
        v.close()
    env = vd.env(CVAULT_SESSION_FILE=str(tmp_path / "dora.json"))
    login = vd.cli(
        "login",
        "dora",
        "--password-stdin",
        "--recovery-code-stdin",
        input=f"dora-password-123\n{recovery[0]}\n",
        env=env,
    )
    assert login.returncode == 0 and login.stderr == "", login.stderr
    again = vd.cli(
        "login",
        "dora",
        "--password-stdin",
        "--recovery-code",
        recovery[1],
        input="dora-password-123\n",
        env=env,
    )
    assert again.returncode == 0 and "stays valid until it is used" in again.stderr


# --- 6. stored escape sequences on the terminal ---------------------------------------------------


def test_secret_get_field_escapes_control_characters_on_a_terminal(staff, tmp_path):
    from tests.helpers import on_a_terminal

    vd = staff.vdir
    evil = "line one\nok\x1b]0;owned\x07\x1b[2J\r fake prompt$ "
    v = vd.open()
    try:
        v.secrets.put(staff.bob.principal(v), "acme", "evil", "note", {"text": evil})
    finally:
        v.close()
    env = vd.env(CVAULT_SESSION_FILE=str(staff.bob.session_file(tmp_path, vault=vd)))
    shown = on_a_terminal(vd, "secret", "get", "acme", "evil", "--field", "text", env=env)
    assert "\x1b" not in shown and "\x07" not in shown and "\\x1b]0;owned\\x07" in shown
    assert "line one\r\nok" in shown  # line breaks kept (the terminal turns \n into \r\n)
    raw = on_a_terminal(vd, "secret", "get", "acme", "evil", "--field", "text", "--raw", env=env)
    assert "\x1b]0;owned\x07" in raw
    piped = vd.cli("secret", "get", "acme", "evil", "--field", "text", env=env)
    assert "ok\x1b]0;owned\x07\x1b[2J" in piped.stdout  # a pipe gets the value as stored


# --- 6. core dumps and files others can read --------------------------------------------------------

_CORE_PROBE = """
import sys
from vault.facade import Vault
from vault.hardening import core_dumps_forbidden
v = Vault.open(sys.argv[1])
before = core_dumps_forbidden()
v.unseal_key_file(sys.argv[2])
print(before, core_dumps_forbidden())
"""


def test_an_unsealed_process_cannot_dump_core(staff):
    import subprocess
    import sys

    from tests.helpers import ROOT

    vd = staff.vdir
    out = subprocess.run(
        [sys.executable, "-c", _CORE_PROBE, str(vd.home), str(vd.key_file)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_secret_files_others_can_read_are_refused(staff, tmp_path):
    import os
    import shutil

    vd = staff.vdir
    loose_key = tmp_path / "loose.key"
    shutil.copy(vd.key_file, loose_key)
    for mode in (0o640, 0o604):
        os.chmod(loose_key, mode)
        env = vd.env(CVAULT_KEY_FILE=str(loose_key))
        proc = vd.cli("client", "list", env=env)
        _refused(proc, 8)
        assert "accessible by other users" in proc.stderr and "loose.key" in proc.stderr
    os.chmod(loose_key, 0o600)
    assert vd.cli("client", "list", env=vd.env(CVAULT_KEY_FILE=str(loose_key))).returncode in (0, 3)
    phrase = tmp_path / "phrase.txt"
    phrase.write_text("a passphrase here\n")
    os.chmod(phrase, 0o644)
    env = {k: v for k, v in vd.env().items() if k != "CVAULT_KEY_FILE"}
    env["CVAULT_PASSPHRASE_FILE"] = str(phrase)
    proc = vd.cli("client", "list", env=env)
    _refused(proc, 8)
    assert "passphrase file" in proc.stderr and "accessible by other users" in proc.stderr
    tls_key = tmp_path / "server.key"
    tls_key.write_text("-----BEGIN PRIVATE KEY-----\n")
    os.chmod(tls_key, 0o644)
    cert = tmp_path / "server.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    proc = vd.cli("serve", "--port", "0", "--tls-cert", str(cert), "--tls-key", str(tls_key))
    _refused(proc, 8)
    assert "TLS private key" in proc.stderr


# --- 5. step-up and other people's failures -----------------------------------------------------------


def test_strangers_failures_in_the_hour_never_block_a_live_sessions_step_up(env):
    """100 failures in the last hour lock new logins (the rolling cap); bob's live session still
    steps up with his code: the guesses were not his session's."""
    v, clock, s = env
    bob = s.bob.login(v)
    uid = v.ctx.db.one("SELECT id FROM users WHERE name = 'bob'")[0]
    from vault.clock import to_epoch

    t = to_epoch(clock.now())
    with v.ctx.db.write() as conn:
        conn.executemany(
            "INSERT INTO auth_failures (user_id, at, kind) VALUES (?, ?, 'auth.login')", [(uid, t)] * 100
        )
    with pytest.raises(VaultLocked):
        s.bob.login(v)
    clock.advance(60)
    assert v.users.step_up(bob, s.bob.code(clock.now()))["user"] == "bob"
