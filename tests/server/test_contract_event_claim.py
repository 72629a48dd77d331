"""webhookfix2 (found by webhookfix): ``IntegrationService.receive`` claimed a contract event's id
(``INSERT OR IGNORE INTO integration_events``, a transaction of its own) BEFORE it looked the
client up and applied the event. An event then refused for a reason that is not the event's own
(the client's row failed its MAC: a file writer's edit, 409 ``integrity_failure``; an unknown
client; a storage error) kept its claim, and the PSA's redelivery after the operator repaired
the row was "replayed" (409): the renewal was lost, the SLA could run out and the client be
shredded.

The fix: the id is claimed in the transaction that applies the event (``sla renew`` /
``sla expire`` run the claim first in theirs; an event that changes nothing claims in one of its
own), so a refused or failed event leaves no claim, and two deliveries of one id still cannot
both apply: the second finds the id claimed and its change rolls back. The first test runs
against a real ``cvault serve`` over loopback HTTPS (the file writer's edit and the operator's
repair with plain sqlite3 on the running service's file); the others in-process on a real
SQLite file with an injected clock. The first two tests fail with the claim put back before the
plan; ``test_two_deliveries_of_one_id_at_once_apply_once`` fails with the claim taken after the
change instead of in its transaction (its ``renew`` case)."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

import pytest

from tests.helpers import clock_at
from tests.server.test_webhook_flood import _denials, _event, _headers, _sign, world  # noqa: F401
from tests.server.test_webhook_integrity_alarm import _alarms, _tamper
from vault.clock import to_epoch
from vault.errors import NotFound, Replayed

PATH = "/v1/sla/contract-events"


def _query(home, sql: str, params: tuple = ()) -> list[tuple]:
    db = sqlite3.connect(home / "vault.db")
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def test_a_refused_event_is_applied_when_redelivered_after_the_row_is_repaired(world):  # noqa: F811
    service, vdir, secret = world
    (authentic,) = _query(vdir.home, "SELECT grace_days, mac FROM clients WHERE name = 'globex'")
    _tamper(vdir, "UPDATE clients SET grace_days = grace_days + 30 WHERE name = 'globex'")
    body = _event(700, "2031-03-31")
    headers = _headers(secret, body)  # one signed delivery, sent again as the PSA redelivers it

    def deliver():
        return service.client().request("POST", PATH, raw=body, headers=headers)

    status, reply = deliver()
    assert (status, reply["error"]["code"], reply["error"]["exit_code"]) == (409, "integrity_failure", 6)
    # the operator repairs the row: the authentic values (and their MAC) put back
    _tamper(
        vdir,
        f"UPDATE clients SET grace_days = {authentic[0]}, mac = x'{authentic[1].hex()}'"
        " WHERE name = 'globex'",
    )
    status, reply = deliver()
    assert status == 200 and reply["change"] == "extend", reply  # main: 409 replayed, lost
    assert reply["sla_end"] == "2031-03-31T23:59:59Z"
    status, reply = deliver()
    assert status == 409 and reply["error"]["code"] == "replayed", reply
    service.stop()
    renewed = _query(
        vdir.home, "SELECT actor FROM audit_events WHERE action = 'sla.renew' AND outcome = 'ok'"
    )
    assert renewed == [("integration:halopsa",)]
    reasons = [r for _, _, r in _denials(vdir)]
    assert "event evt-700: integrity failure: the client's row failed authentication" in reasons
    assert "event evt-700 replayed" in reasons
    assert any("a clients row" in a for a in _alarms(vdir))
    assert _query(vdir.home, "SELECT count(*) FROM integration_events WHERE event_id = 'evt-700'") == [(1,)]


@pytest.fixture
def psa(staff):
    """The staff vault at T0 (injected clock) with the integration halopsa: (vault, secret)."""
    v = staff.vdir.open(clock=clock_at())
    secret = v.integrations.add(staff.alice.principal(v), "halopsa")["secret"]
    yield v, secret, staff
    v.close()


def _signed(v, secret: str, event: dict) -> tuple[bytes, dict[str, str]]:
    """A delivery signed at the injected clock's time (lower-cased header names, as the service
    hands them to ``receive``)."""
    body = json.dumps(event).encode()
    stamp = str(to_epoch(v.ctx.now()))
    return body, {
        "x-cvault-integration": "halopsa",
        "x-cvault-timestamp": stamp,
        "x-cvault-signature": _sign(secret, body, stamp),
    }


def test_an_event_for_an_unknown_client_applies_once_the_client_is_added(psa):
    """An event for a client the vault does not have yet is 404 and claims nothing: once the
    account manager adds the client, the PSA's redelivery applies (main: 409 replayed)."""
    v, secret, staff = psa
    body, headers = _signed(v, secret, {"id": "evt-800", "client": "initech", "contract_end": "2031-03-31"})
    with pytest.raises(NotFound, match="no client named 'initech'"):
        v.integrations.receive(body, headers)
    v.clients.add(staff.amy.principal(v), "initech", sla_end=v.ctx.now() + timedelta(days=20))
    got = v.integrations.receive(body, headers)
    assert got["change"] == "extend" and got["sla_end"] == "2031-03-31T23:59:59Z", got
    with pytest.raises(Replayed):
        v.integrations.receive(body, headers)


@pytest.mark.parametrize("where", ["plan", "renew"])
def test_two_deliveries_of_one_id_at_once_apply_once(psa, where):
    """Two deliveries of one event on two connections (two pooled vaults, or two workers): the
    second runs in full while the first is between its replay check and its change (``plan``),
    or inside ``sla renew`` just before its transaction (``renew``). One applies, the other is
    409 replayed and its change rolled back: one ``sla.renew``, one claim."""
    v, secret, staff = psa
    v.clients.add(staff.amy.principal(v), "globex", sla_end=v.ctx.now() + timedelta(days=20))
    body, headers = _signed(v, secret, {"id": "evt-900", "client": "globex", "contract_end": "2031-03-31"})
    other = staff.vdir.open(clock=clock_at())
    answers: list[str] = []
    try:
        target = v.integrations.contracts if where == "plan" else v.integrations.contracts.sla
        inner = getattr(target, where)

        def meanwhile(*args, **kwargs):
            if not answers:
                answers.append(other.integrations.receive(body, headers)["change"])
            return inner(*args, **kwargs)

        setattr(target, where, meanwhile)
        with pytest.raises(Replayed, match="evt-900 was already received"):
            v.integrations.receive(body, headers)
    finally:
        other.close()
    assert answers == ["extend"]
    home = staff.vdir.home
    assert _query(
        home, "SELECT count(*) FROM audit_events WHERE action = 'sla.renew' AND outcome = 'ok'"
    ) == [(1,)]
    assert _query(
        home, "SELECT count(*) FROM audit_events WHERE action = 'sla.contract_event' AND outcome = 'ok'"
    ) == [(1,)]
    assert _query(home, "SELECT count(*) FROM integration_events WHERE event_id = 'evt-900'") == [(1,)]
    denied = _query(
        home, "SELECT reason FROM audit_events WHERE action = 'sla.contract_event' AND outcome = 'deny'"
    )
    assert denied == [("event evt-900 replayed",)]
