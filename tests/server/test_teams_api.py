"""Teams over the HTTP API of a real ``cvault serve`` on loopback (issue 18 item 2): the team
operations of the registry, need-to-know through a team, a member removed refused at once, a
self-add refused (403) and audited, who-can-reach-what showing the team path."""

from __future__ import annotations

import sqlite3

import pytest

from tests.factories import person
from tests.helpers import copy_vault
from tests.server.harness import start_service
from vault import api_spec as spec


@pytest.fixture(scope="module")
def served(staff_template, tmp_path_factory):
    base = tmp_path_factory.mktemp("teams-api")
    vdir = copy_vault(staff_template.vdir, base)
    v = vdir.open()
    try:
        s = staff_template
        dana = person(v, "dana", "account_manager", "engineer", real_password=True)
        v.secrets.put(s.bob.principal(v), "acme", "fw", "note", {"text": "t3am-secret"})
        tokens = {p.name: p.token(v) for p in (s.amy, s.carl, s.rita, dana)}
    finally:
        v.close()
    service = start_service(vdir, base / "service")
    yield service, vdir, tokens
    service.stop()


def _post(service, token, op, body):
    return service.client(token).post(spec.BY_NAME[op].path, body)


def _audit(vdir, action, outcome):
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        return db.execute(
            "SELECT actor, reason FROM audit_events WHERE action = ? AND outcome = ?", (action, outcome)
        ).fetchall()
    finally:
        db.close()


def test_teams_over_http(served):
    service, vdir, tokens = served
    read = {"client_name": "acme", "path": "fw", "version": None}
    status, body = _post(service, tokens["amy"], "teams.add", {"name": "desk", "description": "service desk"})
    assert status == 200 and body["name"] == "desk", body
    status, body = _post(service, tokens["amy"], "teams.member_add", {"team": "desk", "user_name": "carl"})
    assert status == 200 and body["clients"] == []
    status, body = _post(service, tokens["carl"], "secrets.get", read)
    assert status == 403  # a team that reaches no client gives nothing
    status, body = _post(service, tokens["amy"], "teams.assign", {"client_name": "acme", "team": "desk"})
    assert status == 200 and body["members"] == ["carl"], body
    status, body = _post(service, tokens["carl"], "secrets.get", read)
    assert status == 200 and body["fields"]["text"] == "t3am-secret", body
    status, body = _post(service, tokens["rita"], "access.client_access", {"client_name": "acme"})
    carl = next(r for r in body["users"] if r["user"] == "carl")
    assert carl["via"] == "team desk" and carl["teams"][0]["member"] is True
    status, body = _post(service, tokens["rita"], "teams.show", {"name": "desk"})
    assert status == 200 and [c["client"] for c in body["clients"]] == ["acme"]

    # nobody adds themselves to a team that reaches a client
    status, body = _post(service, tokens["dana"], "teams.member_add", {"team": "desk", "user_name": "dana"})
    assert status == 403 and body["error"]["exit_code"] == 4
    assert any("add themselves" in r[1] for r in _audit(vdir, "team.member_add", "deny"))

    # removed: refused at once, on the same token
    status, _ = _post(service, tokens["amy"], "teams.member_rm", {"team": "desk", "user_name": "carl"})
    assert status == 200
    status, body = _post(service, tokens["carl"], "secrets.get", read)
    assert status == 403 and "no longer a member of team desk" in body["error"]["message"]
    assert _audit(vdir, "team.member_rm", "ok") and _audit(vdir, "client.assign_team", "ok")
