"""Separation of duties (issue 11) through the HTTP API of a real ``cvault serve`` on loopback:
the attacks of tests/identity/test_insider_attacks_cli.py replayed over HTTPS, each refused with its
documented status and audited; six simultaneous logins; a stranger's failed logins; unseal junk.

"Another machine" is another loopback source address (127.0.0.2)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from tests.factories import person
from tests.helpers import copy_vault
from tests.server.harness import start_service
from vault import api_spec as spec


def _path(name: str) -> str:
    return spec.BY_NAME[name].path


@pytest.fixture(scope="module")
def served(staff_template, tmp_path_factory):
    base = tmp_path_factory.mktemp("sod-api")
    vdir = copy_vault(staff_template.vdir, base)
    v = vdir.open()
    try:
        racers = [person(v, f"racer{i}", "engineer", real_password=True) for i in range(6)]
        s = staff_template
        tokens = {p.name: p.token(v) for p in (s.alice, s.ada, s.amy, s.carl)}
    finally:
        v.close()
    service = start_service(vdir, base / "service")
    yield service, vdir, tokens, racers, staff_template
    service.stop()


def _audit(vdir, action, outcome):
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        return db.execute(
            "SELECT actor, reason FROM audit_events WHERE action = ? AND outcome = ?", (action, outcome)
        ).fetchall()
    finally:
        db.close()


def _post(service, token, op, body):
    return service.client(token).post(_path(op), body)


def test_sock_puppet_over_http(served):
    service, vdir, tokens, _, _ = served
    status, added = _post(service, tokens["alice"], "users.add", {"name": "mallory", "roles": ["engineer"]})
    assert status == 200 and added["state"] == "pending_approval" and "enrollment_code" not in added
    status, body = _post(service, tokens["alice"], "users.approve", {"name": "mallory"})
    assert status == 403 and body["error"]["code"] == "access_denied" and body["error"]["exit_code"] == 4
    status, body = _post(
        service,
        None,
        "users.enroll",
        {"name": "mallory", "code": "0000-0000-0000", "password": "mallory-pass-12"},
    )
    assert status == 401
    for op, args in (
        ("users.train", {"name": "mallory", "until": "+365d"}),
        ("access.assign", {"client_name": "acme", "user_name": "mallory"}),
    ):
        status, body = _post(service, tokens["alice"], op, args)
        assert status == 403, (op, body)
    assert _audit(vdir, "user.approve", "deny")
    assert any("mallory" in r[1] for r in _audit(vdir, "client.assign", "deny"))
    assert any("mallory" in r[1] for r in _audit(vdir, "user.train", "deny"))


def test_reset_takeover_over_http(served):
    service, vdir, tokens, _, staff = served
    status, reset = _post(service, tokens["alice"], "users.reset_totp", {"name": "carl"})
    assert status == 200 and reset["needs_current_password"]
    status, body = _post(
        service,
        None,
        "users.enroll",
        {"name": "carl", "code": reset["enrollment_code"], "password": "alices-own-choice"},
    )
    assert status == 401 and body["error"]["exit_code"] == 3
    assert any("wrong current password" in r[1] for r in _audit(vdir, "auth.enroll", "deny"))
    status, body = _post(service, tokens["alice"], "users.reset", {"name": "carl"})
    assert status == 200 and body["state"] == "pending_approval"
    status, body = _post(service, tokens["alice"], "users.approve", {"name": "carl"})
    assert status == 403


def test_instant_shred_over_http(served):
    service, vdir, tokens, _, _ = served
    status, body = _post(
        service, tokens["amy"], "sla.renew", {"name": "acme", "until": "+365d", "grace_days": 0}
    )
    assert status == 400 and body["error"]["exit_code"] == 2 and "minimum" in body["error"]["message"]
    assert _post(service, tokens["amy"], "sla.expire", {"name": "acme", "reason": "ended"})[0] == 200
    status, swept = _post(service, tokens["amy"], "sla.sweep", {})
    assert status == 200
    assert _post(service, tokens["amy"], "sla.request_shred", {"name": "acme", "reason": "now"})[0] == 200
    status, body = _post(service, tokens["amy"], "sla.approve_shred", {"name": "acme"})
    assert status == 403
    status, view = _post(service, tokens["amy"], "sla.show", {"name": "acme"})
    assert view["state"] == "expired" and view["grace_days"] == 30
    assert _audit(vdir, "sla.renew", "deny") and _audit(vdir, "sla.approve_shred", "deny")


def test_six_simultaneous_logins_all_succeed(served):
    service, _, _, racers, _ = served
    answers: list[int] = []
    barrier = threading.Barrier(len(racers))

    def login(p):
        client = service.client()
        barrier.wait()
        status, _ = client.post(
            _path("users.login"), {"name": p.name, "password": p.password, "totp": p.code()}
        )
        answers.append(status)
        client.close()

    threads = [threading.Thread(target=login, args=(p,)) for p in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert answers == [200] * len(racers)


def test_strangers_failed_logins_leave_bobs_session_working(served):
    service, vdir, _, _, staff = served
    bob = staff.bob
    status, login = service.client().post(
        _path("users.login"), {"name": "bob", "password": bob.password, "totp": bob.code()}
    )
    assert status == 200
    stranger = service.client(source="127.0.0.2")
    statuses = [
        stranger.post(
            _path("users.login"), {"name": "bob", "password": "guess-guess-guess", "totp": "123456"}
        )[0]
        for _ in range(7)
    ]
    assert set(statuses) <= {401, 423, 429} and 401 in statuses
    owner = service.client(login["token"])
    assert owner.post(_path("users.whoami"))[0] == 200  # (acme may be expired by another test here)
    status, listing = owner.post(_path("clients.list"))
    assert status == 200 and [c["name"] for c in listing] == ["acme"]
    assert _audit(vdir, "auth.login", "deny")


def test_unseal_junk_from_elsewhere_never_locks_the_operator(tmp_path):
    from tests.helpers import VaultDir
    from vault.facade import Vault

    home = tmp_path / "vault"
    v, _ = Vault.init(
        home,
        passphrase="operator passphrase 1",
        key_file=tmp_path / "vault.key",
        kdf_params={"memory_kib": 65536, "iterations": 1, "lanes": 4},
    )
    v.close()
    service = start_service(VaultDir(home, tmp_path / "vault.key"), tmp_path / "svc", unsealed=False)
    try:
        junk = service.client(source="127.0.0.2")
        statuses = [junk.post("/v1/sys/unseal", {"passphrase": f"junk {n}"})[0] for n in range(25)]
        assert set(statuses) <= {401, 423, 429}, statuses
        status, body = service.client().post("/v1/sys/unseal", {"passphrase": "operator passphrase 1"})
        assert (status, body) == (200, {"sealed": False})
    finally:
        service.stop()
    assert len(_audit(VaultDir(home, tmp_path / "vault.key"), "service.unseal", "deny")) >= 5
