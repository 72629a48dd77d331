"""Teams (issue 18 item 2; docs/identity.md "Teams"): need-to-know through a team still needs each
person's own training and the SLA, is refused at once when the member leaves, the training lapses
or the team assignment ends, shows up in who-can-reach-what and the reviewer report, and follows
separation of duties (nobody adds themselves, a member does not assign their own team, the lineage
rule of issue 11). Injected clock; every decision is read back from the audit log."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.factories import onboard, person
from tests.helpers import clock_at
from vault.errors import AccessDenied, ClientUnavailable, InvalidInput, NotFound


@pytest.fixture
def env(staff):
    """acme with one record; carl (engineer, trained, not assigned directly) in team noc, which
    amy assigned to acme."""
    clock = clock_at()
    v = staff.vdir.open(clock=clock)
    v.secrets.put(staff.bob.principal(v), "acme", "office/firewall", "note", {"text": "s3cret"})
    amy = staff.amy.principal(v)
    v.teams.add(amy, "noc", description="network operations")
    v.teams.member_add(amy, "noc", "carl")
    v.teams.assign(amy, "acme", "noc")
    yield v, clock, staff
    v.close()


def _read(v, who):
    return v.secrets.get(who.principal(v), "acme", "office/firewall").fields["text"]


def _last(v, action):
    return v.ctx.db.one(
        "SELECT actor, outcome, reason, client FROM audit_events WHERE action = ? ORDER BY seq DESC LIMIT 1",
        (action,),
    )


def _refused(v, who, text, exc=AccessDenied):
    with pytest.raises(exc) as info:
        _read(v, who)
    assert text in info.value.message, info.value.message
    actor, outcome, reason, _ = _last(v, "secret.get")
    assert (actor, outcome) == (who.name, "deny") and text in reason


def test_a_team_member_reads_through_the_team_and_the_decision_names_the_path(env):
    v, _, s = env
    assert _read(v, s.carl) == "s3cret"
    actor, outcome, reason, client = _last(v, "secret.get")
    assert (actor, outcome, client) == ("carl", "allow", "acme")
    assert "through team noc" in reason


def test_a_member_who_left_the_team_is_refused_at_once(env):
    v, _, s = env
    session = s.carl.principal(v)  # a live session from before the removal
    v.teams.member_rm(s.amy.principal(v), "noc", "carl")
    with pytest.raises(AccessDenied, match="carl is no longer a member of team noc"):
        v.secrets.get(session, "acme", "office/firewall")
    _refused(v, s.carl, "carl is no longer a member of team noc")
    assert _last(v, "team.member_rm")[:3] == ("amy", "ok", "carl removed from team noc")


def test_a_member_whose_training_lapsed_is_refused_at_once(env):
    v, clock, s = env
    v.users.train(s.alice.principal(v), "carl", clock.now() + timedelta(hours=1))
    assert _read(v, s.carl) == "s3cret"
    clock.advance(hours=1)
    _refused(v, s.carl, "carl's data-handling training expired")


def test_the_sla_still_applies_through_a_team(env):
    v, clock, s = env
    clock.advance(days=366)
    _refused(v, s.carl, "client acme is expired", ClientUnavailable)


def test_an_ended_team_assignment_is_refused(env):
    v, clock, s = env
    v.teams.assign(s.amy.principal(v), "acme", "noc", until=clock.now() + timedelta(days=2))
    assert _read(v, s.carl) == "s3cret"
    clock.advance(days=2)
    _refused(v, s.carl, "team noc's assignment to acme has ended")
    # and ended by hand
    v.teams.assign(s.amy.principal(v), "acme", "noc")
    assert _read(v, s.carl) == "s3cret"
    v.teams.unassign(s.amy.principal(v), "acme", "noc")
    _refused(v, s.carl, "team noc's assignment to acme has ended")
    assert _last(v, "client.unassign_team")[:2] == ("amy", "ok")


def test_a_removed_team_gives_nothing(env):
    v, _, s = env
    removed = v.teams.rm(s.amy.principal(v), "noc")
    assert removed["clients_ended"] == ["acme"]
    _refused(v, s.carl, "carl is no longer a member of team noc")
    assert v.teams.list(s.rita.principal(v)) == []


def test_an_engineer_sees_the_team_clients_in_client_list(env):
    v, _, s = env
    assert [c["name"] for c in v.clients.list(s.carl.principal(v))] == ["acme"]
    v.teams.member_rm(s.amy.principal(v), "noc", "carl")
    assert v.clients.list(s.carl.principal(v)) == []


def test_nobody_adds_themselves_to_a_team(env):
    v, _, s = env
    # an account manager who is also an engineer: the one person who could gain need-to-know
    dana = person(v, "dana", "account_manager", "engineer")
    with pytest.raises(AccessDenied, match="dana cannot add themselves to a team"):
        v.teams.member_add(dana.principal(v), "noc", "dana")
    actor, outcome, reason, _ = _last(v, "team.member_add")
    assert (actor, outcome) == ("dana", "deny") and "add themselves" in reason
    v.teams.member_add(s.amy.principal(v), "noc", "dana")  # another person may
    # a member may not assign their own team to another client
    v.clients.add(s.amy.principal(v), "globex", sla_end=v.ctx.now() + timedelta(days=30))
    with pytest.raises(AccessDenied, match="dana cannot assign a team they are a member of"):
        v.teams.assign(dana.principal(v), "globex", "noc")
    assert _last(v, "client.assign_team")[:2] == ("dana", "deny")


def test_the_lineage_rule_applies_to_team_membership_and_team_assignment(env):
    """issue 11, rule 2: whoever requested or approved an account may not vouch for it, and adding
    it to a team (or assigning its team) is vouching for it, like a direct assignment."""
    v, _, s = env
    onboard(v, "mallory", ["engineer"], requester=s.alice, approver=s.ada)
    for actor in (s.alice, s.ada):
        with pytest.raises(AccessDenied, match="requested or approved mallory's account"):
            v.teams.member_add(actor.principal(v), "noc", "mallory")
    v.teams.member_add(s.amy.principal(v), "noc", "mallory")  # a third person may
    with pytest.raises(AccessDenied, match="requested or approved mallory's account"):
        v.teams.assign(s.ada.principal(v), "acme", "noc")
    denied = v.ctx.db.all(
        "SELECT actor FROM audit_events WHERE action = 'team.member_add' AND outcome = 'deny' ORDER BY seq"
    )
    assert [r[0] for r in denied] == ["alice", "ada"]


def test_only_engineers_join_and_unknown_names_are_one_line(env):
    v, _, s = env
    amy = s.amy.principal(v)
    with pytest.raises(InvalidInput, match="rita is not an engineer"):
        v.teams.member_add(amy, "noc", "rita")
    with pytest.raises(NotFound, match="no team named 'ops'"):
        v.teams.member_add(amy, "ops", "carl")
    with pytest.raises(InvalidInput, match="already a member"):
        v.teams.member_add(amy, "noc", "carl")
    with pytest.raises(InvalidInput, match="invalid team name"):
        v.teams.add(amy, "NOC\n")
    with pytest.raises(InvalidInput, match="already exists"):
        v.teams.add(amy, "noc")
    with pytest.raises(AccessDenied):  # engineers do not manage teams
        v.teams.add(s.carl.principal(v), "mine")


def test_who_can_reach_what_shows_team_paths(env):
    v, clock, s = env
    rita = s.rita.principal(v)
    rows = {r["user"]: r for r in v.access.client_access(rita, "acme")["users"]}
    assert rows["carl"]["can_read"] and rows["carl"]["via"] == "team noc"
    assert rows["carl"]["assignment"] is None
    [path] = rows["carl"]["teams"]
    assert (path["team"], path["member"], path["ended"], path["by"]) == ("noc", True, False, "amy")
    assert rows["bob"]["via"] == "direct" and rows["bob"]["teams"] == []
    user = v.access.user_access(rita, "carl")
    assert user["can_read"] == ["acme"] and user["clients"][0]["via"] == "team noc"
    v.teams.member_rm(s.amy.principal(v), "noc", "carl")
    row = next(r for r in v.access.client_access(rita, "acme")["users"] if r["user"] == "carl")
    assert not row["can_read"] and row["via"] is None
    assert row["teams"][0]["member"] is False and row["teams"][0]["left_at"] is not None
    assert "no longer a member of team noc" in row["reason"]


def test_team_show_list_and_memberships(env):
    v, _, s = env
    amy = s.amy.principal(v)
    v.teams.member_add(amy, "noc", "bob")
    v.teams.member_rm(amy, "noc", "bob")
    shown = v.teams.show(s.rita.principal(v), "noc")
    assert [m["user"] for m in shown["members"]] == ["carl"]
    assert [m["user"] for m in shown["former_members"]] == ["bob"]
    assert [(c["client"], c["ended"]) for c in shown["clients"]] == [("acme", False)]
    assert v.teams.list(amy) == [
        {
            "name": "noc",
            "description": "network operations",
            "created_at": shown["created_at"],
            "members": ["carl"],
            "clients": ["acme"],
        }
    ]
    assert v.teams.memberships(s.alice.principal(v), "carl") == [
        {"team": "noc", "since": shown["members"][0]["since"], "clients": ["acme"]}
    ]


def test_the_reviewer_report_lists_team_changes_and_refusals_after_leaving(env):
    v, clock, s = env
    assert _read(v, s.carl) == "s3cret"
    v.teams.member_rm(s.amy.principal(v), "noc", "carl")
    with pytest.raises(AccessDenied):
        _read(v, s.carl)
    report = v.audit.report(s.rita.principal(v), since=clock.now() - timedelta(days=1))
    changes = {(c["action"], c["outcome"]) for c in report["admin_changes"]}
    assert {("team.add", "ok"), ("team.member_add", "ok"), ("client.assign_team", "ok")} <= changes
    assert ("team.member_rm", "ok") in changes
    after = report["after_assignment_ended"]
    assert any(e["actor"] == "carl" and "no longer a member" in e["reason"] for e in after)


def test_cli_teams_end_to_end(staff, tmp_path):
    """The commands as a person types them (real subprocesses): team add, member add, client
    assign --team, the team member reads, client access shows the path, self-add refused (exit 4)."""
    vdir = staff.vdir
    amy = staff.amy.session_file(tmp_path, vault=vdir)
    carl = staff.carl.session_file(tmp_path, vault=vdir)
    rita = staff.rita.session_file(tmp_path, vault=vdir)

    def run(session, *args, **kw):
        return vdir.cli(*args, env=vdir.env(CVAULT_SESSION_FILE=str(session)), **kw)

    bob = staff.bob.session_file(tmp_path, vault=vdir)
    assert (
        run(bob, "secret", "put", "acme", "fw", "--type", "note", "--from-stdin", input="v4lue\n").returncode
        == 0
    )
    assert run(amy, "team", "add", "noc", "--description", "network ops").returncode == 0
    added = run(amy, "team", "member", "add", "noc", "carl")
    assert added.returncode == 0 and added.stdout == "carl added to team noc\n"
    assigned = run(amy, "client", "assign", "acme", "--team", "noc", "--until", "+30d")
    assert assigned.returncode == 0 and assigned.stdout.startswith("team noc assigned to acme until ")
    got = run(carl, "secret", "get", "acme", "fw", "--field", "text")
    assert got.returncode == 0 and got.stdout == "v4lue\n", got.stderr
    access = run(rita, "client", "access", "acme", "--json")
    row = next(r for r in json.loads(access.stdout)["users"] if r["user"] == "carl")
    assert row["via"] == "team noc" and row["teams"][0]["team"] == "noc"
    human = run(rita, "client", "access", "acme")
    assert "noc (until" in human.stdout
    shown = json.loads(run(rita, "team", "show", "noc", "--json").stdout)
    assert [m["user"] for m in shown["members"]] == ["carl"]
    both = run(amy, "client", "assign", "acme", "carl", "--team", "noc")
    assert both.returncode == 2 and both.stderr.count("\n") == 1
    removed = run(amy, "team", "member", "rm", "noc", "carl")
    assert removed.returncode == 0
    refused = run(carl, "secret", "get", "acme", "fw", "--field", "text")
    assert refused.returncode == 4 and "no longer a member of team noc" in refused.stderr
    assert "Traceback" not in refused.stderr
