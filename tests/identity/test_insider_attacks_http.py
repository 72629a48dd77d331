"""Separation of duties (issue 11) through the HTTP API of a real ``cvault serve`` on loopback:
the attacks of tests/identity/test_insider_attacks_cli.py replayed over HTTPS, each refused with its
documented status and audited; six simultaneous logins; a stranger's failed logins; unseal junk.

"Another machine" is another loopback source address (127.0.0.2)."""

from __future__ import annotations

import http.client
import os
import re
import sqlite3
import ssl
import threading
from urllib.parse import urlencode

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
        # racer0-5 log in together once; racer6 and racer7 each log in once elsewhere: a login
        # takes the current real-time TOTP code, which a second login within its 30 s step replays
        racers = [person(v, f"racer{i}", "engineer", real_password=True) for i in range(8)]
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
    for role in ("account_manager", "security_reviewer"):  # the other roles: the same refusal
        name = f"puppet-{role[:3]}"
        status, added = _post(service, tokens["alice"], "users.add", {"name": name, "roles": [role]})
        assert status == 200 and added["state"] == "pending_approval"
        status, body = _post(service, tokens["alice"], "users.approve", {"name": name})
        assert status == 403 and body["error"]["exit_code"] == 4
    assert len(_audit(vdir, "user.approve", "deny")) >= 3
    assert any("mallory" in r[1] for r in _audit(vdir, "client.assign", "deny"))
    assert any("mallory" in r[1] for r in _audit(vdir, "user.train", "deny"))


def test_a_minted_account_manager_cannot_have_its_shred_approved_by_its_makers_over_http(served):
    """alice requests an account manager, ada approves it: mona exists, and neither alice nor
    ada counts as the second person to mona's early-shred request (403, audited)."""
    import time

    from vault.identity import totp

    service, vdir, tokens, _, _ = served
    assert (
        _post(service, tokens["alice"], "users.add", {"name": "mona", "roles": ["account_manager"]})[0] == 200
    )
    status, approved = _post(service, tokens["ada"], "users.approve", {"name": "mona"})
    assert status == 200
    status, enrolled = _post(
        service,
        None,
        "users.enroll",
        {"name": "mona", "code": approved["enrollment_code"], "password": "mona-password-123"},
    )
    assert status == 200, enrolled
    code = totp.code_at(totp.secret_from_uri(enrolled["otpauth_uri"]), time.time())
    status, login = _post(
        service, None, "users.login", {"name": "mona", "password": "mona-password-123", "totp": code}
    )
    assert status == 200, login
    assert _post(service, tokens["amy"], "clients.add", {"name": "initech", "sla_end": "+365d"})[0] == 200
    status, _ = _post(service, login["token"], "sla.request_shred", {"name": "initech", "reason": "now"})
    assert status == 200
    for maker in ("ada", "alice"):
        status, body = _post(service, tokens[maker], "sla.approve_shred", {"name": "initech"})
        assert status == 403 and body["error"]["exit_code"] == 4, (maker, body)
    denied = _audit(vdir, "sla.approve_shred", "deny")
    assert any("does not count as a second person" in r[1] for r in denied)


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
    racers = racers[:6]
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


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])  # --workers 2: the limits stay global (issue 20)
def test_a_full_argon2_queue_answers_503_busy_and_counts_nothing(staff_template, tmp_path, workers):
    """Thirty simultaneous logins (one Argon2id at a time, at most one waiting: ``--argon2-queue
    1``, so the overflow does not depend on how fast this machine derives): the overflow is
    answered 503 busy (exit 9) at once, nothing hangs, and no account counts a failure."""
    staff = staff_template
    vdir = copy_vault(staff.vdir, tmp_path / "copy")
    service = start_service(vdir, tmp_path / "svc", "--argon2-queue", workers, "--workers", workers)
    try:
        _overflow_then_a_correct_login(service, staff)
    finally:
        service.stop()


def _overflow_then_a_correct_login(service, staff) -> None:
    n = 30
    clients = [service.client(source=f"127.0.6.{i + 1}") for i in range(n)]
    for c in clients:
        assert c.get("/v1/health")[0] == 200  # connected before the start line
    answers: list[tuple[int, object]] = []
    barrier = threading.Barrier(n)

    def login(i):
        barrier.wait()
        answers.append(
            clients[i].post(_path("users.login"), {"name": f"nobody-{i}", "password": "x" * 12, "totp": "1"})
        )
        clients[i].close()

    threads = [threading.Thread(target=login, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    statuses = sorted(status for status, _ in answers)
    assert len(statuses) == n and set(statuses) <= {401, 503}, statuses
    busy = [body for status, body in answers if status == 503]
    assert busy and all(b["error"]["code"] == "busy" and b["error"]["exit_code"] == 9 for b in busy)
    p = staff.rita  # a correct login right after works (nobody else logs rita in here)
    status, _ = service.client().post(
        _path("users.login"), {"name": p.name, "password": p.password, "totp": p.code()}
    )
    assert status == 200


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


@pytest.mark.parametrize("workers", ["1", "2"])  # --workers 2: the limits stay global (issue 20)
def test_unseal_junk_from_elsewhere_never_locks_the_operator(tmp_path, workers):
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
    service = start_service(
        VaultDir(home, tmp_path / "vault.key"), tmp_path / "svc", "--workers", workers, unsealed=False
    )
    try:
        statuses = []
        for n in range(25):  # a new connection each: with --workers 2 they reach both workers
            junk = service.client(source="127.0.0.2")
            statuses.append(junk.post("/v1/sys/unseal", {"passphrase": f"junk {n}"})[0])
            junk.close()
        assert set(statuses) <= {401, 423, 429}, statuses
        assert statuses.count(401) == 5, statuses  # five failures per source, then locked
        status, body = service.client().post("/v1/sys/unseal", {"passphrase": "operator passphrase 1"})
        assert (status, body) == (200, {"sealed": False})
    finally:
        service.stop()
    assert len(_audit(VaultDir(home, tmp_path / "vault.key"), "service.unseal", "deny")) >= 5


# --- 4. SIGTERM with requests in flight ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])  # --workers 2: the limits stay global (issue 20)
def test_sigterm_stops_the_service_with_logins_in_flight(staff_template, tmp_path, workers):
    """Twelve logins from twelve addresses queue for Argon2id (one at a time); SIGTERM: the
    process is gone within 10 s, every request got an answer or a closed connection."""
    import signal
    import subprocess

    vdir = copy_vault(staff_template.vdir, tmp_path)
    service = start_service(vdir, tmp_path / "svc", "--workers", workers)
    names = [f"ghost{n}" for n in range(12)]  # unknown names: each still costs one Argon2id
    outcomes: list[object] = []
    started = threading.Barrier(len(names) + 1)

    def login(n):
        client = service.client(source=f"127.0.5.{n + 1}")
        started.wait()
        try:
            status, _ = client.post(
                _path("users.login"), {"name": names[n], "password": "wrong but costs argon2", "totp": "1"}
            )
            outcomes.append(status)
        except OSError as exc:
            outcomes.append(type(exc).__name__)
        finally:
            client.close()

    threads = [threading.Thread(target=login, args=(n,)) for n in range(len(names))]
    for t in threads:
        t.start()
    started.wait()
    service.proc.send_signal(signal.SIGTERM)
    try:
        code = service.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        service.proc.kill()
        raise AssertionError("cvault serve still running 10 s after SIGTERM") from None
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly: -15 (systemd: a
    # clean stop), or 0
    assert code in (0, -15), service.log()[-2000:]
    assert len(outcomes) == len(names)
    assert all(o in (401, 503) or isinstance(o, str) for o in outcomes), outcomes
    assert "Traceback" not in service.log()


# --- 5. step-up races, throttling per account and per source ----------------------------------------


def test_parallel_stepup_guesses_over_http_count_exactly(served):
    """Twelve simultaneous wrong step-ups on one session: five are evaluated (401), the rest
    refused (423) without being checked; audited."""
    service, vdir, _, racers, _ = served
    p = racers[6]
    status, login = service.client().post(
        _path("users.login"), {"name": p.name, "password": p.password, "totp": p.code()}
    )
    assert status == 200
    answers: list[int] = []
    barrier = threading.Barrier(12)

    def guess():
        client = service.client(login["token"])
        barrier.wait()
        answers.append(client.post(_path("users.step_up"), {"code": "000000"})[0])
        client.close()

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(answers) == [401] * 5 + [423] * 7, answers
    assert any("throttled for this session" in r[1] for r in _audit(vdir, "auth.stepup", "deny"))


def test_failed_logins_throttled_per_account(served):
    """Wrong passwords for racer5 from six addresses: at most five are checked; the sixth is
    refused (429 from the account's bucket, or 423 from its lockout) whatever its address."""
    service, vdir, _, racers, _ = served
    target = racers[5]
    statuses = []
    for n in range(6):
        client = service.client(source=f"127.0.1.{n + 1}")
        body = {"name": target.name, "password": "nope-nope-nope", "totp": "1"}
        statuses.append(client.post(_path("users.login"), body)[0])
        client.close()
    assert statuses[:5] == [401] * 5 and statuses[5] in (423, 429), statuses
    # another account, from another address: not throttled
    other = racers[7]
    status, _ = service.client(source="127.0.2.2").post(
        _path("users.login"), {"name": other.name, "password": other.password, "totp": other.code()}
    )
    assert status == 200


@pytest.mark.parametrize("workers", ["1", "2"])  # --workers 2: the limits stay global (issue 20)
def test_parallel_logins_for_one_account_check_at_most_five(staff_template, tmp_path, workers):
    """Review R4: 16 simultaneous logins for one account from 16 addresses, the right password
    and code last: at most five passwords are checked (the tokens are reserved before Argon2id,
    one login per account at a time, the rest 429), and none succeeds once the account locked."""
    vdir = copy_vault(staff_template.vdir, tmp_path)
    v = vdir.open()
    try:
        target = person(v, "victim", "engineer", real_password=True)
    finally:
        v.close()
    service = start_service(vdir, tmp_path / "service", "--workers", workers)
    n = 16
    statuses: list = [None] * n
    barrier = threading.Barrier(n)

    def guess(i):
        client = service.client(source=f"127.0.3.{i + 1}")
        body = {"name": target.name, "password": f"guess-number-{i:04d}", "totp": "123456"}
        if i == n - 1:
            body = {"name": target.name, "password": target.password, "totp": target.code()}
        barrier.wait()
        statuses[i] = client.post(_path("users.login"), body)[0]
        client.close()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        service.stop()
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        order = db.execute(
            "SELECT action, outcome, reason FROM audit_events WHERE actor = 'victim'"
            " AND action IN ('auth.login', 'auth.lockout') ORDER BY seq"
        ).fetchall()
    finally:
        db.close()
    checked = [r for r in order if r[0] == "auth.login" and r[2].startswith("wrong password")]
    assert len(checked) <= 5, (len(checked), statuses, order)
    assert all(s in (200, 401, 423, 429) for s in statuses), statuses
    kinds = [(a, o) for a, o, _ in order]
    if ("auth.lockout", "deny") in kinds and ("auth.login", "ok") in kinds:  # never after the lock
        assert kinds.index(("auth.login", "ok")) < kinds.index(("auth.lockout", "deny")), order


class _ConsoleBrowser:
    """One HTTPS client of the web console with a cookie jar, from its own loopback address."""

    def __init__(self, service, source: str):
        self.port, self.source = service.port, source
        self.ctx = ssl.create_default_context(cafile=str(service.ca.ca_path))
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None):
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.ctx, timeout=120, source_address=(self.source, 0)
        )
        host = f"127.0.0.1:{self.port}"
        headers = {"Host": host}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = f"https://{host}"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read().decode("utf-8", "replace")
        for value in resp.headers.get_all("set-cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        conn.close()
        return resp.status, data


@pytest.mark.parametrize("path", ["/login", "/enroll"])
def test_console_sign_in_throttles_the_name_it_signs_in(staff_template, tmp_path, path):
    """review4 R4-5: the console throttled the name as posted but signed in the stripped name,
    so 16 spellings of one name (spaces around it) were 16 buckets and 16 in-flight slots: all
    16 simultaneous guesses reached the account. The name is normalised once, before the
    throttle: one sign-in of the account at a time, the rest 429 unchecked (at most five)."""
    vdir = copy_vault(staff_template.vdir, tmp_path)
    v = vdir.open()
    try:
        target = person(v, "victim", "engineer", real_password=True)
    finally:
        v.close()
    service = start_service(vdir, tmp_path / "service")
    n = 16
    statuses: list = [None] * n
    barrier = threading.Barrier(n)
    variants = [" " * a + target.name + "\t" * b for a in range(4) for b in range(4)]

    def guess(i):
        b = _ConsoleBrowser(service, f"127.0.5.{i + 1}")
        _, html = b.request("GET", path)
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
        form = {"csrf": csrf, "name": variants[i], "password": f"guess-number-{i:04d}", "code": "123456"}
        if path == "/enroll":
            form = {**form, "password2": form["password"], "code": "ABCD-EFGH-JKLM"}
        barrier.wait()
        statuses[i] = b.request("POST", path, form)[0]

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        service.stop()
    action = "auth.login" if path == "/login" else "auth.enroll"
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        reached = db.execute(
            "SELECT reason FROM audit_events WHERE actor = 'victim' AND action = ?", (action,)
        ).fetchall()
    finally:
        db.close()
    assert 1 <= len(reached) <= 5, (reached, statuses)
    assert 429 in statuses, statuses


@pytest.mark.parametrize("workers", ["1", "2"])  # --workers 2: the limits stay global (issue 20)
def test_failed_logins_throttled_per_source(staff_template, tmp_path, workers):
    """One address guessing many names: refused (429) after its burst, before any check;
    another address logs in. (A bucket refilling once per 100 min: no clock in the count.)"""
    vdir = copy_vault(staff_template.vdir, tmp_path)
    service = start_service(
        vdir, tmp_path / "svc", "--login-burst", "4", "--login-per-minute", "0.01", "--workers", workers
    )
    try:
        sprayed = []
        for n in range(10):  # a new connection each: with --workers 2 they reach both workers
            sprayer = service.client(source="127.0.2.1")
            sprayed.append(
                sprayer.post(_path("users.login"), {"name": f"nobody{n}", "password": "x" * 12, "totp": "1"})
            )
            sprayer.close()
        assert [s for s, _ in sprayed] == [401] * 4 + [429] * 6, sprayed
        assert sprayed[-1][1]["error"]["code"] == "rate_limited"
        bob = staff_template.bob
        status, _ = service.client(source="127.0.2.3").post(
            _path("users.login"), {"name": bob.name, "password": bob.password, "totp": bob.code()}
        )
        assert status == 200
    finally:
        service.stop()


def test_ipv6_sources_are_throttled_per_64():
    from vault.server.limits import RateLimiter, source_key

    same = {source_key(a) for a in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2::dead")}
    assert same == {"2001:db8:1:2::/64"}
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:192.0.2.7") == source_key("192.0.2.7") == "192.0.2.7"
    limiter = RateLimiter(3, 1e-9, clock=lambda: 0.0)
    hosts = [f"2001:db8:1:2::{n:x}" for n in range(1, 6)]  # five addresses, one /64
    waits = [limiter.take(source_key(h)) for h in hosts]
    assert waits[:3] == [0.0, 0.0, 0.0] and all(w > 0 for w in waits[3:])


# --- 6. names and a password typed as a name ---------------------------------------------------------


def test_names_with_whitespace_are_refused_over_http(served):
    service, vdir, tokens, _, _ = served
    for name in ("carl\n", "carl ", " carl", "car\u0000l"):
        status, body = _post(service, tokens["alice"], "users.add", {"name": name, "roles": ["engineer"]})
        assert status == 400 and body["error"]["exit_code"] == 2, (name, body)
    for name in ("acme ", "acme\n", "ac\u001bme"):
        status, body = _post(service, tokens["amy"], "clients.add", {"name": name, "sla_end": "+365d"})
        assert status == 400 and body["error"]["exit_code"] == 2, (name, body)
    assert len(_audit(vdir, "user.add", "deny")) >= 4 and len(_audit(vdir, "client.add", "deny")) >= 3


def test_a_password_typed_as_a_name_is_never_logged_over_http(served):
    service, vdir, _, _, _ = served
    for typed in ("hunter-two-horse.7", "Hunter 2 Horse!?"):
        client = service.client(source="127.0.3.1")
        status, _ = client.post(_path("users.login"), {"name": typed, "password": "x" * 12, "totp": "1"})
        assert status == 401
        status, _ = client.post(
            _path("users.enroll"), {"name": typed, "code": "AAAA-BBBB-CCCC", "password": "x" * 12}
        )
        assert status in (400, 401)
        client.close()
    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        text = " ".join(" ".join(map(str, r)) for r in db.execute("SELECT actor, reason FROM audit_events"))
    finally:
        db.close()
    for typed in ("hunter-two-horse.7", "Hunter 2 Horse!?"):
        assert typed not in text and typed not in service.log()


# --- 3/4. the minimum grace period over HTTP ----------------------------------------------------------


def test_the_minimum_grace_period_needs_a_second_person_over_http(served):
    service, vdir, tokens, _, _ = served
    status, body = _post(service, tokens["amy"], "sla.request_min_grace", {"days": 1})
    assert status == 200 and body["state"] == "pending_approval" and body["min_grace_days"] == 30
    status, body = _post(service, tokens["amy"], "sla.approve_min_grace", {"days": 1})
    assert status == 403 and body["error"]["exit_code"] == 4
    status, body = _post(service, tokens["amy"], "sla.min_grace", {})
    assert status == 200 and body["min_grace_days"] == 30 and body["pending"]["value"] == 1
    assert any("two-person rule" in r[1] for r in _audit(vdir, "sla.approve_min_grace", "deny"))
    # asking for the value it already has is refused (exit 2)
    status, body = _post(service, tokens["amy"], "sla.request_min_grace", {"days": 30})
    assert status == 400


def test_approve_min_grace_over_http_names_the_value(served):
    """Review R2 over HTTP: ``days`` is required (422, exit 2, without it), and another value than the
    pending one is refused (403, exit 4) and changes nothing."""
    service, vdir, tokens, _, _ = served
    assert _post(service, tokens["amy"], "sla.request_min_grace", {"days": 60})[0] == 200
    assert _post(service, tokens["amy"], "sla.request_min_grace", {"days": 0})[0] == 200
    status, body = _post(service, tokens["ada"], "sla.approve_min_grace", {})
    assert status == 422 and body["error"]["exit_code"] == 2, body
    status, body = _post(service, tokens["ada"], "sla.approve_min_grace", {"days": 60})
    assert status == 403 and body["error"]["exit_code"] == 4
    status, body = _post(service, tokens["amy"], "sla.min_grace", {})
    assert body["min_grace_days"] == 30 and body["pending"]["value"] == 0


# --- 5. the host's own unseal path -----------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])  # --workers 2: the limits stay global (issue 20)
def test_the_host_socket_unseals_after_junk_from_everywhere(tmp_path, workers):
    """25 junk unseals from the network *and* from loopback (what a reverse proxy on the host
    forwards): the HTTP path is locked for them, the host socket still unseals."""
    from tests.helpers import VaultDir, run_cli
    from vault.facade import Vault

    home = tmp_path / "vault"
    v, _ = Vault.init(
        home,
        passphrase="operator passphrase 1",
        key_file=tmp_path / "vault.key",
        kdf_params={"memory_kib": 65536, "iterations": 1, "lanes": 4},
    )
    v.close()
    vdir = VaultDir(home, tmp_path / "vault.key")
    sock = tmp_path / "host.sock"
    service = start_service(
        vdir, tmp_path / "svc", "--unseal-socket", str(sock), "--workers", workers, unsealed=False
    )
    try:
        statuses = []
        for n in range(25):
            junk = service.client(source="127.0.0.1" if n % 2 else f"127.0.4.{n}")
            statuses.append(junk.post("/v1/sys/unseal", {"passphrase": f"junk {n}"})[0])
            junk.close()
        assert set(statuses) <= {401, 423, 429} and 423 in statuses, statuses
        locked = service.client().post("/v1/sys/unseal", {"passphrase": "operator passphrase 1"})
        assert locked[0] in (423, 429), locked  # loopback over TCP: locked like any other source
        phrase = tmp_path / "phrase"
        phrase.write_text("operator passphrase 1\n")
        phrase.chmod(0o600)
        env = {k: v for k, v in vdir.env().items() if k != "CVAULT_KEY_FILE"}
        wrong = tmp_path / "wrong"
        wrong.write_text("not it\n")
        wrong.chmod(0o600)
        for _ in range(6):  # the host path is never locked, even by its own failures
            miss = run_cli(
                "operator",
                "unseal",
                "--local",
                "--socket",
                str(sock),
                "--passphrase-file",
                str(wrong),
                env=env,
            )
            assert miss.returncode == 3, miss.stderr
        done = run_cli(
            "operator", "unseal", "--local", "--socket", str(sock), "--passphrase-file", str(phrase), env=env
        )
        assert done.returncode == 0 and "unsealed" in done.stdout, done.stderr
        assert service.client().get("/v1/health")[1]["sealed"] is False
    finally:
        service.stop()
    assert not sock.exists()  # removed at exit
    db = sqlite3.connect(home / "vault.db")
    try:
        rows = db.execute(
            "SELECT outcome, origin, reason FROM audit_events WHERE action = 'service.unseal'"
        ).fetchall()
    finally:
        db.close()
    assert ("ok", "host") in [(r[0], r[1]) for r in rows]
    assert len([r for r in rows if r[1] == "host" and r[0] == "deny"]) == 6


def test_a_second_service_never_takes_over_a_live_unseal_socket(tmp_path):
    """The socket of a running service is not replaced by a second one (which would cut the
    first service's host path); a stale socket file is."""
    import socket as sockets

    from vault.errors import InvalidInput
    from vault.server.host_unseal import HostUnseal

    class Sealed:
        sealed = True

    path = tmp_path / "unseal.sock"
    first = HostUnseal(Sealed(), path)
    first.start()
    try:
        with pytest.raises(InvalidInput, match="already listens"):
            HostUnseal(Sealed(), path).start()
    finally:
        first.stop()
    stale = sockets.socket(sockets.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on
    again = HostUnseal(Sealed(), path)
    again.start()
    again.stop()
    assert not path.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user (CI runs as root)")
def test_the_local_unseal_sends_nothing_to_another_users_socket(tmp_path):
    """Independent review F5: with --unseal-socket in a shared folder, another user who binds the
    path while serve is down would have received the passphrase. The client checks the peer's uid
    (SO_PEERCRED) and sends nothing to a listener of another user."""
    import socket as socket_mod
    import tempfile

    from vault.errors import AccessDenied
    from vault.server.host_unseal import unseal_over_socket

    folder = tempfile.mkdtemp(prefix="cvault-unseal-squat-", dir="/tmp")
    os.chmod(folder, 0o777)
    path = os.path.join(folder, "unseal.sock")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the squatter: nobody binds the path and records whatever it is sent
        try:
            os.close(read_fd)
            os.setgid(65534)
            os.setuid(65534)
            squat = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
            squat.bind(path)
            squat.listen(1)
            os.write(write_fd, b"ready\n")
            squat.settimeout(20)
            conn, _ = squat.accept()
            conn.settimeout(5)
            got = b""
            try:
                while chunk := conn.recv(4096):
                    got += chunk
            except OSError:
                pass
            os.write(write_fd, b"got:" + got)
        except BaseException as exc:  # noqa: BLE001 - the child reports whatever happened
            os.write(write_fd, f"error:{type(exc).__name__}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        assert fh.readline() == b"ready\n"
        with pytest.raises(AccessDenied, match="another user"):
            unseal_over_socket(path, {"passphrase": "correct horse battery"}, timeout=10)
        answer = fh.read()
    os.waitpid(pid, 0)
    assert answer.startswith(b"got:"), answer
    assert b"correct horse" not in answer and answer == b"got:"
