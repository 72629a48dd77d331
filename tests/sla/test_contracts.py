"""SLA dates from the PSA (issue 18 item 3; docs/sla.md "Contract dates from the PSA"): ``sla
import`` with its dry-run diff, unknown clients listed and never created, an earlier end behaving
exactly like ``sla expire`` (access stops, the shred waits for the grace period and its minimum);
integrations' secrets sealed and shown once. Injected clock; the webhook over HTTPS is in
tests/server/test_contract_events.py."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.factories import sla_client, sla_staff
from tests.helpers import T0, clock_at, grep_tree
from vault.clock import rfc3339
from vault.errors import AccessDenied, ClientUnavailable, InvalidInput


@pytest.fixture
def world(vdir):
    v = vdir.open()
    with v.ctx.db.write() as conn:
        v.ctx.save_settings(conn, {"min_grace_days": 7})
    v.close()
    clock = clock_at(T0)
    vault = vdir.open(clock)
    people = sla_staff(vault)
    sla_client(vault, people.manager, "acme", days=30, grace_days=10, records=1, engineer=people.engineer)
    sla_client(vault, people.manager, "beta", days=400, grace_days=10, records=1, engineer=people.engineer)
    sla_client(vault, people.manager, "gamma", days=90, grace_days=10, engineer=people.engineer)
    yield vault, clock, people, vdir
    vault.close()


def _csv(*rows: str) -> list[str]:
    return ["client,contract_end,renewal", *rows]


def test_dry_run_shows_the_diff_and_changes_nothing(world):
    v, clock, people, _ = world
    lines = _csv("acme,2030-06-30,", "beta,2000-01-01,", "gamma,2000-01-01,2031-12-31", "initech,2030-01-01,")
    before = {n: v.ctx.client(n).sla_end for n in ("acme", "beta", "gamma")}
    dry = v.contracts.import_contracts(people.manager.principal(), lines, dry_run=True)
    changes = {r["client"]: r["change"] for r in dry["rows"]}
    assert changes == {"acme": "extend", "beta": "end", "gamma": "extend", "initech": "unknown_client"}
    assert dry["unknown_clients"] == ["initech"] and dry["applied"] == 0
    # a bare date is the end of that day in the vault's time zone; the renewal term wins
    assert next(r for r in dry["rows"] if r["client"] == "gamma")["new_sla_end"] == "2031-12-31T23:59:59Z"
    assert {n: v.ctx.client(n).sla_end for n in before} == before
    assert v.ctx.db.scalar("SELECT count(*) FROM clients WHERE name = 'initech'") == 0
    decision = v.ctx.db.one(
        "SELECT actor, outcome FROM audit_events WHERE action = 'sla.import' ORDER BY seq DESC LIMIT 1"
    )
    assert decision == ("maria", "allow")


def test_import_extends_shortens_and_ends_like_sla_expire(world):
    v, clock, people, _ = world
    assert v.secrets.get(people.engineer.principal(), "beta", "site/rec0").fields["text"]
    soon = rfc3339(clock.now() + timedelta(days=5))
    lines = _csv("acme,2030-06-30,", f"gamma,{soon},", "beta,2000-01-01,")
    result = v.contracts.import_contracts(people.manager.principal(), lines)
    assert result["applied"] == 3 and result["unknown_clients"] == []
    assert rfc3339(v.ctx.client("acme").sla_end) == "2030-06-30T23:59:59Z"
    assert rfc3339(v.ctx.client("gamma").sla_end) == soon  # shortened, still active
    beta = v.ctx.client("beta")
    assert beta.state(v.ctx.now()) == "expired" and beta.grace_days == 10
    # exactly like sla expire: access stops at once ...
    with pytest.raises(ClientUnavailable, match="client beta is expired"):
        v.secrets.get(people.engineer.principal(), "beta", "site/rec0")
    # ... each change audited as the operation it is
    actions = v.ctx.db.all(
        "SELECT action, client FROM audit_events WHERE outcome = 'ok'"
        " AND action IN ('sla.renew', 'sla.expire') ORDER BY seq"
    )
    assert actions[-3:] == [("sla.renew", "acme"), ("sla.renew", "gamma"), ("sla.expire", "beta")]
    # ... and the shred waits for the grace period: the sweep a day later shreds nothing
    clock.advance(days=1)
    from vault.principal import Principal

    swept = v.sla.sweep(Principal.system("sweep"))
    assert "beta" not in json.dumps(swept)
    # a second run changes nothing
    again = v.contracts.import_contracts(people.manager.principal(), lines)
    assert again["applied"] == 0 and set(again["counts"]) == {"unchanged"}


def test_an_ended_contract_never_shortens_the_grace_below_the_minimum(world):
    v, clock, people, _ = world
    sla_client(v, people.manager, "delta", days=30, grace_days=7, records=1, engineer=people.engineer)
    from vault.store import rowmac

    with v.ctx.db.write() as conn:  # a client made before the floor was raised
        rowmac.update(conn, "clients", "grace_days = ?", (0,), "name = ?", ("delta",))
    v.contracts.import_contracts(people.manager.principal(), _csv("delta,2000-01-01,"))
    assert v.ctx.client("delta").grace_days == 7  # sla expire's max(grace, minimum)


def test_a_bad_row_is_one_line_and_nothing_changes(world):
    v, clock, people, _ = world
    before = v.ctx.client("acme").sla_end
    for lines, expected in (
        (_csv("acme,2030-06-30,", "beta,not a date,"), "line 3 (beta)"),
        (_csv("acme,2030-06-30,", ",2030-01-01,"), "line 3 has no client"),
        (_csv("acme,2030-06-30,", "acme,2031-01-01,"), "client acme appears twice"),
        (["name,end"], "needs 'client' and 'contract_end'"),
        (['[{"client": "acme"}]'], "item 1 has no contract_end"),
        (["[1, 2"], "not valid JSON"),
        ([], "empty"),
    ):
        with pytest.raises(InvalidInput) as caught:
            v.contracts.import_contracts(people.manager.principal(), lines)
        assert expected in caught.value.message and "\n" not in caught.value.message
    assert v.ctx.client("acme").sla_end == before


def test_json_export_and_roles(world):
    v, clock, people, _ = world
    doc = json.dumps(
        [{"client": "acme", "contract_end": "2029-01-31"}, {"client": "zeta", "contract_end": "2029-01-31"}]
    )
    result = v.contracts.import_contracts(people.manager.principal(), doc.splitlines())
    assert result["unknown_clients"] == ["zeta"] and result["applied"] == 1
    with pytest.raises(AccessDenied):
        v.contracts.import_contracts(people.engineer.principal(), doc.splitlines(), dry_run=True)


def test_integration_secret_is_shown_once_and_stored_sealed(world):
    v, clock, people, vdir = world
    added = v.integrations.add(people.admin.principal(), "halopsa")
    secret = added["secret"]
    assert len(secret) == 64
    listed = v.integrations.list(people.admin.principal())
    assert listed == [
        {
            "name": "halopsa",
            "created_at": added["created_at"],
            "created_by": "ada",
            "last_event_at": None,
            "events": 0,
        }
    ]
    assert secret not in json.dumps(listed)
    with pytest.raises(InvalidInput, match="exists"):
        v.integrations.add(people.admin.principal(), "halopsa")
    with pytest.raises(AccessDenied):
        v.integrations.add(people.manager.principal(), "other")
    v.close()
    assert grep_tree(vdir.home, secret.encode()) == [] and grep_tree(vdir.home, bytes.fromhex(secret)) == []
    v2 = vdir.open(clock)
    try:
        v2.integrations.rm(people.admin.principal(v2), "halopsa")
        assert v2.integrations.list(people.admin.principal(v2)) == []
        assert v2.integrations.add(people.admin.principal(v2), "halopsa")["secret"] != secret
    finally:
        v2.close()


def test_cli_sla_import_dry_run_then_real(world, tmp_path):
    v, clock, people, vdir = world
    v.close()
    f = tmp_path / "contracts.csv"
    f.write_text("client,contract_end\nacme,2030-06-30\ninitech,2030-01-01\n", encoding="utf-8")
    env = vdir.env(CVAULT_SESSION_FILE=str(people.manager.session_file(tmp_path, vault=vdir)))
    dry = vdir.cli("sla", "import", str(f), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("dry run: nothing changed\n")
    assert "acme (line 2): would be renewed:" in dry.stdout
    assert "initech (line 3): unknown client (not created)" in dry.stdout
    assert "unknown clients: initech" in dry.stderr
    real = vdir.cli("sla", "import", str(f), "--json", env=env)
    data = json.loads(real.stdout)
    assert data["applied"] == 1 and data["unknown_clients"] == ["initech"]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"client,contract_end\nacme,\xff\n")
    out = vdir.cli("sla", "import", str(bad), env=env)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
