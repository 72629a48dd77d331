"""``POST /v1/sla/contract-events`` on a real ``cvault serve`` over loopback HTTPS (issue 18 item 3):
a valid signed event changes the SLA and is audited as the integration; a bad signature, an old
timestamp or an unknown integration is refused 401, a replayed id 409, each audited; an event that
ends the contract behaves like ``sla expire`` (reads refused at once, the shred waits). The
signature is computed here from docs/sla.md's description, independently of the server's code."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
from datetime import timedelta

import pytest

from tests.factories import person
from tests.helpers import copy_vault
from tests.server.harness import start_service
from vault import api_spec as spec

PATH = "/v1/sla/contract-events"


@pytest.fixture(scope="module")
def served(staff_template, tmp_path_factory):
    base = tmp_path_factory.mktemp("contract-events")
    vdir = copy_vault(staff_template.vdir, base)
    v = vdir.open()
    try:
        s = staff_template
        v.secrets.put(s.bob.principal(v), "acme", "fw", "note", {"text": "psa-secret"})
        v.clients.add(s.amy.principal(v), "globex", sla_end=v.ctx.now() + timedelta(days=20))
        secret = v.integrations.add(s.alice.principal(v), "halopsa")["secret"]
        other = person(v, "otto", "account_manager", real_password=True)
        tokens = {p.name: p.token(v) for p in (s.bob, s.alice, other)}
    finally:
        v.close()
    service = start_service(vdir, base / "service")
    yield service, vdir, secret, tokens
    service.stop()


def _sign(secret: str, body: bytes, stamp: str) -> str:
    """docs/sla.md: hex HMAC-SHA256 under the secret's 32 bytes, over "<timestamp>.<body>"."""
    return "v1=" + hmac.new(bytes.fromhex(secret), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _send(service, secret, event, *, stamp=None, integration="halopsa", signature=None, raw=None):
    body = raw if raw is not None else json.dumps(event).encode()
    stamp = stamp or str(int(time.time()))
    headers = {
        "X-Cvault-Integration": integration,
        "X-Cvault-Timestamp": stamp,
        "X-Cvault-Signature": signature or _sign(secret, body, stamp),
    }
    return service.client().request("POST", PATH, raw=body, headers=headers)


def _audit(vdir, outcome):
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        return db.execute(
            "SELECT actor, client, reason FROM audit_events"
            " WHERE action = 'sla.contract_event' AND outcome = ?",
            (outcome,),
        ).fetchall()
    finally:
        db.close()


def test_a_valid_event_extends_the_sla_and_is_audited_as_the_integration(served):
    service, vdir, secret, _ = served
    status, body = _send(service, secret, {"id": "evt-100", "client": "acme", "contract_end": "2031-03-31"})
    assert status == 200, body
    assert body["change"] == "extend" and body["sla_end"] == "2031-03-31T23:59:59Z"
    assert ("integration:halopsa", "acme") in [(a, c) for a, c, _ in _audit(vdir, "ok")]
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        renew = db.execute(
            "SELECT actor FROM audit_events WHERE action = 'sla.renew' AND outcome = 'ok' ORDER BY seq DESC"
        ).fetchone()
    finally:
        db.close()
    assert renew == ("integration:halopsa",)


def test_bad_signature_old_timestamp_unknown_integration_401_replay_409_all_audited(served):
    service, vdir, secret, _ = served
    event = {"id": "evt-200", "client": "acme", "contract_end": "2032-01-31"}
    wrong = "v1=" + "0" * 64
    status, body = _send(service, secret, event, signature=wrong)
    assert status == 401 and body["error"]["code"] == "authentication_failed", body
    # signed with another secret
    status, _ = _send(service, secret, event, signature=_sign("11" * 32, json.dumps(event).encode(), "1"))
    assert status == 401
    # the body changed after signing (a client swapped in)
    stamp = str(int(time.time()))
    sig = _sign(secret, json.dumps(event).encode(), stamp)
    status, _ = _send(service, secret, {**event, "client": "globex"}, stamp=stamp, signature=sig)
    assert status == 401
    # a valid signature over an old timestamp (a captured request replayed later)
    old = str(int(time.time()) - 3600)
    status, body = _send(service, secret, event, stamp=old)
    assert status == 401 and "timestamp" in body["error"]["message"]
    status, _ = _send(service, secret, event, integration="nobody")
    assert status == 401
    status, body = _send(service, secret, event)
    assert status == 200, body
    status, body = _send(service, secret, event)  # the same id again, fresh timestamp
    assert status == 409 and body["error"]["code"] == "replayed", body
    denied = [r for _, _, r in _audit(vdir, "deny")]
    assert denied.count("bad signature") >= 3
    assert any("timestamp outside" in r for r in denied)
    assert "unknown integration" in denied and "event evt-200 replayed" in denied
    assert secret not in json.dumps(_audit(vdir, "deny"))


def test_an_ended_contract_is_sla_expire_reads_stop_the_shred_waits(served):
    service, vdir, secret, tokens = served
    read = {"client_name": "acme", "path": "fw", "version": None}
    status, _ = service.client(tokens["bob"]).post(spec.BY_NAME["secrets.get"].path, read)
    assert status == 200
    status, body = _send(service, secret, {"id": "evt-300", "client": "acme", "contract_end": "2001-01-01"})
    assert status == 200 and body["change"] == "end" and body["state"] == "expired", body
    status, body = service.client(tokens["bob"]).post(spec.BY_NAME["secrets.get"].path, read)
    assert status == 409 and body["error"]["exit_code"] == 7, body
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        grace, shred = db.execute(
            "SELECT grace_days, shred_state FROM clients WHERE name = 'acme'"
        ).fetchone()
        expire = db.execute(
            "SELECT actor FROM audit_events WHERE action = 'sla.expire' AND outcome = 'ok'"
        ).fetchone()
    finally:
        db.close()
    assert shred is None and grace >= 30  # the shred waits for a grace period of at least the minimum
    assert expire == ("integration:halopsa",)


def test_an_unknown_client_is_404_and_a_malformed_event_400_never_5xx(served):
    service, vdir, secret, _ = served
    status, body = _send(
        service, secret, {"id": "evt-400", "client": "initech", "contract_end": "2030-01-01"}
    )
    assert status == 404, body
    for raw in (b"not json", b"[]", b'{"id": "a b"}', b'{"id": "evt-401", "client": "acme"}', b"\xff\xfe"):
        status, body = _send(service, secret, None, raw=raw)
        assert status in (400, 422), (raw, status, body)
    status, _ = service.client().request("POST", PATH, raw=b"{}", headers={})
    assert status == 401


def test_integrations_over_http_need_an_admin_and_show_no_secret(served):
    service, _, secret, tokens = served
    status, body = service.client(tokens["alice"]).post(spec.BY_NAME["integrations.list"].path, None)
    assert status == 200 and [i["name"] for i in body] == ["halopsa"] and secret not in json.dumps(body)
    status, _ = service.client(tokens["otto"]).post(spec.BY_NAME["integrations.add"].path, {"name": "cw"})
    assert status == 403
