"""Service mode (issue 7, docs/spec.md §11): a real ``cvault serve`` subprocess on loopback HTTPS.

Auth (401 codes), the error shape, body and rate limits, bad input never reaching a 500, the seal
and the operator's unseal, bind refusals, background jobs, and many concurrent clients (one audit
decision per request, no lost update, the chain still verifies).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from datetime import timedelta

import pytest

from tests.factories import assign, edit_rows, person
from tests.helpers import make_vault, run_cli
from tests.server.harness import assert_error_shape, start_service
from vault import api_spec as spec


@pytest.fixture(scope="module")
def svc_template(tmp_path_factory):
    return make_vault(tmp_path_factory.mktemp("svc"), with_operator=False)


@pytest.fixture
def world(svc_template, tmp_path):
    """A vault with a manager, two engineers (eve assigned to acme), a reviewer and an admin;
    ``tokens`` maps names to live bearer tokens."""
    from tests.helpers import copy_vault

    vdir = copy_vault(svc_template, tmp_path)
    v = vdir.open()
    ids = {
        "maria": person(v, "maria", "account_manager"),
        "eve": person(v, "eve", "engineer"),
        "carl": person(v, "carl", "engineer"),
        "rita": person(v, "rita", "security_reviewer"),
        "ada": person(v, "ada", "admin"),
    }
    tokens = {name: who.token(v) for name, who in ids.items()}
    from vault.principal import Principal

    maria = v.users.resume(tokens["maria"])
    v.clients.add(maria, "acme", sla_end=v.ctx.now() + timedelta(days=365))
    v.clients.add(maria, "globex", sla_end=v.ctx.now() + timedelta(days=365))
    assign(v, ids["eve"], "acme")
    eve = v.users.resume(tokens["eve"])
    v.secrets.put(eve, "acme", "office/firewall", "access", {"password": "pw-0", "host": "fw"})
    assert isinstance(eve, Principal)
    v.close()
    return vdir, ids, tokens


@pytest.fixture
def served(world, tmp_path):
    vdir, ids, tokens = world
    service = start_service(vdir, tmp_path / "service")
    yield service, vdir, ids, tokens
    service.stop()


def test_openapi_lists_every_operation_with_the_error_shape(served):
    service, *_ = served
    status, doc = service.client().get("/openapi.json")
    assert status == 200
    for op in spec.OPERATIONS:
        entry = doc["paths"][op.path]["post"]
        assert entry["operationId"] == op.operation_id
        for status_code in ("400", "401", "413", "422", "429", "500", "503"):
            ref = entry["responses"][status_code]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorBody")


# --- authentication ---------------------------------------------------------------------------------


def test_tokens_refused_401(served, svc_template, tmp_path):
    service, vdir, ids, tokens = served
    ok, body = service.client(tokens["eve"]).post("/v1/clients/list")
    assert ok == 200 and [c["name"] for c in body] == ["acme"]
    # a token of another vault (valid there)
    from tests.helpers import copy_vault

    other = copy_vault(svc_template, tmp_path / "other")
    v = other.open()
    foreign = person(v, "eve", "engineer").token(v)
    v.close()
    # an expired token (absolute 8 h limit passed) and a disabled user's token
    v = vdir.open()
    expired = ids["carl"].token(v)
    edit_rows(v, "sessions", "created_at = created_at - 9 * 3600", (), "user_id = ?", (ids["carl"].user_id,))
    v.users.disable(v.users.resume(tokens["ada"]), "maria")
    v.close()
    for token in (foreign, expired, tokens["maria"], "cvs1_" + "A" * 43, "garbage", ""):
        status, body = service.client(token).post("/v1/clients/list")
        assert status == 401, (token, body)
        assert assert_error_shape(body, "authentication_failed")["exit_code"] == 3
    status, body = service.client().post("/v1/clients/list")  # no Authorization header at all
    assert status == 401 and assert_error_shape(body, "authentication_failed")


# --- error shape, limits, bad input ----------------------------------------------------------------


def _raw(service, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=str(service.ca.ca_path))
    with (
        socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock,
        ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(head + body)
        resp = http.client.HTTPResponse(tls)
        resp.begin()
        return resp.status, json.loads(resp.read())


def test_body_limit_413(served):
    service, _, _, tokens = served
    # a declared Content-Length over 2 MiB from a client waiting for 100 Continue: refused before
    # anything is read (a client that sends at once is read first: tests/server/test_http_edges.py)
    head = (
        f"POST /v1/secrets/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {tokens['eve']}\r\nContent-Length: {3 * 1024 * 1024}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    status, body = _raw(service, head)
    assert status == 413 and assert_error_shape(body, "request_too_large")["exit_code"] == 2
    # a chunked body that grows past 2 MiB: counted as it arrives
    chunk = b"x" * (256 * 1024)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10)) + b"0\r\n\r\n"
    head = (
        f"POST /v1/secrets/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {tokens['eve']}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    status, body = _raw(service, head, chunks)
    assert status == 413 and assert_error_shape(body, "request_too_large")
    # just under the limit is read (and then refused for what it is, not for its size)
    big = {
        "client_name": "acme",
        "path": "big/note",
        "kind": "note",
        "fields": {"text": "y" * (2 * 1024 * 1024 - 200)},
    }
    status, body = service.client(tokens["eve"]).post("/v1/secrets/put", big)
    assert status == 400 and assert_error_shape(body, "invalid_input")  # the 1 MiB record limit


HOSTILE = [
    ("/v1/secrets/get", {"client_name": "acme", "path": "office/firewall", "version": 10**30}),
    ("/v1/secrets/get", {"client_name": "acme", "path": "office/firewall", "version": "1; drop"}),
    ("/v1/secrets/get", {"client_name": "acme\ud800", "path": "x"}),
    ("/v1/secrets/get", {"client_name": 5, "path": None}),
    ("/v1/secrets/get", {"client_name": "acme", "path": "office/firewall", "extra": 1}),
    ("/v1/secrets/get", ["not", "an", "object"]),
    ("/v1/secrets/get", "just a string"),
    ("/v1/secrets/get", None),
    ("/v1/secrets/put", {"client_name": "acme", "path": "a/b", "kind": "note", "fields": {"text": "\udfff"}}),
    ("/v1/secrets/put", {"client_name": "acme", "path": "a/b", "kind": "nope", "fields": {}}),
    (
        "/v1/secrets/put",
        {"client_name": "acme", "path": "../../etc", "kind": "note", "fields": {"text": "x"}},
    ),
    (
        "/v1/secrets/put",
        {"client_name": "acme", "path": "a/b", "kind": "access", "fields": {"port": 10**40, "password": "x"}},
    ),
    (
        "/v1/secrets/put",
        {
            "client_name": "acme",
            "path": "a/b",
            "kind": "network",
            "fields": {"addresses": ["300.1.1.1/99"], "wifi_key": [[[]]]},
        },
    ),
    ("/v1/secrets/import-records", {"client_name": "acme", "lines": ["[" * 5000 + "]" * 5000]}),
    ("/v1/secrets/import-records", {"client_name": "acme", "lines": ['{"path": 1}', "nan"]}),
    ("/v1/clients/add", {"name": "new", "sla_end": "+999999w"}),
    ("/v1/clients/add", {"name": "new", "sla_end": "9999-12-31T23:59:59", "grace_days": 3650}),
    ("/v1/clients/add", {"name": "new\x00", "sla_end": "tomorrow"}),
    ("/v1/clients/add", {"name": "x" * 5000, "sla_end": "+1d"}),
    ("/v1/sla/upcoming", {"within": "999999w"}),
    ("/v1/sla/renew", {"name": "acme", "until": "0001-01-01"}),
    ("/v1/audit/log", {"since": "-999999w", "limit": -1}),
    ("/v1/audit/log", {"since": "+999999w"}),
    ("/v1/audit/export-lines", {"format": "xml"}),
    ("/v1/users/add", {"name": "bob", "roles": ["god"]}),
    ("/v1/users/login", {"name": "\ud800", "password": "x", "totp": "123456"}),
    ("/v1/users/train", {"name": "eve", "until": "2026-02-30"}),
    ("/v1/sync/configure", {"settings": {"tenant_id": []}}),
    ("/v1/sync/push", {"workers": 0}),
]


def test_bad_input_never_reaches_a_500(served):
    service, _, _, tokens = served
    admin_like = {
        "/v1/clients/add": "maria",
        "/v1/sla/upcoming": "maria",
        "/v1/sla/renew": "maria",
        "/v1/audit/log": "rita",
        "/v1/audit/export-lines": "rita",
        "/v1/users/add": "ada",
        "/v1/users/train": "ada",
        "/v1/sync/configure": "ada",
        "/v1/sync/push": "ada",
    }
    for path, body in HOSTILE:
        client = service.client(tokens[admin_like.get(path, "eve")])
        status, answer = client.request("POST", path, raw=json.dumps(body).encode())
        assert status < 500, (path, body, status, answer)
        if status >= 400:
            assert_error_shape(answer)
    # a far-future SLA end was accepted above: the views computing from it must not break
    status, answer = service.client(tokens["maria"]).post("/v1/sla/show", {"name": "new"})
    assert status < 500, answer
    for raw in (b"{", b"\xff\xfe", b'{"client_name": "acme", "path": "a"' + b" " * 10, b"[" * 100_000):
        status, answer = service.client(tokens["eve"]).request("POST", "/v1/secrets/get", raw=raw)
        assert status in (400, 422), (raw[:20], status, answer)
        assert_error_shape(answer)
    status, answer = service.client(tokens["eve"]).request("GET", "/v1/secrets/get")
    assert status == 405 and assert_error_shape(answer, "method_not_allowed")
    status, answer = service.client().post("/v1/nothing/here", {})
    assert status == 404 and assert_error_shape(answer, "unknown_endpoint")
    assert "internal error" not in service.log()


def test_login_rate_limits(world, tmp_path):
    vdir, *_ = world
    service = start_service(vdir, tmp_path / "svc", "--login-burst", "3", "--login-per-minute", "1")
    try:
        client = service.client()
        answers = [
            client.post(
                "/v1/users/login", {"name": f"nobody{i}", "password": "wrong-password!", "totp": "123456"}
            )
            for i in range(4)
        ]
        assert [s for s, _ in answers[:3]] == [401, 401, 401]
        status, body = answers[3]
        assert status == 429 and assert_error_shape(body, "rate_limited")["exit_code"] == 8
    finally:
        service.stop()
    # per user name (whatever the address): 5 at once by default
    service = start_service(vdir, tmp_path / "svc2", "--login-burst", "100")
    try:
        statuses = [
            service.client().post(
                "/v1/users/login", {"name": "eve", "password": "wrong-password!", "totp": "123456"}
            )[0]
            for _ in range(6)
        ]
        assert statuses[-1] == 429 and 429 not in statuses[:5]
    finally:
        service.stop()


# --- sealed service, operator unseal ------------------------------------------------------------------


def test_sealed_until_the_operator_unseals(world, tmp_path):
    vdir, _, tokens = world
    v = vdir.open()
    v.slots.add_slot(
        "passphrase",
        b"operator passphrase",
        label="passphrase",
        kdf_params={"memory_kib": 65536, "iterations": 1, "lanes": 4},
    )
    v.close()
    service = start_service(vdir, tmp_path / "svc", unsealed=False)
    try:
        assert service.client().get("/v1/health") == (200, {"status": "ok", "sealed": True})
        for op in spec.OPERATIONS:
            status, body = service.client(tokens["eve"]).post(op.path, {})
            assert status in (503, 422), (op.path, status, body)
            if status == 503:
                assert assert_error_shape(body, "vault_sealed")["exit_code"] == 8
        env = {
            "CVAULT_ADDR": service.addr,
            "CVAULT_CACERT": str(service.ca.ca_path),
            "PYTHONPATH": str(vdir.home.parent),
        }
        from tests.helpers import ROOT

        env["PYTHONPATH"] = str(ROOT)
        proc = run_cli("operator", "status", env=env)
        assert proc.returncode == 8 and "sealed" in proc.stdout
        wrong = tmp_path / "wrong"
        wrong.write_text("not the passphrase\n")
        wrong.chmod(0o600)  # cvault refuses secret files others can read
        proc = run_cli("operator", "unseal", "--passphrase-file", str(wrong), env=env)
        assert proc.returncode == 3, proc.stderr
        right = tmp_path / "right"
        right.write_text("operator passphrase\n")
        right.chmod(0o600)  # cvault refuses secret files others can read
        proc = run_cli("operator", "unseal", "--passphrase-file", str(right), env=env)
        assert proc.returncode == 0 and "unsealed" in proc.stdout, proc.stderr
        status, body = service.client(tokens["eve"]).post(
            "/v1/secrets/get", {"client_name": "acme", "path": "office/firewall"}
        )
        assert status == 200 and body["fields"]["password"] == "pw-0"
        assert run_cli("operator", "status", env=env).returncode == 0
        log = service.log()
        assert "operator passphrase" not in log and tokens["eve"] not in log and "pw-0" not in log
    finally:
        service.stop()


def test_plain_http_only_on_loopback(vdir):
    """The bind rule as a table (host, TLS, --insecure-http -> allowed?), and the CLI refusing the
    disallowed ones in one line, exit 2, before anything listens."""
    from vault.errors import InvalidInput
    from vault.server.run import check_bind

    table = [
        ("0.0.0.0", False, True, False),
        ("10.1.2.3", False, True, False),
        ("localhost", False, True, False),  # a name could resolve anywhere
        ("0.0.0.0", False, False, False),  # no TLS and no --insecure-http
        ("127.0.0.5", False, True, True),
        ("::1", False, True, True),
        ("[::1]", False, True, True),
        ("0.0.0.0", True, False, True),  # HTTPS anywhere
    ]
    for host, tls, insecure, allowed in table:
        if allowed:
            check_bind(host, tls=tls, insecure_http=insecure)
        else:
            with pytest.raises(InvalidInput):
                check_bind(host, tls=tls, insecure_http=insecure)
    for host, _, insecure, allowed in table[:4]:
        assert not allowed
        proc = vdir.cli("serve", "--port", "1", "--host", host, *(["--insecure-http"] if insecure else []))
        assert proc.returncode == 2, (host, proc.stderr)
        assert proc.stderr.count("\n") == 1


# --- background jobs ------------------------------------------------------------------------------------


def test_background_sweep_and_checkpoints(world, tmp_path):
    vdir, ids, tokens = world
    v = vdir.open()
    maria = v.users.resume(tokens["maria"])
    # the early shred of two people (one account manager alone cannot shred: issue 11)
    v.sla.request_shred(maria, "globex", reason="test: shred at the next sweep")
    v.sla.approve_shred(v.users.resume(tokens["ada"]), "globex")
    v.close()
    service = start_service(vdir, tmp_path / "svc", "--sweep-interval", "1", "--checkpoint-interval", "1")
    try:
        deadline = time.monotonic() + 30
        while True:
            v = vdir.open()
            try:
                state = v.ctx.client("globex").shred_state
                seq, _ = v.ctx.audit.head()
                checkpointed = v.ctx.db.one("SELECT max(seq) FROM audit_checkpoints")[0] or 0
            finally:
                v.close()
            if state == "shredded" and checkpointed >= seq - 5:
                break
            assert time.monotonic() < deadline, (state, seq, checkpointed, service.log()[-2000:])
            time.sleep(0.3)
        status, body = service.client(tokens["maria"]).post("/v1/sla/certificate", {"name": "globex"})
        assert status == 200 and body["certificate"]["client"]["name"] == "globex"
    finally:
        service.stop()


def test_a_failing_job_is_logged_and_retried_not_fatal(world):
    from vault.server.app import ServiceSettings
    from vault.server.jobs import BackgroundJobs
    from vault.server.pool import VaultPool

    vdir, *_ = world
    pool = VaultPool(vdir.home)
    pool.unseal("key_file", str(vdir.key_file))
    jobs = BackgroundJobs(pool, ServiceSettings())
    calls = []

    def broken(vault):
        calls.append(1)
        raise RuntimeError("boom: something the job did not expect")

    jobs.jobs = [("outbox", 0.01, broken)]
    jobs.start()
    time.sleep(0.3)
    jobs.stop()
    assert len(calls) >= 2 and jobs.state["outbox"]["failures"] == len(calls)
    assert jobs.state["outbox"]["last_error"] == "RuntimeError"
    assert jobs.run_once("audit-checkpoint") is False  # not configured in this instance
    pool.close()


# --- many sessions at once ------------------------------------------------------------------------------


def _decisions(vdir) -> int:
    v = vdir.open()
    try:
        return v.ctx.db.one("SELECT count(*) FROM audit_events WHERE outcome IN ('allow', 'deny')")[0]
    finally:
        v.close()


@pytest.mark.slow
def test_eight_clients_thousand_mixed_requests_each(served):
    service, vdir, ids, tokens = served
    v = vdir.open()
    engineers = []
    for i in range(8):
        who = person(v, f"eng{i}", "engineer")
        assign(v, who, "acme")
        engineers.append(who.token(v))
    v.close()
    before = _decisions(vdir)
    per_client, errors, counts = 1000, [], {"ok": 0, "denied": 0}
    lock = threading.Lock()

    def work(n: int) -> None:
        client = service.client(engineers[n])
        last = 0
        try:
            for i in range(per_client):
                kind = i % 10
                if kind < 6:  # read
                    status, body = client.post(
                        "/v1/secrets/get", {"client_name": "acme", "path": "office/firewall"}
                    )
                    ok = status == 200 and body["fields"]["password"] == "pw-0"
                elif kind < 8:  # write a new version of this worker's own record
                    last += 1
                    status, body = client.post(
                        "/v1/secrets/put",
                        {
                            "client_name": "acme",
                            "path": f"load/w{n}",
                            "kind": "note",
                            "fields": {"text": f"{n}-{last}"},
                        },
                    )
                    ok = status == 200 and body["version"] == last
                elif kind == 8:
                    status, body = client.post("/v1/secrets/list", {"client_name": "acme"})
                    ok = status == 200
                else:  # refused: not assigned to globex (one deny decision)
                    status, body = client.post("/v1/secrets/list", {"client_name": "globex"})
                    ok = status == 403 and body["error"]["code"] == "access_denied"
                with lock:
                    counts["ok" if status == 200 else "denied"] += 1
                if not ok:
                    errors.append((n, i, status, body))
                    return
            status, body = client.post("/v1/secrets/get", {"client_name": "acme", "path": f"load/w{n}"})
            assert status == 200 and body["fields"]["text"] == f"{n}-{last}"  # no lost update
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append((n, "exception", repr(exc)))
        finally:
            client.close()

    start = time.monotonic()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert not errors, errors[:5]
    assert counts == {"ok": 7200, "denied": 800}
    # exactly one audit decision per request (+ the 8 final reads)
    assert _decisions(vdir) - before == 8 * per_client + 8
    log = service.log()
    assert "database is locked" not in log and "internal error" not in log
    v = vdir.open()
    try:
        from vault.audit.live import verify_live

        result = verify_live(v.ctx)
        assert result.ok, result.problem
        history = v.secrets.history(v.users.resume(engineers[0]), "acme", "load/w0")
        assert history[-1]["version"] == 200
    finally:
        v.close()
    print(f"8 x {per_client} requests in {elapsed:.1f} s ({8 * per_client / elapsed:.0f}/s)")


def test_unseal_guessing_is_serialized_capped_and_audited(tmp_path):
    """Failed unseal attempts (any address) are audited and capped; right secret unseals."""
    from vault.errors import AuthenticationFailed, VaultLocked
    from vault.facade import Vault
    from vault.server.pool import VaultPool

    v, _ = Vault.init(
        tmp_path / "vault",
        passphrase="correct horse battery",
        kdf_params={"memory_kib": 65536, "iterations": 1, "lanes": 4},
    )
    v.close()
    now = [1000.0]
    pool = VaultPool(tmp_path / "vault", unseal_failures_max=2, unseal_window=600, monotonic=lambda: now[0])
    for n in range(2):
        with pytest.raises(AuthenticationFailed):
            pool.unseal("passphrase", "wrong guess", origin=f"api:198.51.100.{n}", source=f"198.51.100.{n}")
    with pytest.raises(VaultLocked):  # the cap over all network sources together
        pool.unseal("passphrase", "correct horse battery", origin="api:198.51.100.10", source="198.51.100.10")
    assert pool.sealed
    events = pool._free[0].ctx.db.all(
        "SELECT action, outcome, origin, reason FROM audit_events WHERE action = 'service.unseal'"
    )
    assert [(a, o) for a, o, _, _ in events] == [("service.unseal", "deny")] * 3  # 2 wrong, 1 throttled
    assert all("guess" not in r for *_, r in events)  # never the secret
    now[0] += 600  # the window has passed
    pool.unseal("passphrase", "correct horse battery", origin="api:198.51.100.10", source="198.51.100.10")
    assert not pool.sealed


def test_network_junk_never_locks_the_hosts_own_unseal(tmp_path):
    """Issue 11, attack 5: 25 junk unseal attempts from the network (and from another loopback
    address) leave the operator's correct unseal on the host working; each refusal is audited."""
    from vault.errors import AuthenticationFailed, VaultLocked
    from vault.facade import Vault
    from vault.server.pool import VaultPool

    v, _ = Vault.init(
        tmp_path / "vault",
        passphrase="correct horse battery",
        kdf_params={"memory_kib": 65536, "iterations": 1, "lanes": 4},
    )
    v.close()
    pool = VaultPool(tmp_path / "vault", monotonic=lambda: 1000.0)
    refused = 0
    for n in range(25):
        source = "127.0.0.2" if n % 5 == 0 else f"2001:db8:{n}::1"
        try:
            pool.unseal("passphrase", f"junk {n}", origin=f"api:{source}", source=source)
        except (AuthenticationFailed, VaultLocked):
            refused += 1
    assert refused == 25 and pool.sealed
    pool.unseal("passphrase", "correct horse battery", origin="api:127.0.0.1", source="127.0.0.1")
    assert not pool.sealed
    denied = pool._free[0].ctx.db.one(
        "SELECT count(*) FROM audit_events WHERE action = 'service.unseal' AND outcome = 'deny'"
    )[0]
    assert denied == 25


def test_a_short_totp_seed_gives_a_code_over_the_api_not_a_500(served):
    """issue 16: ``secrets.otp`` answered 500 for a seed of 80-111 bits that ``secrets.edit``
    accepted; what a write accepts now gives a code, and a bad seed is a 400 at write time."""
    service, _, _, tokens = served
    eve = service.client(tokens["eve"])
    status, answer = eve.post(
        "/v1/secrets/edit",
        {"client_name": "acme", "path": "office/firewall", "set_fields": {"totp": "JBSWY3DPEHPK3PXP"}},
    )
    assert status == 200, answer
    status, answer = eve.post("/v1/secrets/otp", {"client_name": "acme", "path": "office/firewall"})
    assert status == 200, answer
    assert len(answer["code"]) == 6 and answer["code"].isdigit()
    status, answer = eve.post(
        "/v1/secrets/edit",
        {"client_name": "acme", "path": "office/firewall", "set_fields": {"totp": "JBSWY3DP"}},
    )
    assert status == 400 and assert_error_shape(answer)
    assert "internal error" not in service.log()


@pytest.mark.slow
def test_attachments_over_the_api_with_their_own_body_limit(served):
    """issue 16 item 5 in service mode: ``secrets.attach`` takes a 25 MiB file as base64 under its
    own body limit (every other route keeps 2 MiB), ``secrets.attachment`` gives it back, a
    tampered blob is the integrity error (exit 6), and a body over the attachment limit, or a
    large body without a token, is refused before the vault sees it."""
    import base64
    import os

    from vault import api_spec as spec

    service, vdir, _, tokens = served
    eve = service.client(tokens["eve"])
    data = os.urandom(25 * 1024 * 1024)
    body = {"client_name": "acme", "path": "office/firewall", "name": "config.tgz"}
    status, answer = eve.post("/v1/secrets/attach", {**body, "data": base64.b64encode(data).decode()})
    assert status == 200, answer
    assert answer["size"] == len(data) and answer["version"] == 2
    status, answer = eve.post("/v1/secrets/get", {"client_name": "acme", "path": "office/firewall"})
    assert status == 200 and [a["name"] for a in answer["attachments"]] == ["config.tgz"]
    status, answer = eve.post("/v1/secrets/attachment", body)
    assert status == 200 and base64.b64decode(answer["data"]) == data
    # one byte over 25 MiB: the service refuses it with the one-line message (400), not a 500
    status, answer = eve.post("/v1/secrets/attach", {**body, "data": base64.b64encode(data + b"!").decode()})
    assert status in (400, 422) and assert_error_shape(answer)
    # a declared body over the attachment route's limit, or a large one without a token: 413
    head = (
        f"POST /v1/secrets/attach HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {tokens['eve']}\r\nContent-Length: {spec.ATTACH_BODY_BYTES + 1}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    status, answer = _raw(service, head)
    assert status == 413 and assert_error_shape(answer, "request_too_large")
    head = (
        f"POST /v1/secrets/attach HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {3 * 1024 * 1024}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    status, answer = _raw(service, head)
    assert status == 413 and assert_error_shape(answer, "request_too_large")
    # tamper with the stored blob: the integrity error's shape and exit code
    v = vdir.open()
    ((blob_name,),) = v.ctx.db.all("SELECT DISTINCT blob_name FROM attachment_refs")
    stored = bytearray(v.ctx.blobs.get(blob_name))
    stored[-5] ^= 1
    v.ctx.blobs.put(blob_name, bytes(stored))
    v.close()
    status, answer = eve.post("/v1/secrets/attachment", body)
    error = assert_error_shape(answer)  # integrity failures are 409 with exit code 6 (docs/service.md)
    assert status == 409 and error["exit_code"] == 6 and "integrity failure: attachment" in error["message"]
    assert "internal error" not in service.log()


def _open_upload(service, token: str, size: int, sent: int) -> ssl.SSLSocket:
    """An attachment upload that declares ``size`` bytes, sends ``sent`` of them and stalls."""
    ctx = ssl.create_default_context(cafile=str(service.ca.ca_path))
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=30)
    tls = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    tls.sendall(
        f"POST /v1/secrets/attach HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {size}\r\n\r\n".encode()
        + b'{"client_name": "acme", "data": "'
        + b"A" * (sent - 33)
    )
    return tls


def _answered(tls) -> bool:
    """Whether the service answered (or closed) this connection: application data to read, not
    only a TLS 1.3 session ticket (which makes the socket readable too)."""
    tls.setblocking(False)
    try:
        tls.recv(1)
        return True  # a byte of an answer, or b"" at the close
    except ssl.SSLWantReadError:
        return False
    finally:
        tls.settimeout(30)


def test_junk_tokens_cannot_hold_the_attachment_upload_slots(served):
    """Review F6 replayed: two stalled 30 MiB uploads with junk bearer tokens used to hold both
    large-body slots (the token was checked only by the route, after the body), so a real
    user's upload was answered 429 meanwhile. The token is now resumed before a slot is granted:
    the junk uploads are answered 401 at once, holding nothing, and eve's upload goes through
    while they are still open; two stalled uploads of a *live* session do hold the slots (429
    for a third), which shows the slots still exist and only live sessions get them."""
    import base64

    service, _, _, tokens = served
    size = 30 * 1024 * 1024
    junk = [_open_upload(service, token, size, 16 * 1024) for token in ("cvs1_" + "A" * 43, "garbage")]
    try:
        body = {"client_name": "acme", "path": "office/firewall", "name": "notes.txt"}
        data = base64.b64encode(b"while strangers stall").decode()
        status, answer = service.client(tokens["eve"]).post("/v1/secrets/attach", {**body, "data": data})
        assert status == 200, answer
        for tls in junk:
            resp = http.client.HTTPResponse(tls)
            resp.begin()
            assert resp.status == 401
            assert assert_error_shape(json.loads(resp.read()), "authentication_failed")["exit_code"] == 3
    finally:
        for tls in junk:
            tls.close()
    held = [_open_upload(service, tokens["carl"], size, 16 * 1024) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while True:  # both stalled uploads admitted (each resumed carl's session first)
            status, answer = service.client(tokens["eve"]).post("/v1/secrets/attach", {**body, "data": data})
            if status == 429 or time.monotonic() > deadline:
                break
            # an upload answered 429 instead of admitted holds no slot: eve's upload above is
            # answered before its slot is given back, so on a loaded machine carl's first upload
            # could still find both taken (a failure of this test, 2026-12-04): opened again
            for tls in [t for t in held if _answered(t)]:
                held.remove(tls)
                tls.close()
                held.append(_open_upload(service, tokens["carl"], size, 16 * 1024))
            time.sleep(0.05)
        assert status == 429 and assert_error_shape(answer, "rate_limited")
    finally:
        for tls in held:
            tls.close()


def test_an_error_body_names_the_refused_field_never_its_value(served):
    """review9 R9-4 through the API: a value in the wrong field (often a secret) was quoted in
    ErrorBody.message ("never contains secrets"); the message names the field only."""
    service, _, _, tokens = served
    secret = "s3cr3t-in-the-wrong-column"
    eve = service.client(tokens["eve"])
    put = {"client_name": "acme", "path": "net/office", "kind": "network"}
    line = {"path": "net/office", "kind": "network", "fields": {"gateway": secret}}
    cases = [
        ("/v1/secrets/put", {**put, "fields": {"gateway": secret}}, "gateway: not an IP address"),
        (
            "/v1/secrets/put",
            {**put, "fields": {"addresses": [secret]}},
            "addresses: not an IP address or CIDR",
        ),
        ("/v1/secrets/put", {**put, "kind": secret, "fields": {}}, "unknown record type: use one of"),
        (
            "/v1/secrets/import-records",
            {"client_name": "acme", "lines": [json.dumps(line)]},
            "line 1: invalid",
        ),
        ("/v1/secrets/search", {"term": "office", "kind": secret}, "unknown record type: use one of"),
    ]
    for path, body, named in cases:
        status, answer = eve.post(path, body)
        assert status == 400 and assert_error_shape(answer, "invalid_input"), (path, status, answer)
        assert secret not in json.dumps(answer), answer
        assert named in answer["error"]["message"], answer
    assert secret not in service.log()
